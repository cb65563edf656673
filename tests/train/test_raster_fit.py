"""Training through the rasterizer is ordinary PyTorch: Adam on the raw Gaussian parameters,
rendered by the kernels (CPU backend), recovers a target image rendered from other values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from huma_rt.kernels import cpu_backend_available

from huma_rt.gaussians import Camera

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")


def test_adam_fits_a_target_image():
    from huma_rt.train.raster_autograd import DensifyStats, rasterize

    torch.manual_seed(0)
    rng = np.random.default_rng(3)
    n = 24
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 3.0
    cam = Camera(32, 32, fx=30.0, fy=30.0, cx=16.0, cy=16.0, world_to_camera=w2c)
    true = {
        "means": torch.tensor(rng.uniform(-0.8, 0.8, (n, 3)), dtype=torch.float32),
        "quats": torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32),
        "log_scales": torch.tensor(rng.uniform(-2.2, -1.4, (n, 3)), dtype=torch.float32),
        "opacity_logits": torch.tensor(rng.uniform(0.0, 2.0, n), dtype=torch.float32),
        "sh": torch.tensor(rng.normal(0, 0.5, (n, 4, 3)), dtype=torch.float32),
    }
    bg = (0.1, 0.1, 0.1)
    target = rasterize(*true.values(), cam, bg).image.detach()
    params = {k: (v + 0.15 * torch.randn_like(v)).requires_grad_() for k, v in true.items()}
    opt = torch.optim.Adam(params.values(), lr=0.02)
    stats = DensifyStats(n)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        out = rasterize(*params.values(), cam, bg)
        loss = ((out.image - target) ** 2).mean()
        loss.backward()
        stats.add(out)
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0], losses[::10]  # measured: 57x lower
    assert stats.view_count.max() == 40 and float(stats.mean().max()) > 0
