"""The GPU launch sequence, shared by the CUDA (CuPy) and emulated launchers.

One sequence of launches per stage, two launchers: kernels/cupy_backend.CupyLauncher runs the
kernels on a GPU; kernels/emulated.EmulatedLauncher runs the same .cu kernels compiled for the
CPU under the emulation shim, so CI exercises this host logic (grids, buffer sizes, overflow
handling) as well as the kernels. Same stage interface as _cpu.CpuStages.

A frame is asynchronous from its first upload to its one host sync at the end of composite():
uploads go through pinned staging, binning never reads its intersection count back (the
kernels drop keys past the buffer and record the true count on the device), and the outputs
come back by asynchronous copies into pinned host buffers. The count is checked after that
sync: when it overflowed, ``overflowed()`` grows the buffers and the caller draws the frame
again (a warning; never a wrong frame).
"""

from __future__ import annotations

import logging

import numpy as np

from huma_rt.gaussians import Camera
from huma_rt.kernels.cpu import PROJECTED_DTYPE
from huma_rt.render._common import (
    ISECTS_PER_GAUSSIAN,
    SCALE_ACTIVATION_CODES,
    TILE,
    camera_params,
    tile_grid,
)

log = logging.getLogger(__name__)

THREADS = 128  # per-Gaussian kernels' block size


def make_launcher(kind: str):
    """'cupy' -> CupyLauncher (needs a GPU), 'emulated' -> EmulatedLauncher (CPU)."""
    if kind == "cupy":
        from huma_rt._optional import require_cuda
        from huma_rt.kernels.cupy_backend import CupyLauncher

        require_cuda("the 'cuda' render backend")
        return CupyLauncher()
    from huma_rt.kernels.emulated import EmulatedLauncher

    return EmulatedLauncher()


class GpuStages:
    """Project / bin+sort / blend / composite on device buffers sized for ``capacity``.

    graphs: capture the second frame's device work as a graph and replay it for every later
    frame (kernels/frame_graph.py); for callers whose frames all have one shape (the runtime's
    FrameRenderer: same rows, same rectangle). Frames are ``begin_frame()`` ... composite()."""

    def __init__(self, camera: Camera, capacity: int, *, launcher="cupy",
                 max_isects: int | None = None, graphs: bool = False) -> None:
        self.L = make_launcher(launcher) if isinstance(launcher, str) else launcher
        self.camera = camera
        self.tiles_x, self.tiles_y = tile_grid(camera)
        self.tiles = self.tiles_x * self.tiles_y
        h, w = camera.height, camera.width
        self.capacity = max(int(capacity), 1)
        L = self.L
        self.d_cam = L.zeros(camera_params(camera).shape, np.float32)
        L.upload(self.d_cam, camera_params(camera))
        self.d_proj = L.zeros(self.capacity * PROJECTED_DTYPE.itemsize, np.uint8)
        self.d_colors = L.zeros((self.capacity, 3), np.float32)
        self.d_counts = L.zeros(self.tiles, np.int32)
        self.d_offsets = L.zeros(self.tiles + 1, np.int32)
        self.d_cursor = L.zeros(self.tiles, np.int32)
        self.d_status = L.zeros(4, np.int32)
        self._alloc_keys(max_isects or max(1 << 16, ISECTS_PER_GAUSSIAN * self.capacity))
        self.d_rgb = L.zeros((h, w, 3), np.float32)
        self.d_alpha = L.zeros((h, w), np.float32)
        self.d_depth = L.zeros((h, w), np.float32)
        self.d_out = L.zeros((h, w, 3), np.float32)
        self.d_out_u8 = L.zeros((h, w, 3), np.uint8)
        self.d_bg_color = L.zeros(3, np.float32)
        self.d_bg_image = L.zeros((h, w, 3), np.float32)
        # staging for the per-frame inputs (uploaded into, never reallocated)
        self.d_in = {"means": L.zeros((self.capacity, 3), np.float32),
                     "quats": L.zeros((self.capacity, 4), np.float32),
                     "log_scales": L.zeros((self.capacity, 3), np.float32),
                     "opacity_logits": L.zeros(self.capacity, np.float32),
                     "index": L.zeros(self.capacity, np.int32)}
        self.d_sh = None
        # host side of the frame's asynchronous copies (pinned on a GPU)
        self.alpha = L.host_zeros((h, w), np.float32)
        self.depth = L.host_zeros((h, w), np.float32)
        self.rgb = L.host_zeros((h, w, 3), np.float32)
        self.h_out = L.host_zeros((h, w, 3), np.float32)
        self.h_out_u8 = L.host_zeros((h, w, 3), np.uint8)
        self.h_status = L.host_zeros(4, np.int32)
        self.full_rect = np.array([0, 0, self.tiles_x, self.tiles_y], dtype=np.int32)
        self.tile_box = None  # the GPU path does not reduce a tile box (FrameRenderer is CPU)
        self.num_isects = 0
        self._with_depth = False
        self.graphs = bool(graphs)
        self._frames = 0  # frames begun with begin_frame()

    def _alloc_keys(self, n: int) -> None:
        self.max_isects = int(n)
        self.d_keys = self.L.zeros(self.max_isects, np.uint64)
        self.d_sorted = self.L.zeros(self.max_isects, np.uint64)

    def begin_frame(self, capture: bool = True) -> None:
        """Start a frame's device work: replayed as a graph when one was captured, else
        captured when graphs are on, ``capture`` allows it and this is not the first frame
        (which runs eagerly and allocates the staging buffers)."""
        self.L.begin_frame(capture=capture and self.graphs and self._frames > 0)
        self._frames += 1

    def project(self, means, quats, log_scales, opacity_logits, sh, scale_activation: str,
                out_index: np.ndarray | None = None):
        """Upload the raw rows and launch hr_project_kernel (one thread per Gaussian)."""
        L, n = self.L, means.shape[0]
        if n == 0:  # an empty grid is an invalid launch on a GPU
            return self.tile_box
        for name, arr in (("means", means), ("quats", quats), ("log_scales", log_scales),
                          ("opacity_logits", opacity_logits)):
            L.upload(self.d_in[name][:n], arr)
        k = sh.shape[1]
        if self.d_sh is None or self.d_sh.shape[1] != k:
            self.d_sh = L.zeros((self.capacity, k, 3), np.float32)
        L.upload(self.d_sh[:n], sh)
        idx = None
        if out_index is not None:
            L.upload(self.d_in["index"][:n], out_index)
            idx = self.d_in["index"]
        degree = {1: 0, 4: 1, 9: 2, 16: 3}[k]
        L.launch("hr_project_kernel", ((n + THREADS - 1) // THREADS, 1, 1), (THREADS, 1, 1),
                 (n, self.d_in["means"], self.d_in["quats"], self.d_in["log_scales"],
                  self.d_in["opacity_logits"], self.d_sh, degree,
                  SCALE_ACTIVATION_CODES[scale_activation], self.d_cam, idx, self.d_proj,
                  self.d_colors))
        return self.tile_box

    def bin_sort(self, n: int, rect: np.ndarray) -> None:
        """count -> scan -> emit -> per-tile sort for the tiles of rect, with no host read: the
        scan records the intersection count on the device (d_status), emit drops keys past the
        buffer. composite() brings the count back with the frame; see overflowed()."""
        L = self.L
        tx0, ty0, tx1, ty1 = (int(v) for v in rect)
        grid = ((max(n, 1) + THREADS - 1) // THREADS, 1, 1)
        geo = (self.tiles_x, self.tiles_y, tx0, ty0, tx1, ty1)
        L.memset0(self.d_counts)
        L.launch("hr_count_kernel", grid, (THREADS, 1, 1), (n, self.d_proj, *geo, self.d_counts))
        L.launch("hr_scan_kernel", (1, 1, 1), (256, 1, 1),
                 (self.tiles, self.d_counts, self.max_isects, self.d_offsets, self.d_cursor,
                  self.d_status))
        L.launch("hr_emit_kernel", grid, (THREADS, 1, 1),
                 (n, self.d_proj, *geo, self.max_isects, self.d_cursor, self.d_keys))
        rtiles = max(tx1 - tx0, 0) * max(ty1 - ty0, 0)
        if rtiles:
            L.launch("hr_sort_kernel", (rtiles, 1, 1), (TILE, TILE, 1),
                     (self.tiles_x, tx0, ty0, tx1, self.d_offsets, self.d_keys, self.d_sorted))

    def overflowed(self) -> bool:
        """After composite(): True when the frame's intersections did not fit the key buffer.
        The buffers have then grown (this allocates, once) and the caller must draw the frame
        again from bin_sort; num_isects holds the frame's count either way."""
        self.num_isects = total = int(self.h_status[0])
        if total <= self.max_isects:
            return False
        self.L.drop_graph()  # it holds the old buffers' addresses
        log.warning("tile intersections %d exceed the buffer of %d; growing it and drawing the "
                    "frame again", total, self.max_isects)
        self._alloc_keys(int(total * 1.5))
        return True

    def blend(self, rect: np.ndarray, with_depth: bool) -> None:
        """hr_blend_kernel: one 16x16 block per tile of rect."""
        tx0, ty0, tx1, ty1 = (int(v) for v in rect)
        rtiles = max(tx1 - tx0, 0) * max(ty1 - ty0, 0)
        self._with_depth = with_depth
        if rtiles:
            self.L.launch("hr_blend_kernel", (rtiles, 1, 1), (TILE, TILE, 1),
                          (self.d_proj, self.d_colors, self.camera.width, self.camera.height,
                           self.tiles_x, tx0, ty0, tx1, self.d_offsets, self.d_sorted,
                           self.d_rgb, self.d_alpha, self.d_depth if with_depth else None))

    def composite(self, bg_image: np.ndarray | None, bg_color: np.ndarray,
                  pixel_rect: tuple[int, int, int, int], out_f32: np.ndarray | None = None,
                  out_u8: np.ndarray | None = None) -> None:
        """hr_composite_kernel over pixel_rect, the frame's asynchronous copies back (outputs,
        alpha, depth, the intersection count), then the frame's one host sync."""
        L = self.L
        x0, y0, x1, y1 = pixel_rect
        L.upload(self.d_bg_color, bg_color)
        if bg_image is not None:
            L.upload(self.d_bg_image, bg_image)
        grid = ((max(x1 - x0, 0) + TILE - 1) // TILE, (max(y1 - y0, 0) + TILE - 1) // TILE, 1)
        if grid[0] and grid[1]:
            L.launch("hr_composite_kernel", grid, (TILE, TILE, 1),
                     (self.d_rgb, self.d_alpha, self.d_bg_image if bg_image is not None else None,
                      self.d_bg_color, self.camera.width, x0, y0, x1, y1,
                      self.d_out if out_f32 is not None else None,
                      self.d_out_u8 if out_u8 is not None else None))
        if out_f32 is not None:
            L.download_async(self.h_out, self.d_out)
        if out_u8 is not None:
            L.download_async(self.h_out_u8, self.d_out_u8)
        L.download_async(self.alpha, self.d_alpha)
        if self._with_depth:
            L.download_async(self.depth, self.d_depth)
        L.download_async(self.h_status, self.d_status)
        L.sync()
        # pixels outside pixel_rect keep what the caller's buffers held (as on the CPU path)
        if out_f32 is not None:
            out_f32[y0:y1, x0:x1] = self.h_out[y0:y1, x0:x1]
        if out_u8 is not None:
            out_u8[y0:y1, x0:x1] = self.h_out_u8[y0:y1, x0:x1]
