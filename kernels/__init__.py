"""Gaussian rasterizer kernels: host-device math, CUDA kernels, the CPU backend built from them."""

from __future__ import annotations

from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent


def cpu_backend_available() -> bool:
    """True when the native CPU rasterizer (built at install time) can be loaded."""
    from huma_rt.kernels.cpu import load_library

    try:
        load_library()
    except Exception:  # any load failure means "not available"; load_library() says why
        return False
    return True
