"""A frame's device work, issued eagerly or recorded once as a graph and replayed.

Base of the two launchers (kernels/cupy_backend.CupyLauncher, kernels/emulated.EmulatedLauncher).
Every device operation of a frame (upload, launch, memset, download) goes through ``_device``;
host work (refreshing an upload's staging buffer with this frame's inputs, copying results out
after the sync) always runs. A frame is one ``begin_frame()`` ... ``sync()``:

- eager: each device operation is issued as it comes;
- capture: the operations are recorded (on a GPU: CUDA stream capture into a CUDA graph), then
  launched as one graph at ``sync()``;
- replay: the frame's host code runs as usual, its device operations are *not* issued (the
  graph holds them) and the graph is launched at ``sync()``. Each operation is checked against
  the recorded sequence (kind, kernel, launch geometry, scalar arguments, buffer addresses), so
  a frame that would differ from the captured one fails loudly instead of replaying stale work.

Inputs reach the device through staging buffers at fixed host addresses, so a replayed copy
reads this frame's values. A launcher whose buffers changed (they grew) must ``drop_graph()``.
"""

from __future__ import annotations

import numpy as np

from huma_rt.errors import BackendError


class FrameGraphLauncher:
    """Subclasses implement ``host_zeros`` and the device side: ``_dev_upload``,
    ``_dev_launch``, ``_dev_memset0``, ``_dev_download``, ``_begin_capture``, ``_end_capture``,
    ``_launch_graph``, ``_synchronize`` and ``_address``."""

    def __init__(self) -> None:
        self._staging: dict = {}
        self.mode = "eager"
        self.graph = None
        self.graph_launches = 0
        self._recorded: list[tuple] = []
        self._pos = 0

    # -- frames ------------------------------------------------------------------------------
    def begin_frame(self, capture: bool) -> None:
        """Start a frame: replay the graph when there is one, else record one if ``capture``."""
        if self.graph is not None:
            self.mode, self._pos = "replay", 0
        elif capture:
            self.mode, self._recorded = "capture", []
            self._begin_capture()

    def sync(self) -> None:
        """End of the frame's device work: launch the graph (capture/replay), wait for it."""
        if self.mode == "capture":
            self.graph = self._end_capture()
        elif self.mode == "replay" and self._pos != len(self._recorded):
            self.mode = "eager"
            raise BackendError(f"frame graph replay issued {self._pos} of its "
                               f"{len(self._recorded)} operations; the frame changed shape")
        if self.mode in ("capture", "replay"):
            self._launch_graph(self.graph)
            self.graph_launches += 1
        self.mode = "eager"
        self._synchronize()

    def drop_graph(self) -> None:
        """Forget the graph (its buffers were replaced); the next capture records a new one."""
        self.graph, self._recorded = None, []

    # -- device operations ---------------------------------------------------------------------
    def _stage(self, dst):
        """dst's staging buffer (pinned on a GPU), allocated on its first use: the first frame
        is eager, so never while a graph is being captured. Each frame ends with a sync, so the
        next frame's values never overwrite a buffer a copy still reads."""
        key = (self._address(dst), dst.nbytes)
        stage = self._staging.get(key)
        if stage is None:
            stage = self._staging[key] = self.host_zeros(dst.shape, dst.dtype)
        return stage

    def upload(self, dst, src) -> None:
        """Host -> device: this frame's values into dst's staging buffer, then the copy."""
        stage = self._stage(dst)
        np.copyto(stage, np.asarray(src).reshape(stage.shape))
        self._device(("upload", self._address(dst)), self._dev_upload, dst, stage)

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple) -> None:
        key = ("launch", name, tuple(grid), tuple(block),
               tuple(self._address(a) if a is not None and not isinstance(a, int) else a
                     for a in args))
        self._device(key, self._dev_launch, name, grid, block, args)

    def memset0(self, buf) -> None:
        self._device(("memset0", self._address(buf)), self._dev_memset0, buf)

    def download_async(self, dst: np.ndarray, src) -> None:
        """Device -> host (dst pinned on a GPU); valid after ``sync()``."""
        self._device(("download", self._address(src), dst.ctypes.data), self._dev_download, dst,
                     src)

    def download(self, dst: np.ndarray, src) -> None:
        """A blocking copy outside any frame graph (preload, tests)."""
        self.download_async(dst, src)
        self.sync()

    def read_int(self, buf) -> int:
        host = np.empty(1, dtype=np.int32)
        self.download(host, buf[:1])
        return int(host[0])

    def _device(self, key: tuple, issue, *args) -> None:
        if self.mode == "replay":
            if self._pos >= len(self._recorded) or self._recorded[self._pos] != key:
                self.mode = "eager"
                raise BackendError(f"frame graph replay diverged at operation {self._pos}: "
                                   f"{key[:2]}; the frame changed shape since it was captured")
            self._pos += 1
            return
        if self.mode == "capture":
            self._recorded.append(key)
        issue(*args)
