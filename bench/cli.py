"""``huma-rt bench`` / ``python -m bench``: run the benchmark suite."""

from __future__ import annotations

import argparse
from pathlib import Path

from huma_rt.bench import suite


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scenarios = suite.SCENARIOS  # read at call time: the registry is the suite module's
    parser.add_argument(
        "--quick", action="store_true",
        help="every scenario family at its end points with few repeats (under a minute on a 2-core CPU)",
    )
    parser.add_argument("-o", "--out", type=Path, default=Path("bench-results"), help="results folder")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(scenarios), metavar="SCENARIO",
        help=f"run only these scenarios (of: {', '.join(scenarios)})",
    )
    parser.add_argument("--skip", nargs="+", choices=sorted(scenarios), default=[], metavar="SCENARIO")
    parser.add_argument("--plots", action="store_true", help="draw scaling-curve PNGs (matplotlib)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu",
        help="passed to scenarios that take a device; cuda times with CUDA events (never host clocks)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite; 0 unless a scenario failed (a skipped scenario is not a failure)."""
    names = [n for n in (args.only or suite.SCENARIOS) if n not in args.skip]
    summary = suite.run_suite(names, quick=args.quick, out_dir=args.out, device=args.device,
                              progress=lambda line: print(line, flush=True))
    if args.plots:
        from huma_rt.bench.plots import draw_all

        for path in draw_all(args.out):
            print(f"plot: {path}")
    print((args.out / "summary.md").read_text())
    print(f"suite: {summary['total_seconds']:.1f} s wall, {summary['cpu_seconds']:.1f} s CPU, "
          f"1-minute load {summary['load_1min'][0]} -> {summary['load_1min'][1]}; results in {args.out}")
    bad = {n: v for n, v in summary["scenarios"].items() if v["status"] != "ok"}
    for name, v in bad.items():
        print(f"{v['status']}: {name}: {v['reason']}")
    return 1 if any(v["status"] == "failed" for v in bad.values()) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
