"""``huma-rt info``: what this installation can do on this machine."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import shutil
import subprocess
import sys

from huma_rt._optional import cuda_device_count, has_module

NVCC = "/usr/local/cuda/bin/nvcc"


def _version(module: str) -> str | None:
    if not has_module(module):
        return None
    try:
        return str(getattr(importlib.import_module(module), "__version__", "installed"))
    except Exception as exc:  # an installed but broken module is worth reporting, not raising
        return f"broken ({type(exc).__name__}: {exc})"


def _nvcc_version() -> str | None:
    nvcc = shutil.which("nvcc") or (NVCC if shutil.which(NVCC) else None)
    if nvcc is None:
        return None
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    lines = [ln for ln in out.splitlines() if "release" in ln]
    return lines[0].strip() if lines else out.strip()


def collect() -> dict:
    """A dict describing the Python, libraries, providers and devices available."""
    import numpy

    info: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "onnxruntime": _version("onnxruntime"),
    }
    if info["onnxruntime"] and not info["onnxruntime"].startswith("broken"):
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    for mod in ("cupy", "tensorrt", "sherpa_onnx", "tritonclient", "torch", "onnx", "av", "nvtx"):
        info[mod] = _version(mod)
    info["cuda_devices"] = cuda_device_count()
    info["nvcc"] = _nvcc_version()
    try:
        from huma_rt.kernels import cpu_backend_available  # built at install time

        info["cpu_rasterizer"] = cpu_backend_available()
    except ImportError:
        info["cpu_rasterizer"] = False
    return info


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        shown = "not installed" if value is None else value
        if isinstance(value, list):
            shown = ", ".join(value)
        print(f"{key:<{width}}  {shown}")
    return 0
