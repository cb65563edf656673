"""``huma-rt triton-repo``: write (or check) a Triton Inference Server model repository."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=False)
    src.add_argument("--bundle", metavar="B", help="avatar bundle folder (export/ + plans/)")
    src.add_argument("--export-dir", metavar="DIR", help="export folder written by 'huma-rt export'")
    parser.add_argument("-o", "--output", metavar="REPO", help="repository folder to write")
    parser.add_argument("--target", choices=("gpu", "cpu"), default="gpu", help="gpu: TensorRT/ONNX Runtime models; cpu: python-backend models (default gpu)")
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="ONNX variant served by the gpu target (default fp16)")
    parser.add_argument("--instances", type=int, default=1, help="instances per network model (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="cpu target: onnxruntime threads per instance (default 1)")
    parser.add_argument("--model-env", metavar="VENV", default=None,
                        help="cpu target: the models' environment (numpy<2 + onnxruntime); default .venv-triton if it exists")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace an existing huma-rt repository at -o")
    parser.add_argument("--check", metavar="REPO", help="only validate an existing repository")


def run(args: argparse.Namespace) -> int:
    from huma_rt.errors import InputError

    from .repo import RepoOptions, resolve_source, validate_repository, write_repository

    if args.check:
        configs = validate_repository(args.check)
        print(f"{args.check}: {len(configs)} models valid: {', '.join(sorted(configs))}")
        return 0
    if not args.output:
        raise InputError("give -o REPO (the folder to write) or --check REPO")
    env = args.model_env
    if env is None and args.target == "cpu" and Path(".venv-triton").is_dir():
        env = ".venv-triton"
    source = resolve_source(bundle=args.bundle, export_dir=args.export_dir)
    opts = RepoOptions(target=args.target, precision=args.precision, instances=args.instances, threads=args.threads, model_env=Path(env) if env else None)
    out = write_repository(args.output, source, opts, overwrite=args.force)
    configs = validate_repository(out)
    print(f"wrote {out} ({args.target}): {', '.join(sorted(configs))}")
    for name, c in sorted(configs.items()):
        kind = c.platform or c.backend
        print(f"  {name:15s} {kind:17s} max_batch_size={c.max_batch_size}")
    return 0
