"""The CPU backend's stages as a stateful object: buffers for N Gaussians and one camera are
allocated once; each stage is one call into the native library (kernels/cpu/raster_cpu.cpp)."""

from __future__ import annotations

import logging

import numpy as np

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera
from huma_rt.kernels.cpu import PROJECTED_DTYPE, load_library
from huma_rt.render._common import (
    ISECTS_PER_GAUSSIAN,
    SCALE_ACTIVATION_CODES,
    camera_params,
    tile_grid,
)

log = logging.getLogger(__name__)


def _ptr(a: np.ndarray | None) -> int | None:
    # __array_interface__ makes a few plain objects that die at once; a.ctypes would make a
    # reference cycle per call that lingers until the garbage collector runs
    return None if a is None else a.__array_interface__["data"][0]


class CpuStages:
    """Project / bin+sort / blend / composite for up to ``capacity`` Gaussians.

    Owns: proj [N] PROJECTED_DTYPE, colours [N,3] f32, tile offsets, sort keys [max_isects]
    uint64, blend scratch, and the un-composited frame (rgb [H,W,3], alpha, depth [H,W] f32).
    """

    def __init__(self, camera: Camera, capacity: int, *, max_isects: int | None = None,
                 threads: int = 0, library=None) -> None:
        if capacity < 0:
            raise InputError(f"capacity must be >= 0 Gaussians; got {capacity}")
        # library: another build of the CPU rasterizer (kernels.cpu.open_library), for A/B runs
        self.lib = library if library is not None else load_library()
        self.camera = camera
        self.cam = camera_params(camera)
        self.threads = int(threads) or _omp_threads()
        self.tiles_x, self.tiles_y = tile_grid(camera)
        tiles = self.tiles_x * self.tiles_y
        h, w = camera.height, camera.width
        self.capacity = int(capacity)
        self.proj = np.zeros(max(capacity, 1), dtype=PROJECTED_DTYPE)
        self.colors = np.zeros((max(capacity, 1), 3), dtype=np.float32)
        self.records = _aligned_zeros(max(capacity, 1) * self.lib.hr_cpu_record_size(), 64)
        self.tile_offsets = np.zeros(tiles + 1, dtype=np.int32)
        self.tile_counts = np.zeros((self.threads, tiles), dtype=np.int32)  # per binning thread
        # depth radix sort: two arrays of one entry per Gaussian
        self.sort_scratch = np.zeros(2 * max(capacity, 1) * self.lib.hr_cpu_visible_size(),
                                     np.uint8)
        self.keys = np.zeros(max_isects or max(1 << 16, ISECTS_PER_GAUSSIAN * capacity),
                             dtype=np.uint64)
        self.scratch_per_thread = max(capacity, 1)
        self.scratch = np.zeros(
            self.threads * self.lib.hr_cpu_blend_scratch_bytes(self.scratch_per_thread), np.uint8)
        self.rgb = np.zeros((h, w, 3), dtype=np.float32)
        self.alpha = np.zeros((h, w), dtype=np.float32)
        self.depth = np.zeros((h, w), dtype=np.float32)
        self.full_rect = np.array([0, 0, self.tiles_x, self.tiles_y], dtype=np.int32)
        self.tile_box = np.zeros(4, dtype=np.int32)
        self.num_isects = 0
        self._cache_pointers()

    def _cache_pointers(self) -> None:
        # owned buffers never move: their addresses are taken once (a.ctypes per call would
        # create Python objects on the per-frame path)
        self.p = {name: getattr(self, name).ctypes.data for name in (
            "cam", "proj", "colors", "records", "tile_offsets", "tile_counts", "sort_scratch",
            "keys", "scratch", "rgb", "alpha", "depth", "tile_box")}

    def _keys_fit(self, total: int) -> bool:
        """True when ``total`` intersections fit the key buffer (recorded as num_isects);
        otherwise grow the buffer 1.5x past them so the caller's retry fits."""
        if total <= self.keys.shape[0]:
            self.num_isects = int(total)
            return True
        log.warning("tile intersections %d exceed the buffer of %d; growing it (this frame "
                    "allocates)", total, self.keys.shape[0])
        self._replace_keys(int(total * 1.5))
        return False

    def _replace_keys(self, size: int) -> None:
        """A new, larger intersection-key buffer; only its cached address changes."""
        self.keys = np.zeros(size, dtype=np.uint64)
        self.p["keys"] = self.keys.ctypes.data

    def project(self, means, quats, log_scales, opacity_logits, sh, scale_activation: str,
                out_index: np.ndarray | None = None) -> np.ndarray:
        """Project rows of raw Gaussian arrays into self.proj / self.colors (rows out_index or
        0..n-1). Returns self.tile_box [tx0, ty0, tx1, ty1) of the tiles they touch."""
        n = means.shape[0]
        degree = {1: 0, 4: 1, 9: 2, 16: 3}[sh.shape[1]]
        self.lib.hr_cpu_project(
            n, _ptr(means), _ptr(quats), _ptr(log_scales), _ptr(opacity_logits), _ptr(sh),
            degree, SCALE_ACTIVATION_CODES[scale_activation], self.p["cam"], _ptr(out_index),
            self.p["proj"], self.p["colors"], self.p["records"], self.p["tile_box"], self.threads,
        )
        return self.tile_box

    def bin_sort(self, n: int, rect: np.ndarray) -> int:
        """Bin the first n projected Gaussians into the tiles of rect, each tile's list in
        (depth, index) order (one depth sort of the Gaussians, emitted in that order).
        Grows the key buffer (with a warning) when the intersections exceed its capacity."""
        while True:
            total = self.lib.hr_cpu_bin_sort(
                n, self.p["proj"], self.camera.width, self.camera.height, _ptr(rect),
                self.p["tile_offsets"], self.p["tile_counts"], self.p["keys"],
                self.keys.shape[0], self.p["sort_scratch"], self.threads,
            )
            if self._keys_fit(total):
                return self.num_isects

    def prebin_static(self, n: int, dyn_index: np.ndarray) -> None:
        """Bin and sort the static rows (all but dyn_index) once, for bin_merge. Call after the
        static rows are projected; they must not change afterwards."""
        saved = self.proj[dyn_index].copy()
        self.proj["rx"][dyn_index] = 0  # culled while the static lists are built
        self.proj["ry"][dyn_index] = 0
        total = self.bin_sort(n, self.full_rect)
        self.proj[dyn_index] = saved
        self.static_offsets = self.tile_offsets.copy()
        self.static_keys = self.keys[:max(total, 1)].copy()
        self.static_isects = total
        if self.keys.shape[0] < 2 * total:  # room for the dynamic keys of a frame as well
            self._replace_keys(2 * total)
        self.p["static_offsets"] = self.static_offsets.ctypes.data
        self.p["static_keys"] = self.static_keys.ctypes.data

    def bin_merge(self, dyn_index: np.ndarray, rect: np.ndarray, touched: np.ndarray | None = None,
                  draw: np.ndarray | None = None) -> int:
        """bin_sort for the tiles of rect when only the dyn_index rows moved: bins those rows
        and merges them into the static lists of prebin_static (same lists as bin_sort).

        touched, draw: uint8 [tiles_y * tiles_x], both or neither. touched marks the tiles the
        dynamic rows touched last frame (inside rect) and is updated to those they touch now;
        draw receives the tiles of rect in either set, the only ones given lists (blend skips
        the rest: they show the static Gaussians, as the blend buffers already hold)."""
        while True:
            total = self.lib.hr_cpu_bin_merge(
                dyn_index.shape[0], _ptr(dyn_index), self.p["proj"], self.camera.width,
                self.camera.height, _ptr(rect), self.p["static_offsets"], self.p["static_keys"],
                self.p["tile_offsets"], self.p["tile_counts"], self.p["keys"],
                self.keys.shape[0], self.p["sort_scratch"], _ptr(touched), _ptr(draw), self.threads,
            )
            if self._keys_fit(total):
                return self.num_isects

    def begin_frame(self, capture: bool = True) -> None:
        """Nothing to prepare: each CPU stage runs to completion when called."""

    def overflowed(self) -> bool:
        """Always False: bin_sort / bin_merge grow their buffers before they return."""
        return False

    def blend(self, rect: np.ndarray, with_depth: bool, draw: np.ndarray | None = None) -> None:
        """Front-to-back blend of the tiles of rect (those draw [tiles] uint8 marks, when
        given) into self.rgb / alpha (/ depth)."""
        self.lib.hr_cpu_blend(
            self.p["records"], self.camera.width, self.camera.height, _ptr(rect),
            self.p["tile_offsets"], self.p["keys"], self.p["scratch"], self.scratch_per_thread,
            self.p["rgb"], self.p["alpha"], self.p["depth"] if with_depth else None, _ptr(draw),
            self.threads,
        )

    def composite(self, bg_image: np.ndarray | None, bg_color: np.ndarray,
                  pixel_rect: tuple[int, int, int, int], out_f32: np.ndarray | None = None,
                  out_u8: np.ndarray | None = None) -> None:
        """out = rgb + (1 - alpha) * background over pixel_rect (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = pixel_rect
        self.lib.hr_cpu_composite(
            self.p["rgb"], self.p["alpha"], _ptr(bg_image), _ptr(bg_color), self.camera.width,
            x0, y0, x1, y1, _ptr(out_f32), _ptr(out_u8), self.threads,
        )


def _aligned_zeros(nbytes: int, align: int) -> np.ndarray:
    """A zeroed uint8 buffer of nbytes whose address is a multiple of align (cache lines)."""
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes]


def _omp_threads() -> int:
    import os

    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1
