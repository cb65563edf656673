"""``huma-rt build --check``: ONNX checks, TensorRT op set, FP16 precision rule, profiles."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from huma_rt.engines import profiles
from huma_rt.engines.plan import make_plan
from huma_rt.engines.profiles import ProfileOptions
from onnx import TensorProto, helper, numpy_helper

from huma_rt.cli import main
from huma_rt.errors import InputError


def _save(model: onnx.ModelProto, path, precision_tag: str) -> None:
    helper.set_model_props(model, {"huma_rt.precision": precision_tag})
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _tiny(nodes, inits, in_type=TensorProto.FLOAT, out_type=TensorProto.FLOAT, x_shape=("N", 4), y_shape=("N", 4)):
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", in_type, list(x_shape))],
        [helper.make_tensor_value_info("y", out_type, list(y_shape))], initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _w(dtype=np.float16):
    return numpy_helper.from_array(np.eye(4, dtype=dtype), "w")


def test_check_passes_on_the_export_and_prints_the_plan(exported_dir, capsys):
    assert main(["build", "--check", str(exported_dir), "--gaussians", "20000", "--max-batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "profile mel: min [1, 44, 80] opt [1, 44, 80] max [2, 72, 80]" in out
    assert "profile feat: min [1, 48] opt [20000, 48] max [20000, 48]" in out
    assert "--stronglyTyped --minShapes=feat:1x48,code:1x32 --optShapes=feat:20000x48,code:1x32" in out
    assert "--fp16" not in out  # precision comes from the graph, not from a builder flag
    assert "checks passed" in out


@pytest.mark.parametrize("prec", ["fp32", "fp16"])
def test_every_exported_graph_passes(exported_dir, prec):
    plan = make_plan(exported_dir, models=("encoder", "spatial", "deformer"), precision=prec)
    assert plan.problems == []
    assert [m.model for m in plan.models] == ["encoder", "spatial", "deformer"]
    assert set(plan.models[2].profiles) == {"feat", "code"}


def test_unsupported_op_is_reported(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])
    graph = helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det")], "g", [x], [y])
    _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "deformer.fp32.onnx", "fp32")
    assert main(["build", "--check", str(tmp_path), "--models", "deformer", "--precision", "fp32"]) == 1
    err = capsys.readouterr().err
    assert "deformer: deformer.fp32.onnx: TensorRT does not support Det" in err
    assert "error:" in err and "nothing built" in err


def test_opset_outside_tensorrt_range_is_reported(tmp_path):
    model = _tiny([helper.make_node("Relu", ["x"], ["y"])], [])
    model.opset_import[0].version = 21
    _save(model, tmp_path / "spatial.fp32.onnx", "fp32")
    plan = make_plan(tmp_path, models=("spatial",), precision="fp32")
    assert any("opset 21" in p for p in plan.problems), plan.problems


def test_fp16_rule_flags_sensitive_op_in_fp16(tmp_path):
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16, name="cast_in"),
        helper.make_node("MatMul", ["xh", "w"], ["h"], name="mm"),
        helper.make_node("Exp", ["h"], ["e"], name="exp"),
        helper.make_node("Cast", ["e"], ["y"], to=TensorProto.FLOAT, name="cast_out"),
    ]
    _save(_tiny(nodes, [_w()]), tmp_path / "deformer.fp16.onnx", "fp16")
    plan = make_plan(tmp_path, models=("deformer",))
    assert plan.problems == ["deformer.fp16.onnx: precision-sensitive Exp 'exp' runs in fp16; it must read and write FLOAT"]


def test_fp16_rule_accepts_sensitive_op_in_fp32(tmp_path):
    nodes = [
        helper.make_node("Cast", ["x"], ["xh"], to=TensorProto.FLOAT16, name="cast_in"),
        helper.make_node("MatMul", ["xh", "w"], ["h"], name="mm"),
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT, name="cast_out"),
        helper.make_node("Exp", ["hf"], ["y"], name="exp"),
    ]
    _save(_tiny(nodes, [_w()]), tmp_path / "deformer.fp16.onnx", "fp16")
    assert make_plan(tmp_path, models=("deformer",)).problems == []


def test_fp16_rule_flags_fp16_io_and_fake_fp16(tmp_path):
    mm = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    _save(_tiny(mm, [_w()], TensorProto.FLOAT16, TensorProto.FLOAT16), tmp_path / "deformer.fp16.onnx", "fp16")
    problems = make_plan(tmp_path, models=("deformer",)).problems
    assert "deformer.fp16.onnx: graph input 'x' is FLOAT16; must be FLOAT (casts belong inside)" in problems
    assert "deformer.fp16.onnx: graph output 'y' is FLOAT16; must be FLOAT (casts belong inside)" in problems
    _save(_tiny(mm, [_w(np.float32)]), tmp_path / "deformer.fp16.onnx", "fp16")
    assert make_plan(tmp_path, models=("deformer",)).problems == [
        "deformer.fp16.onnx: declared fp16 but no Conv/MatMul/Gemm takes fp16 input; the engine would be fp32"
    ]


def test_fp16_rule_checks_the_nodes_the_exporter_kept_in_fp32(export_copy):
    path = export_copy / "encoder.fp16.onnx"
    model = onnx.load(str(path))
    first_conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    kept = {p.key: p.value for p in model.metadata_props}["huma_rt.fp32_nodes"]
    helper.set_model_props(model, {"huma_rt.precision": "fp16", "huma_rt.fp32_nodes": kept + "," + first_conv})
    onnx.save(model, str(path))
    problems = make_plan(export_copy, models=("encoder",)).problems
    assert problems == [f"encoder.fp16.onnx: Conv '{first_conv}' was kept in fp32 by the exporter but reads fp16 input"]


def test_precision_declared_differently_from_the_build(export_copy):
    (export_copy / "deformer.fp16.onnx").write_bytes((export_copy / "deformer.fp32.onnx").read_bytes())
    problems = make_plan(export_copy, models=("deformer",)).problems
    assert "deformer: deformer.fp16.onnx declares precision fp32, the build asks fp16" in problems


@pytest.mark.parametrize(
    "override,expected",
    [
        ("feat:1x64,100x64,100x64", "deformer: profile of 'feat': min shape [1, 64] sets fixed axis 1 to 64; the model fixes it at 48"),
        ("deformer.code:1x32,4x32,2x32", "deformer: profile of 'code': axis 0 must satisfy min <= opt <= max; got 1, 4, 2"),
        ("code:1x32x1,1x32x1,1x32x1", "deformer: profile of 'code': min shape [1, 32, 1] has rank 3, the input has rank 2 ['B', 32]"),
        ("feats:1x48,2x48,2x48", "--profile names 'feats', which is no input of the models built (inputs: ['deformer.code', 'deformer.feat', 'encoder.mel'])"),
        ("encoder.feat:1x48,2x48,2x48", "--profile names 'encoder.feat', which is no input"),
        ("mel:1x40x80,1x44x80,1x48x80", "encoder: profile of 'mel' min T = 40 is below the encoder's receptive field of 44 mel frames"),
        ("feat:0x48,2x48,2x48", "deformer: profile of 'feat': min shape [0, 48] has axis 0 = 0; must be >= 1"),
    ],
)
def test_profile_problems(exported_dir, override, expected):
    problems = make_plan(exported_dir, overrides=[override]).problems
    assert any(p.startswith(expected) for p in problems), problems


def test_profile_contradicting_an_axis_fails_the_cli(exported_dir, capsys):
    assert main(["build", "--check", str(exported_dir), "--profile", "feat:1x64,100x64,100x64"]) == 1
    assert "sets fixed axis 1 to 64; the model fixes it at 48" in capsys.readouterr().err


def test_shared_axis_must_agree_across_inputs():
    sigs = [profiles.InputSig("a", ("N", 3)), profiles.InputSig("b", ("N", 4))]
    profs = {
        "a": profiles.Profile((1, 3), (10, 3), (10, 3)),
        "b": profiles.Profile((1, 4), (10, 4), (20, 4)),
    }
    assert profiles.check_shared_axes("m", sigs, profs) == ["m: axis 'N' is [1, 10, 10] in 'a' but [1, 10, 20] in 'b'"]


def test_unknown_dynamic_axis_needs_an_override(tmp_path):
    _save(_tiny([helper.make_node("Relu", ["x"], ["y"])], [], x_shape=("K", 4), y_shape=("K", 4)), tmp_path / "spatial.fp32.onnx", "fp32")
    plan = make_plan(tmp_path, models=("spatial",), precision="fp32")
    assert plan.problems == ["spatial: input 'x' axis 0 is dynamic ('K') and no default covers it; give --profile x:MIN,OPT,MAX (shapes like 1x44x80)"]
    plan = make_plan(tmp_path, models=("spatial",), precision="fp32", overrides=["x:1x4,8x4,16x4"])
    assert plan.problems == [] and plan.models[0].profiles["x"].max == (16, 4)


def test_missing_files_and_bad_arguments(tmp_path, exported_dir):
    plan = make_plan(tmp_path, models=("deformer",))
    assert plan.problems == [f"deformer: {tmp_path / 'deformer.fp16.onnx'} does not exist"]
    with pytest.raises(InputError, match=r"models must be a non-empty subset"):
        make_plan(exported_dir, models=("vocoder",))
    with pytest.raises(InputError, match="--profile must look like"):
        make_plan(exported_dir, overrides=["feat=1x48"])
    with pytest.raises(InputError, match="min_gaussians \\(10\\) must be <= gaussians \\(5\\)"):
        ProfileOptions(gaussians=5, min_gaussians=10)
    with pytest.raises(InputError, match="max_batch must be a positive integer; got 0"):
        ProfileOptions(max_batch=0)
    assert main(["build", "--check", str(tmp_path / "nowhere")]) == 1


def test_corrupt_onnx_is_reported(export_copy):
    (export_copy / "deformer.fp16.onnx").write_bytes(b"\x08\x07garbage")
    problems = make_plan(export_copy, models=("deformer",)).problems
    assert len(problems) == 1 and problems[0].startswith("deformer: ") and "deformer.fp16.onnx" in problems[0]
