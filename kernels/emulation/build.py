"""Builds CUDA kernel sources for the CPU under the emulation shim (tests only, never production).

Each ``.cu`` file is compiled by g++ as C++ with ``cuda_shim.h`` force-included, so the kernels'
own indexing, shared memory and barriers run unmodified; host-entry files (``.cpp``) that call
``emu_launch(kernel, grid, block, args...)`` are compiled the same way. The shared library is
cached by a hash of every input (sources, headers beside them, shim, flags, compiler), so a
test session compiles once. With coverage, objects carry gcov instrumentation and the ``.gcda``
counts land in the build folder when the loading process exits; ``coverage_report`` reads them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from huma_rt.errors import BackendError, InputError, MissingDependencyError

log = logging.getLogger(__name__)

SHIM = Path(__file__).resolve().parent / "cuda_shim.h"
COVERAGE_ENV = "HUMA_EMU_COVERAGE"
BUILD_DIR_ENV = "HUMA_EMU_BUILD_DIR"
_BASE_FLAGS = ["-std=c++17", "-fPIC", "-fopenmp", "-fno-strict-aliasing", "-Wall",
               "-Wno-unused-function", "-Wno-unknown-pragmas", "-Wno-sign-compare"]


def default_build_dir() -> Path:
    """Where emulated builds are cached: $HUMA_EMU_BUILD_DIR or ~/.cache/huma_rt/emulated."""
    env = os.environ.get(BUILD_DIR_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huma_rt" / "emulated"


def coverage_requested() -> bool:
    """True when $HUMA_EMU_COVERAGE is set to a non-empty value other than 0."""
    return os.environ.get(COVERAGE_ENV, "") not in ("", "0")


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        raise MissingDependencyError("building the emulated CUDA kernels needs g++ on PATH "
                                     "(apt-get install g++); none was found")
    return cxx


def _header_files(dirs: list[Path]) -> list[Path]:
    found: set[Path] = set()
    for d in dirs:
        for pattern in ("*.cuh", "*.h", "*.hpp"):
            found.update(p.resolve() for p in d.glob(pattern))
    return sorted(found)


def _cache_key(cxx: str, sources: list[Path], headers: list[Path], flags: list[str]) -> str:
    h = hashlib.sha256()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h.update(version.encode())
    h.update(" ".join(flags).encode())
    for p in [SHIM, *sources, *headers]:
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def build_emulated(sources: list[Path], out_dir: Path | None = None, *, coverage: bool | None = None,
                   include_dirs: list[Path] | tuple = (), name: str = "emulated",
                   opt: str = "-O2") -> Path:
    """Compile ``sources`` (.cu kernels and .cpp host entries) into a shared library.

    sources: paths; ``.cu`` files are compiled as C++ (-x c++) with cuda_shim.h included first.
    out_dir: cache folder (default ``default_build_dir()``); the library lands in
    ``out_dir/<name>-<hash>/lib<name>.so``. coverage: gcov instrumentation at -O0 (default: the
    $HUMA_EMU_COVERAGE environment variable). include_dirs: extra -I folders (each source's own
    folder is always on the path). Returns the path of the built (or cached) library.
    Raises InputError for missing sources, BackendError with the compiler output on failure.
    """
    srcs = [Path(s).resolve() for s in sources]
    if not srcs:
        raise InputError("build_emulated needs at least one source file; got none")
    for s in srcs:
        if not s.is_file():
            raise InputError(f"emulated kernel source {s} does not exist")
        if s.suffix not in (".cu", ".cpp", ".cc"):
            raise InputError(f"emulated kernel sources must be .cu or .cpp files; got {s.name}")
    if coverage is None:
        coverage = coverage_requested()
    incs = [Path(d).resolve() for d in include_dirs]
    inc_dirs = list(dict.fromkeys([SHIM.parent, *incs, *(s.parent for s in srcs)]))
    flags = [*_BASE_FLAGS, *(["-O0", "-g", "--coverage"] if coverage else [opt, "-g"])]
    flags += [f"-I{d}" for d in inc_dirs]
    cxx = _compiler()
    key = _cache_key(cxx, srcs, _header_files(inc_dirs), flags)
    root = Path(out_dir) if out_dir is not None else default_build_dir()
    build = root / f"{name}{'-cov' if coverage else ''}-{key}"
    lib = build / f"lib{name}.so"
    if lib.exists():
        return lib
    build.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(build / ".lock")):
        if lib.exists():
            return lib
        objs = []
        for s in srcs:
            obj = build / f"{s.stem}{s.suffix.replace('.', '_')}.o"
            cmd = [cxx, *flags, "-x", "c++", "-include", str(SHIM), "-c", str(s), "-o", str(obj)]
            _run(cmd, f"compiling {s.name} under the CUDA emulation shim")
            objs.append(str(obj))
        tmp = build / f".lib{name}.so.tmp"
        _run([cxx, "-shared", "-fopenmp", *(["--coverage"] if coverage else []), *objs, "-o",
              str(tmp)], f"linking lib{name}.so")
        tmp.replace(lib)  # atomic: a concurrent reader never sees a half-written library
        log.info("built emulated kernels %s (coverage=%s)", lib, coverage)
    return lib


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BackendError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    if proc.stderr.strip():
        log.warning("%s: compiler warnings:\n%s", what, proc.stderr[-4000:])
