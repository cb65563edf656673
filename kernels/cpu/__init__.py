"""ctypes bindings of the native CPU rasterizer (kernels/cpu/raster_cpu.cpp).

The library is built by the package build (kernels/build_ext.py) as
``huma_rt/kernels/_raster_cpu*.so``; nothing is compiled here. Every function writes into
caller-owned numpy buffers; see the C sources for the exact contracts.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import logging
from pathlib import Path

import numpy as np

from huma_rt.errors import MissingDependencyError

log = logging.getLogger(__name__)

ABI_VERSION = 4

# One projected Gaussian (struct HrProjected in raster_math.cuh): 36 bytes, no padding.
PROJECTED_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("ca", "<f4"), ("cb", "<f4"), ("cc", "<f4"),
     ("opacity", "<f4"), ("depth", "<f4"), ("rx", "<i4"), ("ry", "<i4")]
)

_P = ctypes.c_void_p
_I = ctypes.c_int
_I64 = ctypes.c_int64

_SIGNATURES = {
    "hr_cpu_abi_version": (_I, []),
    "hr_cpu_project": (None, [_I, _P, _P, _P, _P, _P, _I, _I, _P, _P, _P, _P, _P, _P, _I]),
    "hr_cpu_bin_sort": (_I64, [_I, _P, _I, _I, _P, _P, _P, _P, _I64, _P, _I]),
    "hr_cpu_blend": (None, [_P, _I, _I, _P, _P, _P, _P, _I64, _P, _P, _P, _P, _I]),
    "hr_cpu_bin_merge": (_I64, [_I, _P, _P, _I, _I, _P, _P, _P, _P, _P, _P, _I64, _P, _P, _P, _I]),
    "hr_cpu_blend_scratch_bytes": (_I64, [_I64]),
    "hr_cpu_visible_size": (_I, []),
    "hr_cpu_record_size": (_I, []),
    "hr_cpu_composite": (None, [_P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _P, _I]),
}

# The training entry points (the backward pass); bound apart from _SIGNATURES so that a build
# of an older revision without them (bench/raster_ab.py) still opens.
_BACKWARD_SIGNATURES = {
    "hr_cpu_blend_save": (None, [_P, _I, _I, _P, _P, _P, _P, _I64, _P, _P, _P, _P, _I]),
    "hr_cpu_blend_backward": (None, [_I, _P, _P, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P, _P,
                                     _I]),
    "hr_cpu_backward_scratch_bytes": (_I64, [_I, _I]),
    "hr_cpu_project_backward": (None, [_I, _P, _P, _P, _P, _P, _I, _I, _P, _P, _P, _P, _P, _P,
                                       _P, _P, _P, _I]),
}

# Per-Gaussian screen-space gradient row of the blend backward (HR_V2D in raster_math.cuh):
# dL/d 2D mean (x, y), conic (a, b, c), activated opacity, colour (r, g, b).
V2D = 9


def library_path() -> Path | None:
    """Path of the built extension next to this package, or None when it was not built."""
    here = Path(__file__).resolve().parent.parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        cand = here / f"_raster_cpu{suffix}"
        if cand.exists():
            return cand
    return None


@functools.lru_cache(maxsize=1)
def load_backward() -> ctypes.CDLL:
    """The CPU rasterizer with its backward-pass entry points bound (training)."""
    lib = load_library()
    for name, (res, args) in _BACKWARD_SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


@functools.lru_cache(maxsize=1)
def load_library() -> ctypes.CDLL:
    """Load the CPU rasterizer once; MissingDependencyError when it was not built."""
    path = library_path()
    if path is None:
        raise MissingDependencyError(
            "the CPU rasterizer extension huma_rt/kernels/_raster_cpu*.so is not built; "
            "reinstall the package (pip install -e . or pip install huma-rt) with a C++17 "
            "compiler and OpenMP available"
        )
    return open_library(path)


def open_library(path: Path) -> ctypes.CDLL:
    """Load a build of kernels/cpu/raster_cpu.cpp at ``path`` (not cached: load_library is the
    package's own); MissingDependencyError when its ABI is not this module's."""
    lib = ctypes.CDLL(str(path))
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    if lib.hr_cpu_abi_version() != ABI_VERSION:
        raise MissingDependencyError(
            f"the CPU rasterizer at {path} has ABI {lib.hr_cpu_abi_version()}, expected "
            f"{ABI_VERSION}; rebuild the package"
        )
    log.debug("loaded CPU rasterizer %s", path)
    return lib
