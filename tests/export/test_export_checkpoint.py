"""Checkpoints: round trip, and clear errors for every way a checkpoint can be wrong."""

from __future__ import annotations

import json

import pytest
import torch
from huma_rt.export.checkpoint import load_checkpoint, save_checkpoint
from huma_rt.export.models import build_models
from safetensors.torch import load_file, save_file

from huma_rt.errors import FormatError, InputError
from huma_rt.model_config import DeformerConfig, EncoderConfig


@pytest.fixture()
def ckpt(tmp_path):
    models = build_models(EncoderConfig(channels=32), DeformerConfig(hidden=16), seed=3)
    return save_checkpoint(tmp_path / "ckpt", *models), models


def test_round_trip(ckpt):
    path, (encoder, spatial, deformer) = ckpt
    assert sorted(p.name for p in path.iterdir()) == ["deformer.json", "encoder.json", "model.safetensors"]
    enc2, sp2, def2, enc_cfg, def_cfg = load_checkpoint(path)
    assert enc_cfg == encoder.cfg and def_cfg == deformer.cfg
    audio, means = torch.randn(1, 5000) * 0.1, torch.rand(20, 3)
    with torch.no_grad():
        assert torch.equal(enc2.encode_audio(audio), encoder.encode_audio(audio))
        assert torch.equal(sp2(means), spatial(means))
        code = torch.randn(2, 32)
        for a, b in zip(def2(sp2(means), code), deformer(spatial(means), code), strict=True):
            assert torch.equal(a, b)


def test_missing_folder_and_files(tmp_path, ckpt):
    path, _ = ckpt
    with pytest.raises(FormatError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (path / "deformer.json").unlink()
    with pytest.raises(FormatError, match="no deformer.json"):
        load_checkpoint(path)


@pytest.mark.parametrize("damage", [b"", b"garbage" * 50, "truncate"])
def test_corrupt_weights(ckpt, damage):
    path, _ = ckpt
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else damage)
    with pytest.raises(FormatError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_config_that_does_not_match_the_weights(ckpt):
    path, _ = ckpt
    cfg = json.loads((path / "encoder.json").read_text())
    cfg["channels"] = 64
    (path / "encoder.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match=r"encoder\.frame_conv\.weight has shape \(32, 80, 4\).*\(64, 80, 4\)"):
        load_checkpoint(path)


def test_config_with_fewer_layers_than_the_weights(ckpt):
    path, _ = ckpt
    cfg = json.loads((path / "deformer.json").read_text())
    cfg["layers"] = 1
    (path / "deformer.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError, match=r"unexpected tensors \['deformer\.hidden\.1\.bias', 'deformer\.hidden\.1\.weight'\]"):
        load_checkpoint(path)


def test_bad_json_and_mismatched_code_dim(ckpt):
    path, _ = ckpt
    good = (path / "encoder.json").read_text()
    (path / "encoder.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_checkpoint(path)
    (path / "encoder.json").write_text(good.replace('"code_dim": 32', '"code_dim": 16'))
    with pytest.raises(FormatError, match="code_dim"):
        load_checkpoint(path)


def test_nan_and_missing_tensor(ckpt):
    path, _ = ckpt
    tensors = load_file(str(path / "model.safetensors"))
    tensors["deformer.head.bias"][0] = float("nan")
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(FormatError, match="NaN"):
        load_checkpoint(path)
    del tensors["spatial.planes"]
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(FormatError, match=r"missing tensors \['spatial\.planes'\]"):
        load_checkpoint(path)


def test_output_folder_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    models = build_models(EncoderConfig(channels=8), DeformerConfig(), seed=0)
    with pytest.raises(InputError, match="not a folder"):
        save_checkpoint(target, *models)
