"""export/checks.py: TensorRT op-set check, checker, relative error; importable without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from huma_rt.export import checks
from onnx import TensorProto, helper

from huma_rt.errors import FormatError


def _model(op: str, opset: int = 18, domain: str = "") -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node(op, ["h"], ["y"], domain=domain)]
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=imports)


def test_op_list_is_real():
    trt = checks.load_trt_ops()
    assert {"Conv", "MatMul", "Gemm", "GridSample", "Relu", "Transpose"} <= trt.ops
    assert not {"STFT", "Unique", "DFT", "MelWeightMatrix"} & trt.ops  # marked N upstream
    assert (trt.min_opset, trt.max_opset) == (9, 20)
    assert "onnx-tensorrt" in trt.source and "10.1" in trt.source


def test_supported_graph_passes():
    assert checks.unsupported_ops(_model("Sigmoid")) == []


def test_unsupported_op_is_caught():
    assert checks.unsupported_ops(_model("Unique")) == ["Unique"]


def test_custom_domain_and_opset_are_caught():
    assert checks.unsupported_ops(_model("MyOp", domain="com.example")) == ["com.example::MyOp"]
    assert checks.unsupported_ops(_model("Relu", opset=21)) == ["opset 21 (TensorRT parses 9..20)"]


def test_unsupported_op_inside_subgraph_is_caught():
    cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    branch = lambda op: helper.make_graph([helper.make_node(op, ["x"], ["y"])], op, [], [out])  # noqa: E731
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch("Relu"), else_branch=branch("NonZero"))
    graph = helper.make_graph([node], "g", [cond, x], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert checks.unsupported_ops(model, checks.TrtOpSet(frozenset({"If", "Relu"}), 9, 20, "test")) == ["NonZero"]


def test_checker_rejects_broken_graph(tmp_path):
    model = _model("Relu")
    model.graph.node[1].input[0] = "missing"
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(FormatError, match="onnx.checker"):
        checks.check_graph(path)
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx" * 10)
    with pytest.raises(FormatError):
        checks.load_model(tmp_path / "junk.onnx")
    with pytest.raises(FormatError, match="does not exist"):
        checks.load_model(tmp_path / "none.onnx")


def test_relative_error_definition():
    ref = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert checks.relative_error(ref + [[0, 0], [0, 0.02]], ref) == pytest.approx(0.02 / 4)
    assert checks.relative_error(np.full(3, 1e-3), np.zeros(3)) == pytest.approx(1e-3)
    with pytest.raises(FormatError, match="shape"):
        checks.relative_error(np.zeros(3), np.zeros(4))


def test_parity_flags_a_wrong_graph(tmp_path):
    """A graph that computes something else fails parity (the check can fail)."""
    path = tmp_path / "m.onnx"
    onnx.save(_model("Sigmoid"), str(path))
    x = np.linspace(-2, 2, 4).astype(np.float32)
    relu_ref = np.maximum(x, 0.0)
    (row,) = checks.parity("m", path, {"x": x}, {"y": 1 / (1 + np.exp(-relu_ref))}, 1e-4)
    assert row.passed
    (row,) = checks.parity("m", path, {"x": x}, {"y": relu_ref}, 1e-4)
    assert not row.passed and row.rel_error > 0.1


def test_checks_import_without_torch():
    code = "import sys; sys.modules['torch'] = None; import huma_rt.export.checks as c; print(len(c.load_trt_ops().ops))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 100
