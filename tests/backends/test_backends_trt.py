"""Sidecars, mismatch refusal, backend choice, and the TensorRT runner's call sequence.

TensorRT and a GPU cannot exist here: ``trt_runtime_double`` (a TEST DOUBLE, labelled as such)
stands in for the ``tensorrt`` module, and the GPU probe / GPU properties are replaced by fixed
values (TEST DOUBLES). The real thing runs in the @pytest.mark.gpu test at the end.
"""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import trt_runtime_double as double

from huma_rt.backends import open_runner, select, trt
from huma_rt.backends.sidecar import Sidecar, load_sidecar, mismatches, sha256_file, sidecar_path
from huma_rt.errors import BackendError, FormatError, InputError

GPU = ("NVIDIA L4", "8.9")


def _sidecar(plan, **over) -> Sidecar:
    fields = dict(
        trt_version="10.9.0.34", gpu_name=GPU[0], compute_capability=GPU[1], precision="fp16",
        profiles={"feat": {"min": [1, 48], "opt": [100, 48], "max": [100, 48]}, "code": {"min": [1, 32], "opt": [1, 32], "max": [2, 32]}},
        onnx_file="deformer.fp16.onnx", onnx_sha256="0" * 64, plan_sha256=sha256_file(plan),
        flags={"precision": "fp16"}, build_time_s=1.0, built_at="2026-11-23T00:00:00Z", cache_key="k" * 64,
        trtexec="trtexec --onnx=deformer.fp16.onnx", extra={"io": {"feat": {"axes": ["N", ""]}, "code": {"axes": ["B", ""]},
        "dmu": {"axes": ["B", "N", ""]}, "dquat": {"axes": ["B", "N", ""]}, "dscale": {"axes": ["B", "N", ""]}}},
    )  # fmt: skip
    fields.update(over)
    return Sidecar(**fields)


@pytest.fixture
def plan_dir(tmp_path, export_dir):
    """deformer.fp16.onnx (real) + deformer.fp16.plan (opaque bytes) + its sidecar."""
    (tmp_path / "deformer.fp16.onnx").write_bytes((export_dir / "deformer.fp16.onnx").read_bytes())
    plan = tmp_path / "deformer.fp16.plan"
    plan.write_bytes(b"serialized engine bytes (test double)")
    _sidecar(plan).save(sidecar_path(plan))
    return tmp_path


@pytest.fixture
def fake_trt(monkeypatch):
    """TEST DOUBLES: the tensorrt module, a CUDA device present, and its properties."""
    mod = double.make_module()
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    monkeypatch.setattr(select, "has_module", lambda name: True)
    monkeypatch.setattr(select, "has_cuda", lambda: True)
    monkeypatch.setattr(trt, "gpu_info", lambda device_id=0: GPU)
    return mod


def test_sidecar_round_trip_and_errors(plan_dir):
    plan = plan_dir / "deformer.fp16.plan"
    assert load_sidecar(plan) == _sidecar(plan)
    data = json.loads(sidecar_path(plan).read_text())
    sidecar_path(plan).write_text(json.dumps({**data, "surprise": 1}))
    with pytest.raises(FormatError, match=r"unknown fields \['surprise'\]"):
        load_sidecar(plan)
    del data["trt_version"]
    sidecar_path(plan).write_text(json.dumps(data))
    with pytest.raises(FormatError, match="trt_version"):
        load_sidecar(plan)
    sidecar_path(plan).write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_sidecar(plan)
    sidecar_path(plan).unlink()
    with pytest.raises(FormatError, match="has no sidecar"):
        load_sidecar(plan)


def test_mismatches_name_what_differs(plan_dir, caplog):
    sc = _sidecar(plan_dir / "deformer.fp16.plan")
    assert mismatches(sc, trt_version="10.9.0.34", compute_capability="8.9", gpu_name="NVIDIA L4") == []
    got = mismatches(sc, trt_version="11.0.0.1", compute_capability="9.0", gpu_name="NVIDIA H100")
    assert got == [
        "built with TensorRT 10.9.0.34, this machine has TensorRT 11.0.0.1",
        "built for compute capability 8.9 (NVIDIA L4), this GPU is 9.0 (NVIDIA H100)",
    ]
    with caplog.at_level(logging.WARNING):
        assert mismatches(sc, trt_version="10.9.0.34", compute_capability="8.9", gpu_name="NVIDIA RTX 4090") == []
    assert "same compute capability" in caplog.text


@pytest.mark.parametrize(
    "field,value,match",
    [("trt_version", "10.3.0", "built with TensorRT 10.3.0, this machine has TensorRT 10.9.0.34"),
     ("compute_capability", "7.5", "built for compute capability 7.5")],
)  # fmt: skip
def test_mismatched_plan_is_refused_and_auto_falls_back(plan_dir, fake_trt, caplog, field, value, match):
    plan = plan_dir / "deformer.fp16.plan"
    _sidecar(plan, **{field: value}).save(sidecar_path(plan))
    with pytest.raises(BackendError, match=match):
        trt.TrtEngine.load(plan)
    with pytest.raises(BackendError, match=match):
        open_runner(plan, backend="tensorrt", device="cuda")
    with caplog.at_level(logging.WARNING):
        # providers=["cpu"]: this onnxruntime has no GPU providers; the choice logic is the same
        r = open_runner(plan, backend="auto", device="cuda", providers=["cpu"])
    assert r.backend == "onnxruntime" and r.model == plan_dir / "deformer.fp16.onnx"
    assert "TensorRT plan refused" in r.reason and match.split(",")[0] in r.reason
    assert "falling back to onnxruntime" in caplog.text
    assert double.Runtime.deserialized == []  # refused before deserializing


def test_corrupt_plan_bytes_are_refused(plan_dir, fake_trt):
    plan = plan_dir / "deformer.fp16.plan"
    plan.write_bytes(b"other bytes")
    with pytest.raises(FormatError, match="sha256"):
        trt.TrtEngine.load(plan)


def test_auto_picks_a_fitting_plan_and_records_why(plan_dir, fake_trt):
    r = open_runner(plan_dir / "deformer.fp16.onnx", device="cuda", stream=1234)
    assert r.backend == "tensorrt" and r.reason.startswith("auto: plan deformer.fp16.plan fits")
    r_cpu = open_runner(plan_dir / "deformer.fp16.onnx", device="cpu")
    assert r_cpu.backend == "onnxruntime" and "device 'cpu'" in r_cpu.reason


def test_trt_runner_call_sequence(plan_dir, fake_trt):
    """Deserialize once; a context per session; addresses set once at bind; run = execute_async_v3."""
    engine = trt.TrtEngine.load(plan_dir / "deformer.fp16.plan")
    assert len(double.Runtime.deserialized) == 1
    assert engine.inputs["feat"].axes == ("N", "") and engine.outputs["dmu"].shape == (-1, -1, 3)
    a, b = engine.create_runner(stream=111), engine.create_runner(stream=222)
    c = a.fork(stream=333)
    assert len(double.Runtime.deserialized) == 1 and len(engine.engine.contexts) == 3
    assert a.context is not b.context is not c.context
    ins = {"feat": double.DeviceArray((100, 48)), "code": double.DeviceArray((2, 32))}
    outs = {k: double.DeviceArray((2, 100, n)) for k, n in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    a.bind(inputs=ins, outputs=outs)
    bind_calls = list(a.context.calls)
    assert ("set_input_shape", "feat", (100, 48)) in bind_calls and ("set_input_shape", "code", (2, 32)) in bind_calls
    addresses = {c[1]: c[2] for c in bind_calls if c[0] == "set_tensor_address"}
    assert addresses == {k: v.__cuda_array_interface__["data"][0] for k, v in (ins | outs).items()}
    for _ in range(5):
        a.run()
    assert a.context.calls[len(bind_calls):] == [("execute_async_v3", 111)] * 5
    assert b.context.calls == []  # the other session's context is untouched


def test_trt_runner_refuses_shapes_outside_profile_and_host_arrays(plan_dir, fake_trt):
    r = trt.TrtEngine.load(plan_dir / "deformer.fp16.plan").create_runner(stream=1)
    outs = {k: double.DeviceArray((1, 101, n)) for k, n in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    with pytest.raises(InputError, match=r"outside the plan's profile min \[1, 48\] .. max \[100, 48\]"):
        r.bind(inputs={"feat": double.DeviceArray((101, 48)), "code": double.DeviceArray((1, 32))}, outputs=outs)
    with pytest.raises(InputError, match="must be a CuPy"):
        r.bind(inputs={"feat": np.zeros((10, 48), np.float32), "code": double.DeviceArray((1, 32))},
               outputs={k: double.DeviceArray((1, 10, n)) for k, n in (("dmu", 3), ("dquat", 4), ("dscale", 3))})  # fmt: skip
    with pytest.raises(BackendError, match="call bind"):
        r.run()


def test_explicit_backends_never_fall_back(plan_dir, export_dir):
    with pytest.raises(BackendError, match="needs a TensorRT plan"):
        open_runner(export_dir / "deformer.fp16.onnx", backend="tensorrt", device="cuda")
    with pytest.raises(BackendError, match="tensorrt Python module is not installed|no usable CUDA GPU"):
        open_runner(plan_dir / "deformer.fp16.plan", backend="tensorrt", device="cuda")
    r = open_runner(plan_dir / "deformer.fp16.plan", backend="onnxruntime")  # the plan's ONNX, by its sidecar
    assert r.model.name == "deformer.fp16.onnx" and r.reason.startswith("backend 'onnxruntime' asked")


def test_open_runner_argument_errors(export_dir, tmp_path):
    with pytest.raises(InputError, match="backend must be one of"):
        open_runner(export_dir / "deformer.fp16.onnx", backend="tvm")
    with pytest.raises(InputError, match="device must be one of"):
        open_runner(export_dir / "deformer.fp16.onnx", device="tpu")
    with pytest.raises(FormatError, match="does not exist"):
        open_runner(tmp_path / "nope.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(InputError, match=r"\.onnx or \.plan"):
        open_runner(tmp_path / "m.pt")
    with pytest.raises(InputError, match="unknown onnxruntime options"):
        open_runner(export_dir / "deformer.fp16.onnx", backend="onnxruntime", fp8=True)


def test_triton_backend_is_imported_lazily_and_gets_the_options(monkeypatch):
    import types

    seen = {}

    class TritonRunnerDouble:  # TEST DOUBLE for the Triton engineer's TritonRunner
        backend = "triton"

        def __init__(self, model, **kw):
            seen.update(model=model, **kw)

    mod = types.ModuleType("huma_rt.triton.runner")
    mod.TritonRunner = TritonRunnerDouble
    monkeypatch.setitem(sys.modules, "huma_rt.triton.runner", mod)
    r = open_runner("deformer", backend="triton", url="localhost:8001", threads=2)
    assert seen == {"model": "deformer", "device": "cpu", "threads": 2, "url": "localhost:8001"}
    assert r.reason == "backend 'triton' asked"


@pytest.mark.gpu
def test_real_tensorrt_build_and_run_matches_onnxruntime(export_dir, tmp_path):
    """On a machine with TensorRT and a GPU: build the deformer plan, run it, compare with ORT."""
    pytest.importorskip("tensorrt")
    import cupy
    from huma_rt.engines.build import build_engines
    from huma_rt.engines.cache import EngineCache
    from huma_rt.engines.plan import make_plan
    from huma_rt.engines.profiles import ProfileOptions

    plan = make_plan(export_dir, out_dir=tmp_path, models=("deformer",), sizes=ProfileOptions(gaussians=512, max_batch=2))
    (res,) = build_engines(plan, cache=EngineCache(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    ins = {"feat": rng.standard_normal((512, 48)).astype(np.float32), "code": rng.standard_normal((2, 32)).astype(np.float32)}
    ref = {k: np.zeros((2, 512, n), np.float32) for k, n in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    open_runner(export_dir / "deformer.fp16.onnx").bind(inputs=ins, outputs=ref)
    r = open_runner(res.plan, backend="tensorrt", device="cuda")
    d_in = {k: cupy.asarray(v) for k, v in ins.items()}
    d_out = {k: cupy.zeros_like(cupy.asarray(v)) for k, v in ref.items()}
    r.bind(inputs=d_in, outputs=d_out)
    r.run()
    r.stream.synchronize()
    for k in ref:
        got = cupy.asnumpy(d_out[k])
        assert np.max(np.abs(got - ref[k])) <= 1e-2 * np.max(np.abs(ref[k])), k
