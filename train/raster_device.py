"""The differentiable rasterizer on the CUDA kernels (kernels/raster.cu): through CuPy on a GPU,
or compiled for the CPU under the emulation shim (kernels/emulated.py), which CI runs. Same
interface as train/raster_cpu.CpuRasterizer (numpy in, numpy out).

The forward is the runtime's launch sequence (GpuStages: project, count, scan, emit, sort)
followed by hr_blend_save_kernel; the backward is hr_blend_backward_kernel (atomicAdd per
Gaussian) then hr_project_backward_kernel. Inputs and gradients cross the host boundary once
per call (thin: the training loop's tensors are not yet kept on the device).
"""

from __future__ import annotations

import logging

import numpy as np
from huma_rt.kernels.cpu import V2D
from huma_rt.train.raster_cpu import (
    SH_DEGREES,
    RasterGrads,
    RasterSaved,
    check_image_grads,
    check_inputs,
)

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera
from huma_rt.render._common import SCALE_ACTIVATION_CODES, TILE

log = logging.getLogger(__name__)

THREADS = 128  # per-Gaussian kernels' block size (as the runtime's)


class DeviceRasterizer:
    """Forward (with save) and backward on the CUDA kernels for one camera; launcher "cupy"
    (a GPU) or "emulated" (the same kernels on the CPU). Device buffers for up to ``capacity``
    Gaussians are allocated here and grown when a call brings more."""

    def __init__(self, camera: Camera, capacity: int = 1, launcher: str = "cupy") -> None:
        from huma_rt.render._gpu import make_launcher

        self.camera = camera
        self.L = make_launcher(launcher)
        self._alloc(max(int(capacity), 1))

    def _alloc(self, capacity: int) -> None:
        from huma_rt.render._gpu import GpuStages

        L, h, w = self.L, self.camera.height, self.camera.width
        self.stages = GpuStages(self.camera, capacity, launcher=L)
        self.d_T = L.zeros((h, w), np.float32)
        self.d_last = L.zeros((h, w), np.int32)
        self.d_v_rgb = L.zeros((h, w, 3), np.float32)
        self.d_v_T = L.zeros((h, w), np.float32)
        self.d_v2d = L.zeros((capacity, V2D), np.float32)
        self.d_grads = {"means": L.zeros((capacity, 3), np.float32),
                        "quats": L.zeros((capacity, 4), np.float32),
                        "log_scales": L.zeros((capacity, 3), np.float32),
                        "opacity_logits": L.zeros(capacity, np.float32),
                        "grad_norm": L.zeros(capacity, np.float32),
                        "visible": L.zeros(capacity, np.int32)}
        self.d_v_sh = None

    def _copy(self, a):
        stream = getattr(self.L, "stream", None)
        if stream is None:
            return a.copy()
        with stream:  # ordered after the kernels that wrote a
            return a.copy()

    def _grid(self) -> tuple[int, tuple]:
        st = self.stages
        return st.tiles, (st.tiles_x, 0, 0, st.tiles_x)

    def forward(self, means, quats, log_scales, opacity_logits, sh, scale_activation: str = "exp"):
        """Raw Gaussians -> (rgb [H,W,3], T [H,W], RasterSaved of device copies); see
        CpuRasterizer.forward."""
        n = check_inputs(means, quats, log_scales, opacity_logits, sh, scale_activation)
        if n == 0:
            raise InputError("the device rasterizer needs at least one Gaussian; got 0")
        if n > self.stages.capacity:
            self._alloc(n)
        st, L = self.stages, self.L
        h, w = self.camera.height, self.camera.width
        st.project(means, quats, log_scales, opacity_logits, sh, scale_activation)
        tiles, rect = self._grid()
        while True:
            st.bin_sort(n, st.full_rect)
            L.launch("hr_blend_save_kernel", (tiles, 1, 1), (TILE, TILE, 1),
                     (st.d_proj, st.d_colors, w, h, *rect, st.d_offsets, st.d_sorted, st.d_rgb,
                      st.d_alpha, self.d_T, self.d_last))
            L.download(st.h_status, st.d_status)
            if not st.overflowed():
                break
        rgb = np.empty((h, w, 3), np.float32)
        T = np.empty((h, w), np.float32)
        L.download_async(rgb, st.d_rgb)
        L.download(T, self.d_T)
        saved = RasterSaved(self._copy(st.d_proj), self._copy(st.d_colors),
                            self._copy(st.d_offsets), self._copy(st.d_sorted),
                            self._copy(self.d_T), self._copy(self.d_last))
        return rgb, T, saved

    def backward(self, saved: RasterSaved, means, quats, log_scales, opacity_logits, sh,
                 scale_activation: str, v_rgb: np.ndarray, v_T: np.ndarray) -> RasterGrads:
        """See CpuRasterizer.backward; ``saved`` from this rasterizer's forward."""
        n = check_inputs(means, quats, log_scales, opacity_logits, sh, scale_activation)
        check_image_grads(v_rgb, v_T, self.camera)
        if n > self.stages.capacity:
            raise InputError(f"the saved forward had at most {self.stages.capacity} Gaussians; "
                             f"got {n}")
        st, L = self.stages, self.L
        h, w = self.camera.height, self.camera.width
        L.upload(self.d_v_rgb, v_rgb)
        L.upload(self.d_v_T, v_T)
        L.memset0(self.d_v2d)
        tiles, rect = self._grid()
        L.launch("hr_blend_backward_kernel", (tiles, 1, 1), (TILE, TILE, 1),
                 (saved.proj, saved.colors, w, h, *rect, saved.tile_offsets, saved.keys,
                  saved.final_T, saved.last, self.d_v_rgb, self.d_v_T, self.d_v2d))
        # the inputs again (another forward may have replaced them on the device)
        for name, arr in (("means", means), ("quats", quats), ("log_scales", log_scales),
                          ("opacity_logits", opacity_logits)):
            L.upload(st.d_in[name][:n], arr)
        k = sh.shape[1]
        if st.d_sh is None or st.d_sh.shape[1] != k:
            st.d_sh = L.zeros((st.capacity, k, 3), np.float32)
        L.upload(st.d_sh[:n], sh)
        if self.d_v_sh is None or self.d_v_sh.shape[1] != k:
            self.d_v_sh = L.zeros((st.capacity, k, 3), np.float32)
        d = self.d_grads
        L.memset0(d["grad_norm"])
        L.memset0(d["visible"])
        L.launch("hr_project_backward_kernel", ((n + THREADS - 1) // THREADS, 1, 1),
                 (THREADS, 1, 1),
                 (n, st.d_in["means"], st.d_in["quats"], st.d_in["log_scales"],
                  st.d_in["opacity_logits"], st.d_sh, SH_DEGREES[k],
                  SCALE_ACTIVATION_CODES[scale_activation], st.d_cam, self.d_v2d, d["means"],
                  d["quats"], d["log_scales"], d["opacity_logits"], self.d_v_sh, d["grad_norm"],
                  d["visible"]))
        out = {name: np.empty((n, *buf.shape[1:]), buf.dtype) for name, buf in d.items()}
        for name, buf in d.items():
            L.download_async(out[name], buf[:n])
        v_sh = np.empty((n, k, 3), np.float32)
        v2d = np.empty((n, V2D), np.float32)
        L.download_async(v_sh, self.d_v_sh[:n])
        L.download(v2d, self.d_v2d[:n])
        return RasterGrads(out["means"], out["quats"], out["log_scales"], out["opacity_logits"],
                           v_sh, v2d, out["grad_norm"], out["visible"] > 0)
