"""Small random scenes for the render tests (a head-like blob seen by an off-centre camera).

A uniquely named module, not conftest.py: `from conftest import ...` resolves to whichever
conftest pytest loaded last, so it broke when another folder's tests were collected first."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available

from huma_rt.gaussians import Camera, Gaussians

needs_cpu = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")


def blob_scene(seed: int, n: int = 600, width: int = 96, height: int = 80,
               degree: int = 1) -> tuple[Gaussians, Camera]:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = (d * [0.8, 1.0, 0.8] * rng.uniform(0.7, 1.0, (n, 1))).astype(np.float32)
    g = Gaussians(
        means=means,
        log_scales=rng.uniform(-3.5, -2.0, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(2.0, 1.0, n).astype(np.float32),
        sh=(rng.normal(size=(n, (degree + 1) ** 2, 3)) * 0.5).astype(np.float32),
    )
    w2c = np.eye(4, dtype=np.float32)
    w2c[:3, 3] = [0.05, 0.0, 3.2]
    cam = Camera(width, height, fx=1.1 * width, fy=1.1 * width, cx=width / 2 - 3, cy=height / 2 + 2,
                 world_to_camera=w2c)
    return g, cam
