"""``huma-rt build``: the TensorRT call sequence, sidecar, engine cache and timing cache.

TensorRT and a GPU cannot exist here: ``trt_builder_double`` (a TEST DOUBLE, labelled as such)
stands in for the ``tensorrt`` module, and the GPU probe / GPU properties are fixed values
(TEST DOUBLES). tests/backends has the @pytest.mark.gpu test that builds and runs for real.
"""

from __future__ import annotations

import json
import sys

import pytest
import trt_builder_double as double
from huma_rt.engines import build as build_mod
from huma_rt.engines.build import build_engines
from huma_rt.engines.cache import EngineCache, cache_key
from huma_rt.engines.plan import BuildFlags, make_plan
from huma_rt.engines.profiles import ProfileOptions

from huma_rt.backends import trt as backends_trt
from huma_rt.backends.sidecar import load_sidecar, sha256_file
from huma_rt.cli import main
from huma_rt.errors import FormatError, MissingDependencyError

GPU = ("NVIDIA L4", "8.9")


@pytest.fixture(params=["10.9.0.34", "11.0.0.12"])
def fake_trt(request, monkeypatch):
    """TEST DOUBLES: tensorrt 10.x or 11.x, a CUDA device present, and its properties."""
    mod = double.make_module(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    monkeypatch.setattr(build_mod, "has_module", lambda name: True)
    monkeypatch.setattr(build_mod, "has_cuda", lambda: True)
    monkeypatch.setattr(backends_trt, "gpu_info", lambda device_id=0: GPU)
    return mod


def _calls(name):
    return [c for c in double.CALLS if c[0] == name]


def test_build_follows_the_documented_api(exported_dir, tmp_path, fake_trt):
    plan = make_plan(exported_dir, out_dir=tmp_path / "plans", sizes=ProfileOptions(gaussians=5000, max_batch=2),
                     flags=BuildFlags(opt_level=4, workspace_mib=512))  # fmt: skip
    steps = []
    results = build_engines(plan, cache=EngineCache(tmp_path / "cache"), progress=lambda *a: steps.append(a))
    assert [r.model for r in results] == ["encoder", "deformer"] and not any(r.cache_hit for r in results)

    # strongly typed: the flag where TensorRT 10 has it; TensorRT 11 has none and needs none
    want_flags = 1 << 5 if fake_trt.__version__.startswith("10.") else 0
    assert _calls("create_network") == [("create_network", want_flags)] * 2
    # no precision builder flags at all (TensorRT 11 removed BuilderFlag.FP16)
    assert _calls("BuilderFlag") == [] and _calls("set_flag") == []
    # every dynamic input gets its profile, from the sizes asked for
    assert _calls("set_shape") == [
        ("set_shape", "mel", (1, 44, 80), (1, 44, 80), (2, 72, 80)),
        ("set_shape", "feat", (1, 48), (5000, 48), (5000, 48)),
        ("set_shape", "code", (1, 32), (1, 32), (2, 32)),
    ]
    assert _calls("set_memory_pool_limit") == [("set_memory_pool_limit", double.MemoryPoolType.WORKSPACE, 512 << 20)] * 2
    assert _calls("build_serialized_network") == [("build_serialized_network", 4)] * 2
    # timing cache: loaded (empty the first time), set, then read back and saved
    order = [c[0] for c in double.CALLS]
    assert order.index("create_timing_cache") < order.index("set_timing_cache") < order.index("build_serialized_network") < order.index("get_timing_cache")
    timing = tmp_path / "cache" / f"timing-trt{fake_trt.__version__}-sm89.cache"
    assert json.loads(timing.read_text()) == ["feat+code", "mel"]  # both builds' timings kept
    loaded = [c[1] for c in _calls("create_timing_cache")]
    assert loaded[0] == b"" and loaded[1] == b'["mel"]'  # the deformer build started from the encoder's
    assert _calls("TimingCache.combine")  # merged with what was on disk, under the file lock
    assert timing.with_name(timing.name + ".lock").exists()
    # progress reported
    assert ("Building engine", -1, 2) in steps and ("Building engine", 2, 2) in steps

    engine = json.loads(results[1].plan.read_bytes())
    assert engine["profiles"] == {"feat": [[1, 48], [5000, 48], [5000, 48]], "code": [[1, 32], [1, 32], [2, 32]]}


def test_sidecar_describes_the_build(exported_dir, tmp_path, fake_trt):
    plan = make_plan(exported_dir, out_dir=tmp_path / "plans", models=("deformer",), sizes=ProfileOptions(gaussians=700))
    (res,) = build_engines(plan, cache=EngineCache(tmp_path / "cache"))
    sc = load_sidecar(res.plan)
    assert res.plan == tmp_path / "plans" / "deformer.fp16.plan"
    assert (sc.trt_version, sc.gpu_name, sc.compute_capability, sc.precision) == (fake_trt.__version__, *GPU, "fp16")
    assert sc.onnx_file == "deformer.fp16.onnx" and sc.onnx_sha256 == sha256_file(exported_dir / "deformer.fp16.onnx")
    assert sc.plan_sha256 == sha256_file(res.plan)
    assert sc.profiles["feat"] == {"min": [1, 48], "opt": [700, 48], "max": [700, 48]}
    assert sc.flags == {"precision": "fp16", "strongly_typed": True, "builder_optimization_level": 3, "workspace_mib": 2048,
                        "profiles": sc.profiles}  # fmt: skip
    assert sc.build_time_s >= 0 and sc.built_at.endswith("Z")
    assert sc.trtexec.startswith("trtexec --onnx=") and "--stronglyTyped" in sc.trtexec
    assert "--maxShapes=feat:700x48,code:4x32" in sc.trtexec and "--timingCacheFile=" in sc.trtexec
    assert sc.extra["io"]["dmu"] == {"axes": ["B", "N", ""]}
    assert sc.cache_key == cache_key((exported_dir / "deformer.fp16.onnx").read_bytes(), sc.flags, fake_trt.__version__, GPU[1])


def test_second_build_is_a_cache_hit(exported_dir, tmp_path, fake_trt):
    cache = EngineCache(tmp_path / "cache")
    plan = make_plan(exported_dir, out_dir=tmp_path / "a", models=("deformer",))
    (first,) = build_engines(plan, cache=cache)
    n_builds = len(_calls("build_serialized_network"))
    plan_b = make_plan(exported_dir, out_dir=tmp_path / "b", models=("deformer",))
    (second,) = build_engines(plan_b, cache=cache)
    assert second.cache_hit and len(_calls("build_serialized_network")) == n_builds
    assert second.plan.read_bytes() == first.plan.read_bytes()
    assert load_sidecar(second.plan).cache_key == load_sidecar(first.plan).cache_key
    # another flag -> another key -> a real build
    plan_c = make_plan(exported_dir, out_dir=tmp_path / "c", models=("deformer",), flags=BuildFlags(opt_level=5))
    (third,) = build_engines(plan_c, cache=cache)
    assert not third.cache_hit and len(_calls("build_serialized_network")) == n_builds + 1
    # --no-cache always builds
    (fourth,) = build_engines(plan_b, cache=cache, use_cache=False)
    assert not fourth.cache_hit


def test_corrupt_cache_entry_is_rebuilt(exported_dir, tmp_path, fake_trt):
    cache = EngineCache(tmp_path / "cache")
    plan = make_plan(exported_dir, out_dir=tmp_path / "a", models=("deformer",))
    (first,) = build_engines(plan, cache=cache)
    cache.plan_path(first.sidecar.cache_key).write_bytes(b"truncated")
    (again,) = build_engines(plan, cache=cache)
    assert not again.cache_hit


def test_cli_build_with_the_double(exported_dir, tmp_path, fake_trt, capsys):
    args = ["build", str(exported_dir), "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"), "--gaussians", "1000"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "encoder: " in out.out and "deformer: " in out.out and "built in" in out.out
    assert "Building engine" in out.err  # progress on stderr
    assert main(args) == 0
    assert capsys.readouterr().out.count("cache hit") == 2


def test_cache_key_covers_every_input():
    base = cache_key(b"onnx", {"a": 1, "b": 2}, "10.9", "8.9")
    assert base == cache_key(b"onnx", {"b": 2, "a": 1}, "10.9", "8.9")  # key order does not matter
    assert len({base, cache_key(b"onnx!", {"a": 1, "b": 2}, "10.9", "8.9"), cache_key(b"onnx", {"a": 1, "b": 3}, "10.9", "8.9"),
                cache_key(b"onnx", {"a": 1, "b": 2}, "10.8", "8.9"), cache_key(b"onnx", {"a": 1, "b": 2}, "10.9", "9.0")}) == 5  # fmt: skip


def test_build_without_tensorrt_or_gpu_names_what_is_missing(exported_dir, tmp_path, capsys):
    pytest.importorskip("huma_rt")
    if "tensorrt" in sys.modules:
        pytest.skip("a tensorrt module is loaded")
    assert main(["build", str(exported_dir), "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "error: building TensorRT engines needs TensorRT" in err and "a CUDA GPU" in err
    assert not list(tmp_path.glob("*.plan"))
    with pytest.raises(MissingDependencyError):
        build_engines(make_plan(exported_dir, out_dir=tmp_path))


def test_a_plan_with_problems_is_never_built(exported_dir, tmp_path, fake_trt):
    plan = make_plan(exported_dir, out_dir=tmp_path, overrides=["feat:1x64,2x64,2x64"])
    with pytest.raises(FormatError, match="the build plan has problems"):
        build_engines(plan, cache=EngineCache(tmp_path / "cache"))
    assert _calls("Builder") == []


@pytest.mark.gpu
def test_real_build_twice_is_a_cache_hit(exported_dir, tmp_path, capsys):
    """On a machine with TensorRT and a GPU: the CLI builds both engines, then hits the cache."""
    pytest.importorskip("tensorrt")
    args = ["build", str(exported_dir), "-o", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c"),
            "--gaussians", "2048", "--max-batch", "2", "--opt-level", "1"]  # fmt: skip
    assert main(args) == 0
    assert "built in" in capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out.count("cache hit") == 2
    for name in ("encoder", "deformer"):
        sc = load_sidecar(tmp_path / "out" / f"{name}.fp16.plan")
        assert sc.precision == "fp16" and "--stronglyTyped" in sc.trtexec
    assert list((tmp_path / "c").glob("timing-*.cache"))
