"""The onnxruntime runner: parity with PyTorch, binding checks, no allocation per run, fork."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
import torch
from huma_rt.export import checks

from huma_rt.backends import open_runner
from huma_rt.backends.base import TensorSpec
from huma_rt.errors import BackendError, InputError

TOL = {"fp32": checks.FP32_TOLERANCE, "fp16": checks.FP16_TOLERANCE}


def _inputs(torch_models, rng, batch=2, frames=6, n=300):
    """Inputs unlike the export's example sizes, and PyTorch's outputs for them."""
    encoder, spatial, deformer = torch_models
    cfg = encoder.cfg
    t = cfg.receptive_mels + cfg.mels_per_frame * (frames - 1)
    mel = (encoder.mel_mean.numpy() + encoder.mel_std.numpy() * rng.standard_normal((batch, t, 80))).astype(np.float32)
    means = rng.uniform(-1.1, 1.1, (n, 3)).astype(np.float32)
    with torch.no_grad():
        code = encoder(torch.from_numpy(mel)).numpy()
        feat = spatial(torch.from_numpy(means)).numpy()
        last = np.ascontiguousarray(code[:, -1])
        dmu, dquat, dscale = (x.numpy() for x in deformer(torch.from_numpy(feat), torch.from_numpy(last)))
    return {
        "encoder": ({"mel": mel}, {"code": code}),
        "spatial": ({"means": means}, {"feat": feat}),
        "deformer": ({"feat": feat, "code": last}, {"dmu": dmu, "dquat": dquat, "dscale": dscale}),
    }


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["encoder", "spatial", "deformer"])
def test_parity_with_pytorch(export_dir, torch_models, name, precision):
    ins, refs = _inputs(torch_models, np.random.default_rng(5))[name]
    runner = open_runner(export_dir / f"{name}.{precision}.onnx", threads=1)
    assert runner.backend == "onnxruntime" and "device 'cpu'" in runner.reason
    outs = {k: np.full_like(v, np.nan) for k, v in refs.items()}  # NaN: a skipped write shows
    runner.bind(inputs=ins, outputs=outs)
    runner.run()
    for k, ref in refs.items():
        err = checks.relative_error(outs[k], ref)
        assert err <= TOL[precision], f"{name}.{precision} {k}: relative error {err:.2e}"


def test_specs_follow_the_contract(export_dir):
    r = open_runner(export_dir / "deformer.fp16.onnx")
    assert r.inputs == {
        "feat": TensorSpec((-1, 48), np.dtype(np.float32), ("N", "")),
        "code": TensorSpec((-1, 32), np.dtype(np.float32), ("B", "")),
    }
    assert set(r.outputs) == {"dmu", "dquat", "dscale"}
    assert r.outputs["dquat"].shape == (-1, -1, 4) and r.outputs["dquat"].axes == ("B", "N", "")


def _deformer_buffers(n=64, b=1):
    rng = np.random.default_rng(0)
    ins = {"feat": rng.standard_normal((n, 48)).astype(np.float32), "code": rng.standard_normal((b, 32)).astype(np.float32)}
    outs = {k: np.zeros((b, n, c), np.float32) for k, c in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    return ins, outs


def test_run_reads_bound_inputs_in_place(export_dir):
    r = open_runner(export_dir / "deformer.fp32.onnx", threads=1)
    ins, outs = _deformer_buffers()
    r.bind(inputs=ins, outputs=outs)
    first = outs["dmu"].copy()
    ins["code"][:] += 1.0  # the caller refills its buffer; no rebinding
    r.run()
    assert not np.allclose(outs["dmu"], first)
    ref = open_runner(export_dir / "deformer.fp32.onnx")
    o2 = {k: np.zeros_like(v) for k, v in outs.items()}
    ref.bind(inputs=ins, outputs=o2)
    np.testing.assert_array_equal(outs["dmu"], o2["dmu"])


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda i, o: i.__setitem__("feat", i["feat"].astype(np.float64)), "'feat' must be float32; got float64"),
        (lambda i, o: i.__setitem__("feat", np.zeros((64, 40), np.float32)), "'feat' axis 1 must be 48"),
        (lambda i, o: i.pop("code"), r"missing \['code'\]"),
        (lambda i, o: i.__setitem__("extra", i["code"]), r"unknown \['extra'\]"),
        (lambda i, o: o.__setitem__("dmu", np.zeros((1, 65, 3), np.float32)), r"'dmu' axis 1 \(N\) is 65, but another tensor gives N = 64"),
        (lambda i, o: o.__setitem__("dmu", np.zeros((2, 64, 3), np.float32)), r"'dmu' axis 0 \(B\) is 2"),
        (lambda i, o: i.__setitem__("feat", np.zeros((48, 64), np.float32).T), "C-contiguous"),
        (lambda i, o: i.__setitem__("feat", np.zeros((0, 48), np.float32)), "must be >= 1"),
        (lambda i, o: i.__setitem__("feat", [[0.0] * 48]), "expected a numpy or CuPy array; got list"),
    ],
)
def test_bind_refuses_bad_buffers(export_dir, mutate, match):
    r = open_runner(export_dir / "deformer.fp32.onnx")
    ins, outs = _deformer_buffers()
    mutate(ins, outs)
    with pytest.raises(InputError, match=match):
        r.bind(inputs=ins, outputs=outs)


def test_output_shape_the_model_cannot_produce(export_dir):
    """Encoder F is its own axis: only running tells whether it fits T; bind checks it."""
    r = open_runner(export_dir / "encoder.fp32.onnx")
    mel = np.zeros((1, 44 + 4 * 3, 80), np.float32)  # 4 codes
    with pytest.raises(InputError, match="do not fit the model"):
        r.bind(inputs={"mel": mel}, outputs={"code": np.zeros((1, 5, 32), np.float32)})
    with pytest.raises(BackendError, match="before run"):
        r.run()
    r.bind(inputs={"mel": mel}, outputs={"code": np.zeros((1, 4, 32), np.float32)})
    r.run()


def test_run_before_bind_and_after_close(export_dir):
    r = open_runner(export_dir / "deformer.fp32.onnx")
    with pytest.raises(BackendError, match="call bind"):
        r.run()
    r.close()
    ins, outs = _deformer_buffers()
    with pytest.raises(BackendError, match="closed"):
        r.bind(inputs=ins, outputs=outs)


def test_steady_state_run_allocates_nothing(export_dir):
    r = open_runner(export_dir / "deformer.fp16.onnx", threads=1)
    ins, outs = _deformer_buffers(n=256)
    r.bind(inputs=ins, outputs=outs)
    run = r.run
    for _ in range(50):  # warm-up
        run()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        m0 = tracemalloc.get_traced_memory()[0]
        for _ in range(1000):
            run()
        m1 = tracemalloc.get_traced_memory()[0]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [s for s in after.compare_to(before, "filename") if "huma_rt" in s.traceback[0].filename and s.size_diff > 0]
    assert ours == [], [str(s) for s in ours]
    # The loop itself (its counter) may hold a few bytes; 1000 runs must not add per-run memory.
    assert m1 - m0 < 512, f"traced memory grew by {m1 - m0} bytes over 1000 runs"


def test_threads_option_and_validation(export_dir):
    ins, outs1 = _deformer_buffers()
    outs2 = {k: np.zeros_like(v) for k, v in outs1.items()}
    r1 = open_runner(export_dir / "deformer.fp32.onnx", threads=1)
    r2 = open_runner(export_dir / "deformer.fp32.onnx", threads=2)
    assert r1._session.get_session_options().intra_op_num_threads == 1
    assert r2._session.get_session_options().intra_op_num_threads == 2
    r1.bind(inputs=ins, outputs=outs1)
    r2.bind(inputs=ins, outputs=outs2)
    np.testing.assert_allclose(outs1["dquat"], outs2["dquat"], rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="threads must be a positive integer"):
        open_runner(export_dir / "deformer.fp32.onnx", threads=0)


def test_idle_intra_op_threads_sleep(export_dir):
    # spinning onnxruntime threads held the renderer's OpenMP barriers on a 2-core CPU
    r = open_runner(export_dir / "deformer.fp32.onnx")
    opts = r._session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_fork_shares_the_session_with_own_bindings(export_dir):
    a = open_runner(export_dir / "deformer.fp32.onnx", threads=1)
    b = a.fork()
    assert b._session is a._session
    ins_a, outs_a = _deformer_buffers(n=32)
    ins_b, outs_b = _deformer_buffers(n=80, b=2)
    a.bind(inputs=ins_a, outputs=outs_a)
    b.bind(inputs=ins_b, outputs=outs_b)
    a.run()
    b.run()
    assert outs_b["dmu"].shape == (2, 80, 3)
    ref = {k: np.zeros_like(v) for k, v in outs_a.items()}
    open_runner(export_dir / "deformer.fp32.onnx").bind(inputs=ins_a, outputs=ref)
    np.testing.assert_array_equal(outs_a["dscale"], ref["dscale"])


def test_cpu_runner_refuses_non_numpy_device_arrays(export_dir):
    class DeviceArrayDouble:  # test double: stands for a CuPy array (no GPU here)
        def __init__(self, a):
            self.shape, self.dtype, self.flags = a.shape, a.dtype, {"C_CONTIGUOUS": True}

    r = open_runner(export_dir / "deformer.fp32.onnx")
    ins, outs = _deformer_buffers()
    ins["feat"] = DeviceArrayDouble(ins["feat"])
    with pytest.raises(InputError, match="must be one of numpy arrays for a cpu runner"):
        r.bind(inputs=ins, outputs=outs)


def test_gpu_providers_missing_is_a_clear_error(export_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has GPU providers")
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        open_runner(export_dir / "deformer.fp32.onnx", device="cuda")
    with pytest.raises(BackendError, match="not available"):
        open_runner(export_dir / "deformer.fp32.onnx", backend="onnxruntime", providers=["tensorrt"])
    with pytest.raises(InputError, match="providers must be among"):
        open_runner(export_dir / "deformer.fp32.onnx", providers=["rocm"])


def test_provider_options_for_gpu_providers():
    from huma_rt.backends.ort import OrtOptions, _provider_options

    opts = OrtOptions(trt_fp16=True, trt_cache_dir=None, device_id=1)
    assert _provider_options("CPUExecutionProvider", opts, 99) == {}
    assert _provider_options("CUDAExecutionProvider", opts, 99) == {"device_id": "1", "has_user_compute_stream": "1", "user_compute_stream": "99"}
    assert _provider_options("TensorrtExecutionProvider", opts, None) == {"device_id": "1", "trt_fp16_enable": "1"}


def test_tensorrt_ep_caches(tmp_path):
    from huma_rt.backends.ort import OrtOptions, _provider_options

    cache = tmp_path / "trt-ep"
    got = _provider_options("TensorrtExecutionProvider", OrtOptions(trt_cache_dir=str(cache)), None)
    assert got == {
        "device_id": "0", "trt_fp16_enable": "0",
        "trt_engine_cache_enable": "1", "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(cache),
    }  # fmt: skip
    assert cache.is_dir()
