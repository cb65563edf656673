"""The model repository writer and its validation (no server needed)."""

from __future__ import annotations

import json
import shutil

import pytest

from huma_rt.cli import main as cli_main
from huma_rt.errors import FormatError, InputError
from huma_rt.triton.config import parse_config
from huma_rt.triton.repo import RepoOptions, resolve_source, validate_repository, write_repository


def test_cpu_repository_parses_and_agrees_with_onnx(cpu_repo, export_dir):
    configs = validate_repository(cpu_repo)
    assert sorted(configs) == ["avatar_deformer", "avatar_frame", "avatar_stream", "deformer", "deformer_step", "deformer_stream", "encoder", "encoder_stream", "spatial"]
    enc = configs["encoder"]
    assert enc.backend == "python" and enc.max_batch_size == 8
    assert enc.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(i.name, list(i.dims)) for i in enc.input] == [("mel", [-1, 80])]
    assert enc.parameters["EXECUTION_ENV_PATH"].string_value.endswith(".venv-triton")
    assert (cpu_repo / "encoder" / "1" / "model.py").is_file()
    assert (cpu_repo / "encoder" / "1" / "encoder.fp32.onnx").read_bytes() == (export_dir / "encoder.fp32.onnx").read_bytes()
    stream = configs["encoder_stream"]
    kinds = {c.name: c.control[0].kind for c in stream.sequence_batching.control_input}
    assert set(kinds) == {"START", "END", "CORRID"}
    assert stream.sequence_batching.max_sequence_idle_microseconds > 0
    ens = configs["avatar_frame"]
    assert ens.platform == "ensemble"
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["encoder", "deformer_step"]
    step = configs["deformer_step"]
    code = next(i for i in step.input if i.name == "code")
    assert list(code.dims) == [1, 1, 16] and list(code.reshape.shape) == [1, 16]
    manifest = json.loads((cpu_repo / "huma_rt_repo.json").read_text())
    assert manifest["target"] == "cpu" and manifest["encoder"]["code_dim"] == 16


def test_gpu_repository_uses_plans_where_present_else_onnx_with_trt_fp16(export_dir, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(export_dir, bundle / "models")  # the bundle layout of huma_rt.bundle
    # Test double: TensorRT cannot build a plan here (no GPU); the writer only copies the bytes.
    (bundle / "models" / "encoder.fp16.plan").write_bytes(b"stand-in for a TensorRT plan")
    repo = write_repository(tmp_path / "repo", resolve_source(bundle=bundle), RepoOptions(target="gpu"))
    configs = validate_repository(repo)
    assert configs["encoder"].platform == "tensorrt_plan"
    assert (repo / "encoder" / "1" / "model.plan").read_bytes() == b"stand-in for a TensorRT plan"
    dfm = configs["deformer"]
    assert dfm.platform == "onnxruntime_onnx"
    acc = dfm.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc[0].name == "tensorrt" and acc[0].parameters["precision_mode"] == "FP16"
    assert dfm.instance_group[0].kind == 1  # KIND_GPU
    assert (repo / "deformer" / "1" / "model.onnx").read_bytes() == (export_dir / "deformer.fp16.onnx").read_bytes()
    assert configs["encoder_stream"].backend == "python"
    assert "EXECUTION_ENV_PATH" not in configs["encoder_stream"].parameters


def _copy(repo, tmp_path):
    out = tmp_path / "edited"
    shutil.copytree(repo, out)
    return out


def test_validation_catches_shape_name_and_ensemble_errors(cpu_repo, tmp_path):
    bad = _copy(cpu_repo, tmp_path)
    cfg = bad / "spatial" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("dims: 3", "dims: 4", 1))
    with pytest.raises(FormatError, match=r"spatial/config.pbtxt: input means is TYPE_FP32 \[-1, 4\] but the ONNX model spatial.fp32.onnx has TYPE_FP32 \[-1, 3\]"):
        validate_repository(bad)

    bad = _copy(cpu_repo, tmp_path / "b")
    cfg = bad / "deformer" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace('name: "dquat"', 'name: "rotation"'))
    with pytest.raises(FormatError, match=r"outputs \['dmu', 'dscale', 'rotation'\] differ from the ONNX model's"):
        validate_repository(bad)

    bad = _copy(cpu_repo, tmp_path / "c")
    shutil.rmtree(bad / "deformer_step")
    with pytest.raises(FormatError, match="ensemble avatar_frame uses model 'deformer_step', which is not in"):
        validate_repository(bad)

    bad = _copy(cpu_repo, tmp_path / "d")
    cfg = bad / "encoder" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("max_batch_size: 8", "max_batch_size: eight"))
    with pytest.raises(FormatError, match="encoder/config.pbtxt is not a valid Triton model config"):
        validate_repository(bad)

    bad = _copy(cpu_repo, tmp_path / "e")
    (bad / "spatial").rename(bad / "spatial2")
    with pytest.raises(FormatError, match="names model 'spatial' but lives in folder 'spatial2'"):
        parse_config(bad / "spatial2" / "config.pbtxt")


def test_source_and_option_errors(export_dir, tmp_path):
    with pytest.raises(InputError, match="exactly one of --bundle or --export-dir"):
        resolve_source()
    with pytest.raises(InputError, match="does not exist"):
        resolve_source(export_dir=tmp_path / "nope")
    with pytest.raises(FormatError, match="holds no export"):
        resolve_source(bundle=tmp_path)
    with pytest.raises(InputError, match="target must be 'cpu' or 'gpu', got 'tpu'"):
        RepoOptions(target="tpu")
    out = tmp_path / "occupied"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a huma-rt model repository"):
        write_repository(out, resolve_source(export_dir=export_dir), RepoOptions(target="gpu"), overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me"


def test_cli_writes_checks_and_reports_errors(export_dir, tmp_path, capsys):
    out = tmp_path / "repo"
    assert cli_main(["triton-repo", "--export-dir", str(export_dir), "-o", str(out), "--target", "gpu"]) == 0
    assert "avatar_frame" in capsys.readouterr().out
    assert cli_main(["triton-repo", "--check", str(out)]) == 0
    assert "8 models valid" in capsys.readouterr().out
    assert cli_main(["triton-repo", "--export-dir", str(export_dir), "-o", str(out)]) == 1
    assert "exists and is not empty" in capsys.readouterr().err
    assert cli_main(["triton-repo", "--export-dir", str(export_dir), "-o", str(out), "--force", "--target", "gpu", "--precision", "fp32"]) == 0
    assert (out / "encoder" / "1" / "model.onnx").read_bytes() == (export_dir / "encoder.fp32.onnx").read_bytes()
    assert cli_main(["triton-repo", "--bundle", str(tmp_path / "missing"), "-o", str(tmp_path / "x")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_tar_bundle_is_read_without_extracting_paths(export_dir, tmp_path):
    import tarfile

    tar_path = tmp_path / "avatar.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in sorted(export_dir.iterdir()):
            tar.add(f, arcname=f"models/{f.name}")
    source = resolve_source(bundle=tar_path)
    repo = write_repository(tmp_path / "repo", source, RepoOptions(target="gpu", precision="fp32"))
    assert (repo / "spatial" / "1" / "model.onnx").read_bytes() == (export_dir / "spatial.fp32.onnx").read_bytes()
    (tmp_path / "not.tar").write_bytes(b"plain bytes")
    with pytest.raises(InputError, match="is a file; expected a bundle"):
        resolve_source(bundle=tmp_path / "not.tar")
