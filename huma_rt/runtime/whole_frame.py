"""Adapter: huma_rt.render.Renderer (whole-image) behind the FrameRenderer ``render`` contract.

Used when huma_rt.render has no FrameRenderer (incremental, dirty-tile) yet: every frame is
re-rendered in full. The Gaussians are reordered once so the dynamic ones form one contiguous
tail; a frame copies the posed dynamic rows into that tail (no fancy indexing), renders into a
float buffer and converts to uint8 in place. Order does not change the image: the rasterizer
sorts by depth.
"""

from __future__ import annotations

import numpy as np

from huma_rt.gaussians import Camera, Gaussians


class WholeFrameRenderer:
    """FrameRenderer-compatible: ``render(means [Nd,3], quats [Nd,4], log_scales [Nd,3], out [H,W,3] u8)``.

    threads: the CPU backend's OpenMP threads (0: its default). One per session is best when
    sessions run side by side on few cores.
    """

    def __init__(self, camera: Camera, gaussians: Gaussians, dynamic: np.ndarray, *, background=None,
                 backend: str = "cpu", threads: int = 0) -> None:  # fmt: skip
        from huma_rt.render import Renderer

        order = np.concatenate([np.flatnonzero(~dynamic), np.flatnonzero(dynamic)])
        self._g = gaussians.subset(order)  # owned, contiguous copies
        nd = int(np.count_nonzero(dynamic))
        start = gaussians.count - nd
        self._tails = (self._g.means[start:], self._g.quats[start:], self._g.log_scales[start:])
        self._renderer = Renderer(camera, backend=backend, capacity=gaussians.count, threads=threads)
        self._background = background
        self._rgb = np.zeros((camera.height, camera.width, 3), np.float32)
        self._size = (0, 0, camera.width, camera.height)
        self._scale, self._half = np.float32(255.0), np.float32(0.5)
        self._lo, self._hi = np.float32(0.0), np.float32(1.0)
        self.stage_times: dict[str, float] = {}

    def render(self, means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray, out: np.ndarray):
        for tail, posed in zip(self._tails, (means, quats, log_scales)):  # noqa: B905 (hot path)
            np.copyto(tail, posed)
        self._renderer.render(self._g, background=self._background, out=self._rgb)
        rgb = self._rgb  # uint8 = floor(clip(v, 0, 1) * 255 + 0.5), in place
        np.clip(rgb, self._lo, self._hi, out=rgb)
        np.multiply(rgb, self._scale, out=rgb)
        np.add(rgb, self._half, out=rgb)
        np.floor(rgb, out=rgb)
        np.copyto(out, rgb, casting="unsafe")
        return self._size
