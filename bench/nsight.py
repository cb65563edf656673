"""Run the Nsight Systems / Nsight Compute recipes of bench/nsight.md when the tools exist.

Without nsys/ncu or without a CUDA GPU it says so plainly and exits 2, rather than producing
a profile of nothing.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from huma_rt._optional import has_cuda

WORKLOAD = [sys.executable, "-m", "huma_rt.bench.workload", "--device", "cuda"]


def nsys_command(out: Path, frames: int) -> list[str]:
    """Timeline: CUDA API + kernels, NVTX stage ranges, OS runtime; CUDA graph nodes traced."""
    return [
        "nsys", "profile", "--trace=cuda,nvtx,osrt", "--cuda-graph-trace=node",
        "--sample=none", "--force-overwrite=true", "-o", str(out / "huma-frames"),
        *WORKLOAD, "--frames", str(frames),
    ]


def ncu_command(out: Path, frames: int) -> list[str]:
    """Per-kernel metrics for the rasterizer kernels, inside the huma/ NVTX ranges only."""
    return [
        "ncu", "--nvtx", "--nvtx-include", "huma/", "--set", "full",
        "--kernel-name", "regex:hr_", "--launch-skip", "50", "--launch-count", "40",
        "--force-overwrite", "-o", str(out / "huma-kernels"),
        *WORKLOAD, "--frames", str(frames),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=["nsys", "ncu"])
    parser.add_argument("-o", "--out", type=Path, default=Path("bench-results/nsight"))
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--print-only", action="store_true", help="print the command, run nothing")
    args = parser.parse_args(argv)
    cmd = (nsys_command if args.tool == "nsys" else ncu_command)(args.out, args.frames)
    print(shlex.join(cmd))
    if args.print_only:
        return 0
    if shutil.which(args.tool) is None:
        print(f"{args.tool} is not installed on this machine (it ships with the CUDA toolkit / "
              "Nsight packages); run the command above on a GPU machine", file=sys.stderr)
        return 2
    if not has_cuda():
        print("no CUDA GPU is usable here (CuPy sees no device); a profile needs one", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
