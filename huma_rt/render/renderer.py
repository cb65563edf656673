"""Renderer: the stateful whole-image rasterizer (buffers allocated once per camera)."""

from __future__ import annotations

import logging

import numpy as np

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.nvtx import annotate
from huma_rt.render._common import BACKENDS, RenderResult, check_background, check_gaussians

log = logging.getLogger(__name__)


class Renderer:
    """Renders Gaussians seen by one camera; reuses its buffers from call to call.

    backend: "cpu" (native CPU kernels), "cuda" (CUDA kernels via CuPy), "emulated" (the CUDA
    kernels compiled for the CPU under the emulation shim; for tests), "gsplat" (gsplat's CUDA
    rasterizer; GPU only). The result's arrays belong to the renderer unless ``out`` is given
    and stay valid until the next call.
    """

    def __init__(self, camera: Camera, *, backend: str = "cpu", capacity: int = 0,
                 threads: int = 0) -> None:
        if not isinstance(camera, Camera):
            raise InputError(f"camera must be a huma_rt.gaussians.Camera; got {type(camera).__name__}")
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}; got {backend!r}")
        self.camera = camera
        self.backend = backend
        self.threads = threads
        self._impl = None
        self._capacity = 0
        if backend in ("cuda", "gsplat"):
            _require_gpu(backend)
        if capacity:
            self._ensure(capacity)

    def _ensure(self, n: int) -> None:
        if self._impl is not None and n <= self._capacity:
            return
        if self._impl is not None:
            log.info("renderer grows from %d to %d Gaussians (allocates)", self._capacity, n)
        self._capacity = n
        if self.backend == "cpu":
            from huma_rt.render._cpu import CpuStages

            self._impl = CpuStages(self.camera, n, threads=self.threads)
        elif self.backend == "emulated":
            from huma_rt.render._gpu import GpuStages

            self._impl = GpuStages(self.camera, n, launcher="emulated")
        elif self.backend == "cuda":
            from huma_rt.render._gpu import GpuStages

            self._impl = GpuStages(self.camera, n, launcher="cupy")
        else:
            self._impl = "gsplat"

    def render(self, gaussians: Gaussians, *, background=None, out: np.ndarray | None = None,
               return_depth: bool = False) -> RenderResult:
        """Render ``gaussians``; ``out`` [H,W,3] float32 receives the RGB when given."""
        check_gaussians(gaussians)
        h, w = self.camera.height, self.camera.width
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != (h, w, 3)
                                or out.dtype != np.float32 or not out.flags.c_contiguous):
            raise InputError(f"out must be a C-contiguous float32 array of shape {(h, w, 3)}; got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        bg_image, bg_color = check_background(background, self.camera)
        g = gaussians
        n = g.count
        self._ensure(max(n, 1))
        impl = self._impl
        if impl == "gsplat":
            from huma_rt.render._gsplat import render_gsplat

            return render_gsplat(g, self.camera, bg_image, bg_color, out, return_depth)
        with annotate("huma/project"):
            impl.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
        rgb = out if out is not None else impl.rgb
        while True:  # once, unless a GPU frame's intersections overflowed (then drawn again)
            with annotate("huma/sort"):
                impl.bin_sort(n, impl.full_rect)
            with annotate("huma/blend"):
                impl.blend(impl.full_rect, return_depth)
            with annotate("huma/composite"):
                impl.composite(bg_image, bg_color, (0, 0, w, h), out_f32=rgb)
            if not impl.overflowed():
                break
        return RenderResult(rgb=rgb, alpha=impl.alpha, depth=impl.depth if return_depth else None)


def _require_gpu(backend: str) -> None:
    from huma_rt._optional import require_cuda

    require_cuda(f"the {backend!r} render backend")


def rasterize(gaussians: Gaussians, camera: Camera, *, background=None, backend: str = "cpu",
              out: np.ndarray | None = None, return_depth: bool = False) -> RenderResult:
    """Render Gaussians with a pinhole camera (gsplat 1.5.3 forward conventions).

    gaussians: huma_rt.gaussians.Gaussians (N any, SH degree 0..3); camera: Camera;
    background: None (black), an RGB triple, or an [H,W,3] float32 image;
    out: optional [H,W,3] float32 receiving the RGB. Returns RenderResult with freshly owned
    arrays (rgb [H,W,3], alpha [H,W], depth [H,W] when return_depth). The per-frame path should
    keep a Renderer instead: this convenience form allocates its buffers on every call.
    """
    r = Renderer(camera, backend=backend)
    res = r.render(gaussians, background=background, out=out, return_depth=return_depth)
    return res
