"""Probes and lazy imports for optional dependencies.

Nothing here imports a GPU library at module import time; each probe imports at most once.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
from types import ModuleType

from huma_rt.errors import DeviceError, MissingDependencyError

log = logging.getLogger(__name__)

# module name -> the pip extra that provides it
EXTRAS = {
    "cupy": "gpu",
    "tensorrt": "trt",
    "sherpa_onnx": "speech",
    "tritonclient": "triton",
    "torch": "export",
    "onnx": "export",
    "av": "media",
    "nvtx": "gpu",
    "gsplat": "dev",
}


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, purpose: str) -> ModuleType:
    """Import optional module ``name`` or raise MissingDependencyError naming its extra."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = EXTRAS.get(name.split(".")[0], "all")
        raise MissingDependencyError(
            f"{purpose} needs the Python module '{name}', which is not importable ({exc}); "
            f"install it with: pip install 'huma-rt[{extra}]'"
        ) from exc


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of CUDA devices CuPy can see; 0 when CuPy or a driver is missing."""
    if not has_module("cupy"):
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, no device: CuPy raises its own runtime errors
        log.debug("no CUDA device: %s", exc)
        return 0


def has_cuda() -> bool:
    """True when CuPy is importable and at least one CUDA device is usable."""
    return cuda_device_count() > 0


def require_cuda(purpose: str) -> ModuleType:
    """Return the cupy module, or raise a clear error when CuPy or a CUDA GPU is missing."""
    cupy = require("cupy", purpose)
    if not has_cuda():
        raise DeviceError(
            f"{purpose} needs a CUDA GPU, but CuPy found no usable device "
            "(no NVIDIA driver or GPU on this machine); use the CPU backend instead"
        )
    return cupy
