"""CuPy launcher of the rasterizer's CUDA kernels (kernels/raster.cu).

The module is compiled once by NVRTC when the launcher is built (at preload), and CuPy keeps
the binary in its on-disk kernel cache, so later processes load it without compiling. Every
launch goes to the launcher's stream and writes into buffers the caller allocated up front,
so a frame's launches can be captured into a CUDA graph. The launch *sequence* lives in
huma_rt/render/_gpu.py and is shared with the emulated launcher (kernels/emulated.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from huma_rt.kernels.frame_graph import FrameGraphLauncher

log = logging.getLogger(__name__)

KERNEL_DIR = Path(__file__).resolve().parent
SOURCE = KERNEL_DIR / "raster.cu"
KERNEL_NAMES = ("hr_project_kernel", "hr_count_kernel", "hr_scan_kernel", "hr_emit_kernel",
                "hr_sort_kernel", "hr_blend_kernel", "hr_composite_kernel")
# training (train/raster_device.py): the blend with save_for_backward and the backward pass
TRAIN_KERNEL_NAMES = ("hr_blend_save_kernel", "hr_blend_backward_kernel",
                      "hr_project_backward_kernel")


def nvrtc_options() -> tuple[str, ...]:
    """Compile options shared by the CuPy module and the NVRTC compile test."""
    return ("-std=c++17", f"-I{KERNEL_DIR}")


def compile_ptx(arch: str = "compute_75") -> str:
    """Compile raster.cu to PTX with NVRTC (needs no GPU); raises on any compile error."""
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(SOURCE.read_text(), SOURCE.name, [], [])
    try:
        nvrtc.compileProgram(prog, [*nvrtc_options(), f"--gpu-architecture={arch}"])
    except nvrtc.NVRTCError as exc:
        raise RuntimeError(f"NVRTC failed on {SOURCE}: {nvrtc.getProgramLog(prog)}") from exc
    return nvrtc.getPTX(prog).decode() if isinstance(nvrtc.getPTX(prog), bytes) else nvrtc.getPTX(prog)


class CupyLauncher(FrameGraphLauncher):
    """Device buffers and kernel launches on one CUDA stream (CuPy); a frame captured as a
    CUDA graph (stream capture) and replayed with one graph launch."""

    name = "cupy"

    def __init__(self, stream=None) -> None:
        import cupy

        super().__init__()
        self.cp = cupy
        self.stream = stream if stream is not None else cupy.cuda.Stream(non_blocking=True)
        self.module = cupy.RawModule(code=SOURCE.read_text(), options=nvrtc_options(),
                                     name_expressions=None)
        self.kernels = {name: self.module.get_function(name)
                        for name in (*KERNEL_NAMES, *TRAIN_KERNEL_NAMES)}
        log.debug("compiled %s (%d kernels)", SOURCE.name, len(self.kernels))

    def use_stream(self, stream) -> None:
        """Launch and copy on ``stream`` from now on (a session's stream: its networks and its
        frames' kernels then run in order on one stream). A graph captured on another stream
        is launched on this one."""
        self.stream = stream

    def zeros(self, shape, dtype):
        with self.stream:
            return self.cp.zeros(shape, dtype=dtype)

    def host_zeros(self, shape, dtype) -> np.ndarray:
        """Pinned host memory: copies to and from it run asynchronously on the stream."""
        import cupyx

        return cupyx.zeros_pinned(shape, dtype=dtype)

    # -- the device side of FrameGraphLauncher -------------------------------------------------
    def _address(self, a) -> int:
        return a.data.ptr

    def _dev_upload(self, dst, stage) -> None:
        dst.set(stage, stream=self.stream)

    def _dev_memset0(self, buf) -> None:
        with self.stream:
            buf.fill(0)

    def _dev_download(self, dst, src) -> None:
        src.get(stream=self.stream, out=dst)

    def _dev_launch(self, name, grid, block, args) -> None:
        conv = tuple(np.uint64(0) if a is None else (np.int32(a) if isinstance(a, int) else a)
                     for a in args)
        self.kernels[name](grid, block, conv, stream=self.stream)

    def _begin_capture(self) -> None:
        self.stream.begin_capture()

    def _end_capture(self):
        return self.stream.end_capture()

    def _launch_graph(self, graph) -> None:
        graph.launch(stream=self.stream)

    def _synchronize(self) -> None:
        self.stream.synchronize()
