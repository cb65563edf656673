"""Emulated launcher: the CUDA kernels of kernels/raster.cu compiled for the CPU under the
emulation shim (kernels/emulation/), driven by the same launch sequence as the CuPy path
(huma_rt/render/_gpu.py). "Device" buffers are numpy arrays. Tests and CI only.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import numpy as np
from huma_rt.kernels.frame_graph import FrameGraphLauncher

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).resolve().parent
ENTRY = KERNEL_DIR / "cpu" / "emulated_entry.cpp"


@functools.cache
def load_emulated(coverage: bool | None = None) -> ctypes.CDLL:
    """Build (or reuse the cached build of) raster.cu under the shim and load it."""
    from huma_rt.kernels.emulation.build import build_emulated

    lib = build_emulated([ENTRY], include_dirs=[KERNEL_DIR], name="hr_raster", coverage=coverage)
    log.debug("emulated raster kernels: %s", lib)
    return ctypes.CDLL(str(lib))


def _arg(a):
    if a is None:
        return ctypes.c_void_p(None)
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, (int, np.integer)):
        return ctypes.c_int(int(a))
    raise TypeError(f"unsupported kernel argument {type(a).__name__}")


class EmulatedLauncher(FrameGraphLauncher):
    """Same interface as kernels.cupy_backend.CupyLauncher, on the CPU.

    Counts what would cost a GPU frame its asynchrony: ``syncs`` (host waits on the stream)
    and ``reads`` (device -> host copies), so tests can check that a frame's launches do
    neither before its one sync at the end. A captured frame graph is the list of its device
    operations, run in order when the graph is launched, as a CUDA graph would."""

    name = "emulated"

    def __init__(self) -> None:
        super().__init__()
        self.lib = load_emulated()
        self.syncs = 0
        self.reads = 0
        self._capturing: list | None = None

    def use_stream(self, stream) -> None:
        """Streams do not exist here: launches run at once, in order."""

    def zeros(self, shape, dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def host_zeros(self, shape, dtype) -> np.ndarray:
        """Host memory the device copies into asynchronously (pinned on a GPU)."""
        return np.zeros(shape, dtype=dtype)

    def download_async(self, dst: np.ndarray, src: np.ndarray) -> None:
        self.reads += 1
        super().download_async(dst, src)

    # -- the device side of FrameGraphLauncher -------------------------------------------------
    def _address(self, a) -> int:
        return a.ctypes.data

    def _run_or_record(self, fn, *args) -> None:
        if self._capturing is not None:
            self._capturing.append((fn, args))
        else:
            fn(*args)

    def _dev_upload(self, dst, stage) -> None:
        self._run_or_record(np.copyto, dst, stage)

    def _dev_memset0(self, buf) -> None:
        self._run_or_record(buf.fill, 0)

    def _dev_download(self, dst, src) -> None:
        self._run_or_record(np.copyto, dst, src)

    def _dev_launch(self, name, grid, block, args) -> None:
        for a in args:
            if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
                raise ValueError(f"{name}: kernel buffers must be contiguous")
        fn = getattr(self.lib, f"hr_emu_{name}")
        dims = [ctypes.c_uint(int(v)) for v in (*grid, *block)]
        self._run_or_record(fn, *dims, *(_arg(a) for a in args))

    def _begin_capture(self) -> None:
        self._capturing = []

    def _end_capture(self) -> list:
        graph, self._capturing = self._capturing, None
        return graph

    def _launch_graph(self, graph: list) -> None:
        for fn, args in graph:
            fn(*args)

    def _synchronize(self) -> None:
        self.syncs += 1
