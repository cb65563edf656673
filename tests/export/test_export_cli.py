"""``huma-rt export`` through the real CLI entry."""

from __future__ import annotations

import json

from huma_rt.export.checkpoint import save_checkpoint
from huma_rt.export.models import build_models

from huma_rt.cli import main
from huma_rt.model_config import DeformerConfig, EncoderConfig


def test_export_from_checkpoint_prints_table(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "ckpt", *build_models(EncoderConfig(channels=24, past_frames=2), DeformerConfig(), seed=5))
    out = tmp_path / "out"
    assert main(["export", "-o", str(out), "--checkpoint", str(ckpt), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "| deformer.fp16 | dscale |" in text and "NO |" not in text
    report = json.loads((out / "export_report.json").read_text())
    assert report["source"] == f"checkpoint {ckpt}" and report["seed"] == 3
    assert EncoderConfig.load(out / "encoder.json").past_frames == 2


def test_export_errors_exit_1(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["export", "-o", str(target)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert main(["export", "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_source_demo_checkpoint_then_random(tmp_path, monkeypatch, caplog):
    from huma_rt.export import onnx_export

    models = build_models(EncoderConfig(channels=8), DeformerConfig(hidden=8), seed=2)
    demo = save_checkpoint(tmp_path / "demo", *models)
    monkeypatch.setattr(onnx_export, "DEMO_CHECKPOINT_DIR", demo)
    (encoder, *_), source = onnx_export.resolve_models(None, seed=0)
    assert source == f"demo checkpoint {demo}" and encoder.cfg.channels == 8
    monkeypatch.setattr(onnx_export, "DEMO_CHECKPOINT_DIR", tmp_path / "empty")
    (encoder, *_), source = onnx_export.resolve_models(None, seed=4)
    assert source == "random init (seed 4)" and encoder.cfg == EncoderConfig()
    assert "seeded random weights" in caplog.text
