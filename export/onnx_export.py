"""Write the export folder of docs/INTERFACES.md: configs, fp32 + fp16 ONNX graphs, report.

``export_models`` exports the three networks, converts each to fp16, then checks every graph
(onnx.checker, TensorRT op set, onnxruntime-vs-PyTorch parity on random inputs) and writes
``export_report.json``. A failed check raises FormatError after the report is written.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from huma_rt.errors import FormatError
from huma_rt.model_config import DeformerConfig, EncoderConfig

from . import checks
from .checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint, load_checkpoint, prepare_output_dir
from .fp16 import fp32_nodes, to_fp16, update_props
from .models import AudioEncoder, Deformer, SpatialEncoder, build_models, count_parameters

log = logging.getLogger(__name__)

OPSET = 18  # >= 17 (issue) and inside TensorRT 10's parsed range 9..20
PRECISIONS = {"fp32": checks.FP32_TOLERANCE, "fp16": checks.FP16_TOLERANCE}


@dataclass
class GraphSpec:
    """One network to export: example inputs (numpy), names and dynamic axes."""

    name: str
    module: torch.nn.Module
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    # Runs once at preload: fp16 buys nothing there, and the trained tri-plane projection
    # loses more than the fp16 tolerance, so its fp16 variant keeps fp32 compute inside.
    preload_only: bool = False


@dataclass
class ExportResult:
    """What ``export_models`` wrote: paths by file name, parity rows and the report dict."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    rows: list[checks.ParityRow] = field(default_factory=list)
    report: dict = field(default_factory=dict)


def export_onnx(spec: GraphSpec, path: Path, opset: int = OPSET) -> onnx.ModelProto:
    """Export ``spec.module`` to ONNX at ``path`` (weights embedded) and return the model."""
    args = tuple(torch.from_numpy(a) for a in spec.inputs.values())
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in torch 2.13 but gives clean opset-18 graphs with
        # named dynamic axes in 0.2 s; the dynamo exporter takes ~10 s a graph on our CI cores.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.onnx.export(
            spec.module, args, buf, dynamo=False, opset_version=opset,
            input_names=list(spec.inputs), output_names=spec.outputs,
            dynamic_axes=spec.dynamic_axes, do_constant_folding=True,
        )  # fmt: skip
    model = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, {"huma_rt.model": spec.name, "huma_rt.precision": "fp32"})
    onnx.save(model, str(path))
    return model


def graph_specs(
    encoder: AudioEncoder, spatial: SpatialEncoder, deformer: Deformer, seed: int = 0
) -> list[GraphSpec]:
    """The three graphs with random but realistic example inputs (also used for parity)."""
    rng = np.random.default_rng(seed)
    ecfg, dcfg = encoder.cfg, deformer.cfg
    frames, batch, n = 8, 2, 1000
    t = ecfg.receptive_mels + ecfg.mels_per_frame * (frames - 1)
    mel = (encoder.mel_mean.numpy() + encoder.mel_std.numpy() * rng.standard_normal((batch, t, ecfg.mel.n_mels))).astype(np.float32)
    lo, hi = np.array(dcfg.bbox_min), np.array(dcfg.bbox_max)
    span = hi - lo  # 5% outside the box on each side exercises the border clamp
    means = (lo - 0.05 * span + 1.1 * span * rng.random((n, 3))).astype(np.float32)
    with torch.no_grad():
        feat = spatial(torch.from_numpy(means)).numpy()
        code = encoder(torch.from_numpy(mel))[:, -1].numpy()  # [B, D], codes as the runtime sees them
    return [
        GraphSpec("encoder", encoder, {"mel": mel}, ["code"], {"mel": {0: "B", 1: "T"}, "code": {0: "B", 1: "F"}}),
        GraphSpec(
            "spatial", spatial, {"means": means}, ["feat"], {"means": {0: "N"}, "feat": {0: "N"}},
            preload_only=True,
        ),
        GraphSpec(
            "deformer", deformer, {"feat": feat, "code": code}, ["dmu", "dquat", "dscale"],
            {"feat": {0: "N"}, "code": {0: "B"}, "dmu": {0: "B", 1: "N"}, "dquat": {0: "B", 1: "N"}, "dscale": {0: "B", 1: "N"}},
        ),
    ]  # fmt: skip


def _reference(spec: GraphSpec) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = spec.module(*(torch.from_numpy(a) for a in spec.inputs.values()))
    out = out if isinstance(out, tuple) else (out,)
    return {name: o.numpy() for name, o in zip(spec.outputs, out, strict=True)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_models(checkpoint: str | Path | None, seed: int) -> tuple[tuple, str]:
    """(encoder, spatial, deformer, enc_cfg, def_cfg) from a checkpoint, the demo one, or random."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint), f"checkpoint {checkpoint}"
    if is_checkpoint(DEMO_CHECKPOINT_DIR):
        return load_checkpoint(DEMO_CHECKPOINT_DIR), f"demo checkpoint {DEMO_CHECKPOINT_DIR}"
    log.warning("no checkpoint given and no demo checkpoint in %s: exporting seeded random weights (seed %d)", DEMO_CHECKPOINT_DIR, seed)
    enc_cfg, def_cfg = EncoderConfig(), DeformerConfig()
    return (*build_models(enc_cfg, def_cfg, seed=seed), enc_cfg, def_cfg), f"random init (seed {seed})"


def export_models(
    out_dir: str | Path,
    encoder: AudioEncoder,
    spatial: SpatialEncoder,
    deformer: Deformer,
    *,
    seed: int = 0,
    source: str = "in-memory models",
    raise_on_failure: bool = True,
) -> ExportResult:
    """Export, convert, check and report.

    Returns the result; when a check fails, raises FormatError (after writing the report) unless
    ``raise_on_failure`` is False, in which case ``result.report["passed"]`` is False.
    """
    out = prepare_output_dir(out_dir)
    encoder, spatial, deformer = encoder.eval(), spatial.eval(), deformer.eval()
    result = ExportResult(out)
    encoder.cfg.save(out / "encoder.json")
    deformer.cfg.save(out / "deformer.json")
    trt = checks.load_trt_ops()
    models_report: dict[str, dict] = {}
    failures: list[str] = []
    for spec in graph_specs(encoder, spatial, deformer, seed):
        reference = _reference(spec)
        fp32 = export_onnx(spec, out / f"{spec.name}.fp32.onnx")
        variants = {"fp32": fp32, "fp16": to_fp16(fp32, keep_all=spec.preload_only)}
        update_props(variants["fp16"], {"huma_rt.precision": "fp16"})
        for precision, model in variants.items():
            path = out / f"{spec.name}.{precision}.onnx"
            if precision != "fp32":
                onnx.save(model, str(path))
            checks.check_graph(path)
            bad_ops = checks.unsupported_ops(model, trt)
            rows = checks.parity(f"{spec.name}.{precision}", path, spec.inputs, reference, PRECISIONS[precision])
            result.files[path.name] = path
            result.rows.extend(rows)
            failures += [f"{path.name}: op {op} is not supported by TensorRT" for op in bad_ops]
            failures += [f"{path.name}: {r.output} relative error {r.rel_error:.2e} > {r.tolerance:.0e}" for r in rows if not r.passed]
            models_report[path.name] = {
                "sha256": _sha256(path),
                "checker": "ok",
                "ops": checks.op_types(model),
                "unsupported_ops": bad_ops,
                "fp32_nodes": [n for n in fp32_nodes(model) if "Constant" not in n] if precision == "fp16" else None,
                "parity": [r.to_dict() for r in rows],
            }
    result.report = {
        "source": source,
        "seed": seed,
        "opset": OPSET,
        "torch": torch.__version__,
        "onnxruntime": _ort_version(),
        "relative_error": "max|onnxruntime - torch| / max|torch| per output, onnxruntime CPU, random inputs",
        "tolerances": PRECISIONS,
        "trt_op_list": {"file": checks.TRT_OPS_FILE.name, "source": trt.source, "opsets": [trt.min_opset, trt.max_opset]},
        "parameters": {
            "encoder": count_parameters(encoder),
            "spatial": count_parameters(spatial),
            "deformer": count_parameters(deformer),
        },
        "models": models_report,
        "failures": failures,
        "passed": not failures,
    }  # fmt: skip
    checks.write_report(out / "export_report.json", result.report)
    if failures and raise_on_failure:
        raise FormatError(f"export checks failed ({out / 'export_report.json'}): " + "; ".join(failures))
    log.info("exported %d graphs to %s", len(result.files), out)
    return result


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
