"""``huma-rt export``: export the models to ONNX (fp32 + fp16), check them, print the parity table."""

from __future__ import annotations

import argparse

from huma_rt.errors import FormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="exported", metavar="DIR", help="output folder (default: ./exported)")
    parser.add_argument(
        "--checkpoint", metavar="DIR", default=None,
        help="checkpoint folder (model.safetensors + encoder.json + deformer.json); default: the "
        "demo checkpoint if present, else seeded random weights",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and parity inputs (default 0)")


def run(args: argparse.Namespace) -> int:
    from . import checks
    from .onnx_export import export_models, resolve_models

    (encoder, spatial, deformer, _, _), source = resolve_models(args.checkpoint, args.seed)
    result = export_models(args.output, encoder, spatial, deformer, seed=args.seed, source=source, raise_on_failure=False)
    report = result.report
    print(f"exported {source} to {result.out_dir} (opset {report['opset']})")
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in report["parameters"].items()))
    print()
    print(checks.format_table(result.rows))
    print()
    for name, entry in report["models"].items():
        ops = "none" if not entry["unsupported_ops"] else ", ".join(entry["unsupported_ops"])
        print(f"{name}: onnx.checker ok; ops outside TensorRT's set: {ops}")
    print(f"report: {result.out_dir / 'export_report.json'}")
    if not report["passed"]:
        raise FormatError("export checks failed: " + "; ".join(report["failures"]))
    return 0
