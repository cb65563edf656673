"""The export folder: files, names, dynamic axes, fp16 graphs, parity at other sizes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from huma_rt.export import checks

from huma_rt.model_config import DeformerConfig, EncoderConfig

FILES = [
    "encoder.json", "deformer.json", "export_report.json",
    *(f"{m}.{p}.onnx" for m in ("encoder", "spatial", "deformer") for p in ("fp32", "fp16")),
]  # fmt: skip
SIGNATURES = {
    "encoder": ({"mel": ["B", "T", 80]}, {"code": ["B", "F", 32]}),
    "spatial": ({"means": ["N", 3]}, {"feat": ["N", 48]}),
    "deformer": ({"feat": ["N", 48], "code": ["B", 32]}, {"dmu": ["B", "N", 3], "dquat": ["B", "N", 4], "dscale": ["B", "N", 3]}),
}  # fmt: skip


def _sig(values) -> dict:
    f32 = onnx.TensorProto.FLOAT
    out = {}
    for v in values:
        assert v.type.tensor_type.elem_type == f32, f"{v.name} must be float32 I/O"
        out[v.name] = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    return out


def test_folder_contents_and_configs(exported):
    out = exported.out_dir
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert EncoderConfig.load(out / "encoder.json") == EncoderConfig()
    assert DeformerConfig.load(out / "deformer.json") == DeformerConfig()
    report = json.loads((out / "export_report.json").read_text())
    assert report["passed"] and report["opset"] >= 17
    assert set(report["models"]) == {f for f in FILES if f.endswith(".onnx")}
    assert report["parameters"]["encoder"] < 1_000_000


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["encoder", "spatial", "deformer"])
def test_graph_signature(exported, name, precision):
    model = onnx.load(str(exported.out_dir / f"{name}.{precision}.onnx"))
    inputs, outputs = SIGNATURES[name]
    assert _sig(model.graph.input) == inputs
    assert _sig(model.graph.output) == outputs
    assert checks.default_opset(model) >= 17
    assert checks.unsupported_ops(model) == []
    kinds = {t.data_type for t in model.graph.initializer if len(t.dims) >= 2}
    want = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    if name != "spatial":  # the spatial tri-plane stays fp32 (lookup runs once, at preload)
        assert kinds == {want}, f"weight matrices of {name}.{precision} are {kinds}"


def test_fp16_keeps_normalisation_in_fp32(exported):
    report = json.loads((exported.out_dir / "export_report.json").read_text())
    enc = report["models"]["encoder.fp16.onnx"]["fp32_nodes"]
    model = onnx.load(str(exported.out_dir / "encoder.fp16.onnx"))
    by_name = {n.name: n for n in model.graph.node}
    assert {by_name[n].op_type for n in enc} >= {"Sub", "Div"}
    assert "GridSample" in {n.split("/")[-1] for n in report["models"]["spatial.fp16.onnx"]["fp32_nodes"]}


@pytest.mark.parametrize("precision,tol", [("fp32", checks.FP32_TOLERANCE), ("fp16", checks.FP16_TOLERANCE)])
def test_parity_at_other_dynamic_sizes(exported, models, precision, tol):
    """Sizes unlike the export's example inputs: dynamic axes really are dynamic."""
    encoder, spatial, deformer = models
    rng = np.random.default_rng(11)
    out = exported.out_dir
    mel = (rng.standard_normal((3, 44 + 4 * 20, 80)) * 4 - 5).astype(np.float32)
    means = rng.uniform(-1.2, 1.2, (77, 3)).astype(np.float32)
    with torch.no_grad():
        code_ref = encoder(torch.from_numpy(mel)).numpy()
        feat_ref = spatial(torch.from_numpy(means)).numpy()
        code = code_ref[:, 5]
        d_ref = [t.numpy() for t in deformer(torch.from_numpy(feat_ref), torch.from_numpy(code))]
    got = checks.run_onnxruntime(out / f"encoder.{precision}.onnx", {"mel": mel})["code"]
    assert got.shape == (3, 21, 32)
    assert checks.relative_error(got, code_ref) <= tol
    got = checks.run_onnxruntime(out / f"spatial.{precision}.onnx", {"means": means})["feat"]
    assert checks.relative_error(got, feat_ref) <= tol
    got = checks.run_onnxruntime(out / f"deformer.{precision}.onnx", {"feat": feat_ref, "code": code})
    for name, ref in zip(("dmu", "dquat", "dscale"), d_ref, strict=True):
        assert got[name].shape == (3, 77, ref.shape[-1])
        assert checks.relative_error(got[name], ref) <= tol, name


def test_parity_rows_reported(exported):
    table = checks.format_table(exported.rows)
    assert len(exported.rows) == 10  # 1 + 1 + 3 outputs, two precisions
    assert all(r.passed for r in exported.rows)
    assert "| encoder.fp16 | code |" in table
