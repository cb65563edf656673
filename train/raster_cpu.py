"""The differentiable rasterizer on the CPU backend: a forward that keeps what the backward needs,
and the backward, both in the native library (kernels/cpu/raster_cpu.cpp, the math of
kernels/raster_math.cuh). numpy in, numpy out; train/raster_autograd.py wraps it for torch.

The forward is the runtime's own (CpuStages: project, bin + sort; the blend with
save_for_backward), so a trained avatar is rendered by exactly the code it was trained with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from huma_rt.kernels.cpu import V2D, load_backward

from huma_rt.errors import InputError
from huma_rt.gaussians import SCALE_ACTIVATIONS, Camera
from huma_rt.render._common import SCALE_ACTIVATION_CODES, camera_params

log = logging.getLogger(__name__)

SH_DEGREES = {1: 0, 4: 1, 9: 2, 16: 3}


@dataclass
class RasterSaved:
    """What one forward keeps for its backward: copies, so that several forwards (views) may run
    before their backwards. proj [N] PROJECTED_DTYPE, colors [N,3] f32, tile_offsets
    [tiles+1] i32, keys [isects] u64 (tile lists, front to back), final_T [H,W] f32, last [H,W]
    i32 (list entries up to the pixel's last contributing Gaussian)."""

    proj: np.ndarray
    colors: np.ndarray
    tile_offsets: np.ndarray
    keys: np.ndarray
    final_T: np.ndarray
    last: np.ndarray


@dataclass
class RasterGrads:
    """dL/d of the raw inputs (float32, their shapes) plus the screen-space gradients.

    v2d [N,9]: dL/d 2D mean (x, y; pixels), conic (a, b, c), activated opacity, colour (r,g,b).
    grad_norm [N]: |dL/d 2D mean| (0 where culled), the statistic 3DGS densification sums over
    views; visible [N] bool: the Gaussian was drawn (its view count)."""

    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray
    v2d: np.ndarray
    grad_norm: np.ndarray
    visible: np.ndarray


def check_inputs(means, quats, log_scales, opacity_logits, sh, scale_activation: str) -> int:
    """Raise InputError unless the raw arrays are C-contiguous float32 of matching shapes
    (means [N,3], quats [N,4] wxyz, log_scales [N,3], opacity_logits [N], sh [N,K,3] with
    K in 1, 4, 9, 16). Returns N."""
    n = means.shape[0] if getattr(means, "ndim", 0) == 2 else -1
    want = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "opacity_logits": (n,)}
    arrays = {"means": means, "quats": quats, "log_scales": log_scales,
              "opacity_logits": opacity_logits, "sh": sh}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
            raise InputError(f"{name} must be a C-contiguous float32 array; got "
                             f"{getattr(a, 'dtype', type(a).__name__)}")
        if name in want and a.shape != want[name]:
            raise InputError(f"{name} must have shape {want[name]}; got {a.shape}")
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[1] not in SH_DEGREES or sh.shape[2] != 3:
        raise InputError(f"sh must have shape ({n}, 1|4|9|16, 3); got {sh.shape}")
    if scale_activation not in SCALE_ACTIVATIONS:
        raise InputError(f"scale_activation must be one of {SCALE_ACTIVATIONS}; "
                         f"got {scale_activation!r}")
    return n


def check_image_grads(v_rgb: np.ndarray, v_T: np.ndarray, camera: Camera) -> None:
    """v_rgb must be [H,W,3] and v_T [H,W] C-contiguous float32."""
    h, w = camera.height, camera.width
    for name, a, shape in (("v_rgb", v_rgb, (h, w, 3)), ("v_T", v_T, (h, w))):
        if (not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != shape
                or not a.flags.c_contiguous):
            raise InputError(f"{name} must be a C-contiguous float32 array of shape {shape}; got "
                             f"{getattr(a, 'dtype', type(a).__name__)} "
                             f"{getattr(a, 'shape', '')}")


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


class CpuRasterizer:
    """Forward (with save) and backward of the rasterizer for one camera on the CPU backend.

    Buffers for up to ``capacity`` Gaussians are the runtime's CpuStages (grown when a call
    brings more); what a backward needs is copied out into a RasterSaved per forward."""

    def __init__(self, camera: Camera, capacity: int = 1, threads: int = 0) -> None:
        from huma_rt.render._cpu import CpuStages

        self.camera = camera
        self.threads = threads
        self.lib = load_backward()
        self.cam = camera_params(camera)
        self._stages_cls = CpuStages
        self.stages = CpuStages(camera, max(int(capacity), 1), threads=threads)

    def forward(self, means, quats, log_scales, opacity_logits, sh, scale_activation: str = "exp"):
        """Raw Gaussians -> (rgb [H,W,3] f32 un-composited colour, T [H,W] f32 final
        transmittance, RasterSaved). The image over a background is rgb + T * background."""
        n = check_inputs(means, quats, log_scales, opacity_logits, sh, scale_activation)
        st = self.stages
        if n > st.capacity:
            st = self.stages = self._stages_cls(self.camera, n, threads=self.threads)
        h, w = self.camera.height, self.camera.width
        st.project(means, quats, log_scales, opacity_logits, sh, scale_activation)
        total = st.bin_sort(n, st.full_rect)
        rgb = np.zeros((h, w, 3), np.float32)
        alpha = np.zeros((h, w), np.float32)
        final_T = np.ones((h, w), np.float32)
        last = np.zeros((h, w), np.int32)
        self.lib.hr_cpu_blend_save(
            st.p["records"], w, h, _ptr(st.full_rect), st.p["tile_offsets"], st.p["keys"],
            st.p["scratch"], st.scratch_per_thread, _ptr(rgb), _ptr(alpha), _ptr(final_T),
            _ptr(last), st.threads)
        saved = RasterSaved(st.proj[:n].copy(), st.colors[:n].copy(), st.tile_offsets.copy(),
                            st.keys[:max(total, 1)].copy(), final_T.copy(), last)
        return rgb, final_T, saved

    def backward(self, saved: RasterSaved, means, quats, log_scales, opacity_logits, sh,
                 scale_activation: str, v_rgb: np.ndarray, v_T: np.ndarray) -> RasterGrads:
        """dL/d rgb [H,W,3] and dL/d T [H,W] of a forward (its inputs and RasterSaved) ->
        RasterGrads of the raw inputs."""
        n = check_inputs(means, quats, log_scales, opacity_logits, sh, scale_activation)
        check_image_grads(v_rgb, v_T, self.camera)
        if saved.proj.shape[0] != n:
            raise InputError(f"the saved forward has {saved.proj.shape[0]} Gaussians; got {n}")
        h, w = self.camera.height, self.camera.width
        threads = self.stages.threads
        v2d = np.zeros((n, V2D), np.float32)
        scratch = np.empty(max(self.lib.hr_cpu_backward_scratch_bytes(n, threads), 8), np.uint8)
        full = self.stages.full_rect
        self.lib.hr_cpu_blend_backward(
            n, _ptr(saved.proj), _ptr(saved.colors), w, h, _ptr(full), _ptr(saved.tile_offsets),
            _ptr(saved.keys), _ptr(saved.final_T), _ptr(saved.last), _ptr(v_rgb), _ptr(v_T),
            _ptr(scratch), _ptr(v2d), threads)
        g = RasterGrads(np.empty_like(means), np.empty_like(quats), np.empty_like(log_scales),
                        np.empty_like(opacity_logits), np.empty_like(sh), v2d,
                        np.zeros(n, np.float32), np.zeros(n, bool))
        visible = np.zeros(n, np.int32)
        self.lib.hr_cpu_project_backward(
            n, _ptr(means), _ptr(quats), _ptr(log_scales), _ptr(opacity_logits), _ptr(sh),
            SH_DEGREES[sh.shape[1]], SCALE_ACTIVATION_CODES[scale_activation], _ptr(self.cam),
            _ptr(v2d), _ptr(g.means), _ptr(g.quats), _ptr(g.log_scales), _ptr(g.opacity_logits),
            _ptr(g.sh), _ptr(g.grad_norm), _ptr(visible), threads)
        g.visible = visible > 0
        return g
