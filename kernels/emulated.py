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


class EmulatedLauncher:
    """Same interface as kernels.cupy_backend.CupyLauncher, on the CPU.

    Counts what would cost a GPU frame its asynchrony: ``syncs`` (host waits on the stream)
    and ``reads`` (device -> host copies), so tests can check that a frame's launches do
    neither before its one sync at the end."""

    name = "emulated"

    def __init__(self) -> None:
        self.lib = load_emulated()
        self.syncs = 0
        self.reads = 0

    def use_stream(self, stream) -> None:
        """Streams do not exist here: launches run at once, in order."""

    def zeros(self, shape, dtype) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def host_zeros(self, shape, dtype) -> np.ndarray:
        """Host memory the device copies into asynchronously (pinned on a GPU)."""
        return np.zeros(shape, dtype=dtype)

    def upload(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, np.asarray(src).reshape(dst.shape))

    def download_async(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Queue a device -> host copy (here done at once); valid after ``sync()``."""
        self.reads += 1
        np.copyto(dst, src)

    def sync(self) -> None:
        self.syncs += 1

    def download(self, dst: np.ndarray, src: np.ndarray) -> None:
        self.download_async(dst, src)
        self.sync()

    def memset0(self, buf: np.ndarray) -> None:
        buf.fill(0)

    def read_int(self, buf: np.ndarray) -> int:
        host = np.empty(1, dtype=np.int32)
        self.download(host, buf[:1])
        return int(host[0])

    def launch(self, name: str, grid: tuple, block: tuple, args: tuple) -> None:
        for a in args:
            if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
                raise ValueError(f"{name}: kernel buffers must be contiguous")
        fn = getattr(self.lib, f"hr_emu_{name}")
        dims = [ctypes.c_uint(int(v)) for v in (*grid, *block)]
        fn(*dims, *(_arg(a) for a in args))
