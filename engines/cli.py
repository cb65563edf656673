"""``huma-rt build DIR`` / ``huma-rt build --check DIR``: FP16 TensorRT engines from an export folder.

--check runs everything that needs neither TensorRT nor a GPU (ONNX checker, TensorRT op set,
FP16 precision rule, profile sanity) and prints the build plan; the build runs the same checks
first, then builds each engine (or takes it from the engine cache) and writes ``<model>.<precision>.plan``
plus its sidecar ``.plan.json`` into the output folder (default: DIR itself, beside the ONNX).
"""

from __future__ import annotations

import argparse
import sys
import time

from huma_rt.errors import FormatError

from .plan import DEFAULT_MODELS, MODELS, BuildFlags, make_plan
from .profiles import ProfileOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="folder written by 'huma-rt export -o DIR'")
    parser.add_argument("--check", action="store_true", help="check the models and print the build plan; needs no GPU")
    parser.add_argument("-o", "--output", metavar="OUT", default=None, help="where plans go (default: DIR)")
    parser.add_argument(
        "--models", default=",".join(DEFAULT_MODELS),
        help=f"comma-separated subset of {','.join(MODELS)} (default: {','.join(DEFAULT_MODELS)}, the per-frame nets)",
    )  # fmt: skip
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="which exported graph to build (default fp16)")
    parser.add_argument("--gaussians", type=int, default=ProfileOptions.gaussians, help="the avatar's Gaussian count N: opt and max of axis N (default %(default)s)")
    parser.add_argument("--min-gaussians", type=int, default=ProfileOptions.min_gaussians, help="min of axis N (default %(default)s)")
    parser.add_argument("--max-batch", type=int, default=ProfileOptions.max_batch, help="max sessions per run, axis B (default %(default)s)")
    parser.add_argument("--max-frames", type=int, default=ProfileOptions.max_frames, help="max codes per encoder run, axis T (default %(default)s)")
    parser.add_argument(
        "--profile", action="append", default=[], metavar="[MODEL.]INPUT:MIN,OPT,MAX",
        help="override one input's profile, shapes like 1x48 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--opt-level", type=int, default=BuildFlags.opt_level, help="builder optimization level 0..5 (default %(default)s)")
    parser.add_argument("--workspace-mib", type=int, default=BuildFlags.workspace_mib, help="workspace memory limit in MiB (default %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="engine + timing cache folder (default ~/.cache/huma-rt/engines)")
    parser.add_argument("--no-cache", action="store_true", help="always build; do not read or fill the engine cache")
    parser.add_argument("--device-id", type=int, default=0, help="CUDA device to build for (default 0)")


class _Progress:
    """Prints build phases to stderr: one line per phase start/finish, steps of top phases."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, phase: str, step: int, steps: int) -> None:
        t = time.perf_counter() - self.t0
        if step < 0:
            print(f"  [{t:6.1f}s] {phase} ({steps} steps)", file=sys.stderr, flush=True)
        elif step >= steps:
            print(f"  [{t:6.1f}s] {phase} done", file=sys.stderr, flush=True)
        else:
            print(f"  [{t:6.1f}s] {phase}: step {step + 1}/{steps}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    sizes = ProfileOptions(args.gaussians, args.min_gaussians, args.max_batch, args.max_frames)
    flags = BuildFlags(opt_level=args.opt_level, workspace_mib=args.workspace_mib)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    plan = make_plan(
        args.dir, out_dir=args.output, models=models, precision=args.precision,
        sizes=sizes, flags=flags, overrides=args.profile,
    )  # fmt: skip
    print(plan.describe())
    if plan.problems:
        print(f"\n{len(plan.problems)} problem(s):", file=sys.stderr)
        for p in plan.problems:
            print(f"  - {p}", file=sys.stderr)
        raise FormatError(f"{args.dir}: checks failed ({len(plan.problems)} problem(s)); nothing built")
    print("\nchecks passed: onnx.checker, TensorRT op set, FP16 precision rule, profiles")
    if args.check:
        return 0
    from .build import build_engines
    from .cache import EngineCache

    results = build_engines(
        plan, cache=EngineCache(args.cache_dir), use_cache=not args.no_cache,
        progress=_Progress(), device_id=args.device_id,
    )  # fmt: skip
    for r in results:
        how = "cache hit" if r.cache_hit else f"built in {r.sidecar.build_time_s:.1f} s"
        print(f"{r.model}: {r.plan} ({how}; TensorRT {r.sidecar.trt_version}, {r.sidecar.gpu_name} sm {r.sidecar.compute_capability})")
    return 0
