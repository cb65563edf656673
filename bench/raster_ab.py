"""Rasterizer A/B: the CPU backend of two revisions on the head scene, frame by frame in turn.

A shared host's load comes and goes in bursts: the same build measured 12.4 ms and 15.5 ms per
head frame minutes apart on the reference VM. An absolute frame time therefore says as much
about the host as about a change. This builds the CPU rasterizer of a git revision (its
kernels/ sources, compiled with the package's own flags) into a temporary folder, loads it next
to the installed build (or a second revision) in one process, and alternates their frames on
the same scene: a burst of load hits both sides, and the ratio of their medians is the
change's own effect.

    python -m huma_rt.bench.raster_ab --base 3a867e8 [--head REV] [--frames 300] [-o DIR]

Each frame is what Renderer.render does on the CPU: project, bin + sort, blend, composite into a
float image. Only revisions whose library has this package's ABI load (ABI 4: 2026-12-07 on; ABI 3 before).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import markdown_table, stats_ms, write_result
from huma_rt.bench.raster import HEAD_GAUSSIANS, HEAD_SIZE, head_camera, head_scene
from huma_rt.kernels.cpu import library_path, open_library

from huma_rt.errors import InputError, MissingDependencyError
from huma_rt.render._cpu import CpuStages

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent  # the checkout (bench/ is huma_rt.bench)
SOURCES = ("kernels/raster_math.cuh", "kernels/cpu/raster_cpu.cpp")


def build_revision(rev: str, out_dir: Path) -> Path:
    """The CPU rasterizer of git revision ``rev``, built into ``out_dir``; its path."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        raise MissingDependencyError(f"building revision {rev!r} needs git and the checkout at "
                                     f"{REPO}; neither was found")
    if shutil.which("g++") is None:
        raise MissingDependencyError("building the CPU rasterizer needs g++ on PATH")
    from huma_rt.kernels.build_ext import cpu_library_command

    src = out_dir / "src"
    for name in SOURCES:
        shown = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{name}"],
                               capture_output=True)
        if shown.returncode != 0:
            raise InputError(f"revision {rev!r} has no {name}: "
                             f"{shown.stderr.decode(errors='replace').strip()}")
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(shown.stdout)
    lib = out_dir / "raster_cpu.so"
    built = subprocess.run(cpu_library_command(src, lib), capture_output=True, text=True)
    if built.returncode != 0:
        raise InputError(f"revision {rev!r} does not build: {built.stderr[-2000:]}")
    return lib


def _frame(stages: CpuStages, g, out: np.ndarray, bg: np.ndarray) -> None:
    cam = stages.camera
    stages.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
    stages.bin_sort(g.count, stages.full_rect)
    stages.blend(stages.full_rect, False)
    stages.composite(None, bg, (0, 0, cam.width, cam.height), out_f32=out)


def compare(libraries: dict[str, Path], frames: int, *, gaussians: int = HEAD_GAUSSIANS,
            size: int = HEAD_SIZE, warmup: int = 10) -> list[dict]:
    """Frame times of each library (name -> path) on the head scene, frames interleaved; the
    second entry's row carries the ratio of its p50 to the first's."""
    if frames < 1:
        raise InputError(f"frames must be >= 1; got {frames}")
    g, cam = head_scene(gaussians), head_camera(size)
    bg = np.zeros(3, np.float32)
    sides = []
    for name, path in libraries.items():
        stages = CpuStages(cam, g.count, library=open_library(path))
        out = np.empty((cam.height, cam.width, 3), np.float32)
        sides.append((name, path, stages, out))
    secs: dict[str, list[float]] = {name: [] for name, *_ in sides}
    for k in range(warmup + frames):
        for name, _, stages, out in sides:
            t = time.perf_counter()
            _frame(stages, g, out, bg)
            if k >= warmup:
                secs[name].append(time.perf_counter() - t)
    rows = [{"side": name, "library": str(path), "gaussians": gaussians,
             "size": f"{size}x{size}", **stats_ms(secs[name])} for name, path, *_ in sides]
    if len(sides) == 2:  # the same scene: the images must agree (float rounding aside)
        rows[1]["p50_ratio"] = rows[1]["p50_ms"] / rows[0]["p50_ms"]
        rows[1]["max_abs_diff"] = float(np.abs(sides[0][3] - sides[1][3]).max())
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m huma_rt.bench.raster_ab",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision of the base side")
    parser.add_argument("--head", help="git revision of the other side (default: the installed "
                                       "build, i.e. the working tree as last built)")
    parser.add_argument("--frames", type=int, default=300, help="timed frames per side")
    parser.add_argument("-o", "--out", type=Path, help="write raster_ab.json / .md here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="huma-raster-ab-") as tmp:
        libs = {f"base {args.base}": build_revision(args.base, Path(tmp) / "base")}
        if args.head:
            libs[f"head {args.head}"] = build_revision(args.head, Path(tmp) / "head")
        else:
            installed = library_path()
            if installed is None:
                raise MissingDependencyError("the CPU rasterizer is not built; pip install -e .")
            libs["installed build"] = installed
        rows = compare(libs, args.frames)
    if args.out:
        write_result(args.out, "raster_ab", rows, {"base": args.base, "head": args.head,
                                                   "frames": args.frames})
    sys.stdout.write(markdown_table(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
