"""The Gaussian rasterizer as a torch autograd function, so that fitting an avatar is ordinary
PyTorch: its forward and backward are the kernels' own (kernels/raster_math.cuh), on the CPU
backend for CPU tensors and the CUDA kernels (CuPy) for CUDA tensors.

    out = rasterize(means, quats, log_scales, opacity_logits, sh, camera, background)
    loss = ((out.image - target) ** 2).mean(); loss.backward()
    stats.add(out)  # 3DGS densification statistics of this view

Inputs: means [N,3], quats [N,4] (wxyz, any norm), log_scales [N,3] (pre-activation, the
avatar's recorded scale activation), opacity_logits [N], sh [N,K,3] (K = (d+1)^2), float32;
background [3] or [H,W,3] (may require grad). The camera is fixed (huma_rt.gaussians.Camera).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera

log = logging.getLogger(__name__)


@dataclass
class RasterOutput:
    """One rendered view. image [H,W,3] = rgb + T * background; alpha [H,W] = 1 - T;
    rgb [H,W,3] un-composited colour; T [H,W] final transmittance. mean2d_grad is filled by
    the backward: the per-Gaussian screen-space statistics of this view (DensifyStats)."""

    image: torch.Tensor
    alpha: torch.Tensor
    rgb: torch.Tensor
    T: torch.Tensor
    mean2d_grad: dict


class DensifyStats:
    """3DGS densification statistics over views: grad_norm_sum [N] (the sum over views of
    |dL/d 2D mean| in pixels) and view_count [N] (views in which the Gaussian was drawn).
    ``add`` a view after its backward; ``mean()`` is what 3DGS thresholds. Units: pixels. The
    INRIA code differentiates w.r.t. NDC (pixel = ((ndc + 1) W - 1) / 2), whose gradient is
    (W/2, H/2) times this one per axis: scale its threshold (0.0002) accordingly."""

    def __init__(self, n: int) -> None:
        self.grad_norm_sum = torch.zeros(n, dtype=torch.float64)
        self.view_count = torch.zeros(n, dtype=torch.int64)

    def add(self, out: RasterOutput) -> None:
        got = out.mean2d_grad
        if "grad_norm" not in got:
            raise InputError("this view has no screen-space gradients yet: call add() after "
                             "its loss's backward()")
        self.grad_norm_sum += torch.from_numpy(got["grad_norm"]).double()
        self.view_count += torch.from_numpy(got["visible"]).long()

    def mean(self) -> torch.Tensor:
        """Mean |dL/d 2D mean| over the views each Gaussian was drawn in (0 where none)."""
        return self.grad_norm_sum / self.view_count.clamp(min=1)


def _engine(camera: Camera, device: torch.device, backend: str | None, n: int):
    """The rasterizer for a camera and device, cached on the camera object (one per backend)."""
    kind = backend or ("cuda" if device.type == "cuda" else "cpu")
    cache = camera.__dict__.setdefault("_hr_raster_engines", {})
    eng = cache.get(kind)
    if eng is None:
        if kind == "cpu":
            from huma_rt.train.raster_cpu import CpuRasterizer

            eng = CpuRasterizer(camera, n)
        elif kind in ("cuda", "emulated"):
            from huma_rt.train.raster_device import DeviceRasterizer

            eng = DeviceRasterizer(camera, n, launcher="cupy" if kind == "cuda" else "emulated")
        else:
            raise InputError(f"backend must be 'cpu', 'cuda' or 'emulated'; got {backend!r}")
        cache[kind] = eng
    return eng


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


class RasterizeGaussians(torch.autograd.Function):
    """(means, quats, log_scales, opacity_logits, sh) -> (rgb [H,W,3], T [H,W]); see module."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, opacity_logits, sh, engine, scale_activation,
                stats_out):
        arrays = [_np(t) for t in (means, quats, log_scales, opacity_logits, sh)]
        rgb, T, saved = engine.forward(*arrays, scale_activation)
        ctx.engine, ctx.saved_state, ctx.arrays = engine, saved, arrays
        ctx.scale_activation, ctx.stats_out, ctx.device = scale_activation, stats_out, means.device
        return (torch.from_numpy(rgb).to(means.device), torch.from_numpy(T).to(means.device))

    @staticmethod
    def backward(ctx, v_rgb, v_T):
        h, w = ctx.engine.camera.height, ctx.engine.camera.width
        v_rgb = _np(v_rgb) if v_rgb is not None else np.zeros((h, w, 3), np.float32)
        v_T = _np(v_T) if v_T is not None else np.zeros((h, w), np.float32)
        g = ctx.engine.backward(ctx.saved_state, *ctx.arrays, ctx.scale_activation, v_rgb, v_T)
        ctx.stats_out.update(v2d=g.v2d, grad_norm=g.grad_norm, visible=g.visible)
        dev = ctx.device
        return (*(torch.from_numpy(a).to(dev) for a in (g.means, g.quats, g.log_scales,
                                                          g.opacity_logits, g.sh)),
                None, None, None)


def rasterize(means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor,
              opacity_logits: torch.Tensor, sh: torch.Tensor, camera: Camera,
              background: torch.Tensor | tuple = (0.0, 0.0, 0.0), *,
              scale_activation: str = "exp", backend: str | None = None) -> RasterOutput:
    """Render raw Gaussians (see module) through the kernels, differentiably -> RasterOutput.

    backend: None (CPU backend for CPU tensors, CUDA kernels for CUDA tensors), "cpu", "cuda"
    or "emulated" (the CUDA kernels on the CPU under the emulation shim: tests)."""
    if not isinstance(camera, Camera):
        raise InputError(f"camera must be a huma_rt.gaussians.Camera; got {type(camera).__name__}")
    for name, t in (("means", means), ("quats", quats), ("log_scales", log_scales),
                    ("opacity_logits", opacity_logits), ("sh", sh)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch tensor; got {type(t).__name__}")
    engine = _engine(camera, means.device, backend, means.shape[0])
    stats: dict = {}
    rgb, T = RasterizeGaussians.apply(means, quats, log_scales, opacity_logits, sh, engine,
                                      scale_activation, stats)
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    h, w = camera.height, camera.width
    if bg.shape not in ((3,), (h, w, 3)):
        raise InputError(f"background must be an RGB triple or a [{h}, {w}, 3] image; got shape "
                         f"{tuple(bg.shape)}")
    image = rgb + T[..., None] * bg
    return RasterOutput(image=image, alpha=1.0 - T, rgb=rgb, T=T, mean2d_grad=stats)
