"""FrameRenderer: the runtime's per-frame renderer (static layer once, dynamic tiles per frame).

Canonical Gaussians never move except the dynamic ones, so the constructor projects every
Gaussian once and renders the whole frame; each frame then re-projects only the dynamic rows,
and re-bins, sorts and blends only the tiles those Gaussians touch now or touched last frame
(with ALL Gaussians that overlap those tiles), so the rectangle equals a full render. On the
CPU the tiles of that rectangle that neither frame touched (a cheek between the eyes and the
mouth) are not redrawn: the blend buffers still hold them as the static Gaussians draw them.
"""

from __future__ import annotations

import time

import numpy as np

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.nvtx import annotate
from huma_rt.render._common import TILE, check_background, check_gaussians

_STAGES = ("project", "sort", "blend", "composite")


class FrameRenderer:
    """Renders one avatar's frames into a caller-owned uint8 image.

    camera: Camera; gaussians: canonical Gaussians (N); dynamic: bool [N] (True = moved by the
    deformer each frame); background: [H,W,3] float32 image or an RGB triple in [0, 1].
    backend: "cpu" redraws only the changed tiles; "cuda" / "emulated" (the GPU kernels) also
    project only the dynamic rows but redraw the whole frame, which is cheap on a GPU; their
    second frame is captured as a graph (a CUDA graph on "cuda") and later frames replay it:
    one launch and one host sync per frame.
    ``static_frame`` [H,W,3] uint8 is the frame with every Gaussian at rest. ``stage_times``
    holds the last call's seconds per stage (project, sort, blend, composite).
    """

    def __init__(self, camera: Camera, gaussians: Gaussians, dynamic: np.ndarray, *,
                 background=(0.0, 0.0, 0.0), backend: str = "cpu", threads: int = 0) -> None:
        check_gaussians(gaussians)
        n = gaussians.count
        dynamic = np.asarray(dynamic)
        if dynamic.shape != (n,) or dynamic.dtype != np.bool_:
            raise InputError(f"dynamic must be a bool mask of shape ({n},); got {dynamic.dtype} {dynamic.shape}")
        if backend == "cpu":
            from huma_rt.render._cpu import CpuStages

            self._stages = CpuStages(camera, max(n, 1), threads=threads)
        elif backend in ("cuda", "emulated"):
            # On the GPU path a full re-render is cheap, and the device composites whole
            # frames: every frame redraws the full image (rect = the whole frame).
            from huma_rt.render._gpu import GpuStages

            self._stages = GpuStages(camera, max(n, 1), graphs=True,
                                     launcher="cupy" if backend == "cuda" else "emulated")
        else:
            raise InputError(f"FrameRenderer backend must be 'cpu', 'cuda' or 'emulated'; got {backend!r}")
        self.camera = camera
        self.backend = backend
        self.count = n
        self.num_dynamic = int(dynamic.sum())
        self._bg_image, self._bg_color = check_background(background, camera)
        g = gaussians
        self._dyn_index = np.flatnonzero(dynamic).astype(np.int32)
        self._dyn_opacity = np.ascontiguousarray(g.opacity_logits[dynamic])
        self._dyn_sh = np.ascontiguousarray(g.sh[dynamic])
        self._activation = g.scale_activation
        s = self._stages
        s.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
        # the tiles the dynamic Gaussians cover at rest: the first frame re-renders them too
        s.project(np.ascontiguousarray(g.means[dynamic]), np.ascontiguousarray(g.quats[dynamic]),
                  np.ascontiguousarray(g.log_scales[dynamic]), self._dyn_opacity, self._dyn_sh,
                  self._activation, out_index=self._dyn_index)
        self._full_frame = s.tile_box is None  # GPU stages: no tile box, whole frames
        self._rest_box = s.full_rect.copy() if self._full_frame else s.tile_box.copy()
        h, w = camera.height, camera.width
        self.static_frame = np.zeros((h, w, 3), dtype=np.uint8)
        while True:  # once, unless a GPU frame's intersections overflowed (then drawn again)
            s.bin_sort(n, s.full_rect)
            s.blend(s.full_rect, False)
            s.composite(self._bg_image, self._bg_color, (0, 0, w, h), out_u8=self.static_frame)
            if not s.overflowed():
                break
        self._merge = hasattr(s, "prebin_static")  # CPU: static tile lists built once
        if self._merge:
            s.prebin_static(n, self._dyn_index)
            # the tiles the dynamic Gaussians touched last frame (at rest: all of the rest box,
            # which a new output buffer shows) and those to redraw this frame
            rest = np.zeros((int(s.full_rect[3]), int(s.full_rect[2])), np.uint8)  # [tiles_y, tiles_x]
            bx0, by0, bx1, by1 = (int(v) for v in self._rest_box)
            rest[by0:by1, bx0:bx1] = 1
            self._touched_rest = rest.reshape(-1)
            self._touched = self._touched_rest.copy()
            self._draw = np.zeros_like(self._touched)
        self._last_box = self._rest_box.copy()
        self._rect = np.zeros(4, dtype=np.int32)
        self._last_out: np.ndarray | None = None
        self.stage_times = dict.fromkeys(_STAGES, 0.0)

    @property
    def redrawn_tiles(self) -> int:
        """Tiles the last frame blended: on the CPU those the dynamic Gaussians touched then or
        the frame before; on a GPU every tile (for benchmarks; computed when asked)."""
        if self._merge:
            return int(np.count_nonzero(self._draw))
        return int(self._stages.full_rect[2] * self._stages.full_rect[3])

    def use_stream(self, stream) -> None:
        """GPU backends: launch this renderer's kernels and copies on ``stream`` (a session's
        CuPy stream, so its networks and its frames run in order on one stream). CPU: no-op."""
        launcher = getattr(self._stages, "L", None)
        if launcher is not None:
            launcher.use_stream(stream)

    def _check(self, name: str, arr: np.ndarray, cols: int) -> None:
        if (not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or arr.ndim != 2
                or arr.shape[0] != self.num_dynamic or arr.shape[1] != cols
                or not arr.flags.c_contiguous):
            raise InputError(
                f"{name} must be a C-contiguous float32 array of shape ({self.num_dynamic}, {cols}); "
                f"got {getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}")

    def render(self, means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray,
               out: np.ndarray) -> tuple[int, int, int, int]:
        """Render the frame whose dynamic Gaussians are (means [Nd,3], quats [Nd,4] wxyz,
        log_scales [Nd,3]) into ``out`` [H,W,3] uint8, re-drawing only the changed tiles.

        ``out`` must be kept by the caller between frames; a new buffer first receives the
        static frame. Returns the re-drawn pixel rectangle (x0, y0, x1, y1), x1/y1 exclusive.
        Allocates nothing."""
        self._check("means", means, 3)
        self._check("quats", quats, 4)
        self._check("log_scales", log_scales, 3)
        h, w = self.camera.height, self.camera.width
        if (not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != (h, w, 3)
                or not out.flags.c_contiguous):
            raise InputError(f"out must be a C-contiguous uint8 array of shape ({h}, {w}, 3); got "
                             f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        s = self._stages
        if out is not self._last_out:
            np.copyto(out, self.static_frame)
            # the new buffer shows the rest pose: its tiles are redrawn, and so are those the
            # last frame touched (their blend buffers hold that frame, not the static picture)
            np.minimum(self._last_box[:2], self._rest_box[:2], out=self._last_box[:2])
            np.maximum(self._last_box[2:], self._rest_box[2:], out=self._last_box[2:])
            if self._merge:
                np.maximum(self._touched, self._touched_rest, out=self._touched)
            self._last_out = out
        times = self.stage_times
        t0 = time.perf_counter()
        s.begin_frame()  # GPU: from the third frame on one graph launch does the device work
        with annotate("huma/project"):
            box = s.project(means, quats, log_scales, self._dyn_opacity, self._dyn_sh,
                            self._activation, out_index=self._dyn_index)
        rect = self._rect
        if self._full_frame:
            rect[:] = s.full_rect
        else:
            np.minimum(box[:2], self._last_box[:2], out=rect[:2])
            np.maximum(box[2:], self._last_box[2:], out=rect[2:])
            self._last_box[:] = box
        t1 = time.perf_counter()
        x0, y0 = int(rect[0]) * TILE, int(rect[1]) * TILE
        x1, y1 = min(int(rect[2]) * TILE, w), min(int(rect[3]) * TILE, h)
        if x1 <= x0 or y1 <= y0:
            x0 = y0 = x1 = y1 = 0
        while True:  # once, unless a GPU frame's intersections overflowed (then drawn again)
            with annotate("huma/sort"):
                if self._merge:  # only the tiles touched now or last frame get lists
                    s.bin_merge(self._dyn_index, rect, self._touched, self._draw)
                else:
                    s.bin_sort(self.count, rect)
            t2 = time.perf_counter()
            with annotate("huma/blend"):
                if self._merge:
                    s.blend(rect, False, self._draw)
                else:
                    s.blend(rect, False)
            t3 = time.perf_counter()
            with annotate("huma/composite"):
                s.composite(self._bg_image, self._bg_color, (x0, y0, x1, y1), out_u8=out)
            if not s.overflowed():
                break
            s.begin_frame(capture=False)  # drawn again, eagerly (the overflow dropped the graph)
        t4 = time.perf_counter()
        times["project"] = t1 - t0
        times["sort"] = t2 - t1
        times["blend"] = t3 - t2
        times["composite"] = t4 - t3
        return x0, y0, x1, y1
