"""The native CPU rasterizer extension, built by setup.py at install time (never at first use).

The extension is a plain shared library of C functions (kernels/cpu/raster_cpu.cpp, compiled
from the same raster_math.cuh as the CUDA kernels) that huma_rt.kernels.cpu loads with ctypes:
no Python C-API code to maintain, one binary for every Python version, and ctypes drops the GIL
for the duration of each call.
"""

from __future__ import annotations

from pathlib import Path

EXTENSION_NAME = "huma_rt.kernels._raster_cpu"


def ext_modules(root: Path) -> list:
    """setuptools Extensions of the kernels folder; ``root`` is the folder holding setup.py."""
    from setuptools import Extension

    src = Path("kernels") / "cpu" / "raster_cpu.cpp"
    if not (Path(root) / src).exists():
        return []
    return [
        Extension(
            EXTENSION_NAME,
            sources=[str(src)],
            include_dirs=[str(Path("kernels"))],
            depends=[str(Path("kernels") / "raster_math.cuh")],
            language="c++",
            # no errno from sqrtf (lets it vectorise); no FMA contraction, so the AVX2 clone
            # rounds like the emulated kernels (tests compare them to 2e-6)
            extra_compile_args=["-std=c++17", "-O3", "-fno-math-errno", "-ffp-contract=off",
                                "-fopenmp", "-fvisibility=hidden"],
            extra_link_args=["-fopenmp"],
        )
    ]


def cpu_library_command(root: Path, out: Path, defines: tuple[str, ...] = ()) -> list[str]:
    """The g++ command that builds the extension's sources under ``root`` (a checkout, or a copy
    of a revision's kernels/) into a plain shared library at ``out`` with the extension's own
    flags (plus ``-D`` defines): for tests and benchmarks that load a build other than the
    installed one."""
    (ext,) = ext_modules(root)
    return ["g++", *ext.extra_compile_args, *(f"-D{d}" for d in defines), "-shared", "-fPIC",
            *[f"-I{Path(root) / d}" for d in ext.include_dirs], str(Path(root) / ext.sources[0]),
            "-o", str(out), *ext.extra_link_args]
