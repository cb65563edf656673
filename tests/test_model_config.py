"""Model configs: JSON round trip, timing arithmetic, clear errors."""

from __future__ import annotations

import pytest

from huma_rt.errors import FormatError
from huma_rt.model_config import DeformerConfig, EncoderConfig, MelConfig


def test_timing_contract_defaults():
    cfg = EncoderConfig()
    assert cfg.samples_per_frame == 640
    assert cfg.mels_per_frame == 4
    assert cfg.receptive_mels == 4 * (8 + 1 + 2)
    # last mel frame of frame t+2 ends at 640t + 11*160 - 120 + 400 = 640t + 2040
    assert cfg.lookahead_samples == 2040 - 640
    assert MelConfig().left_pad == 120


def test_lookahead_is_configurable():
    assert EncoderConfig(lookahead_frames=0).lookahead_samples == 3 * 160 - 120 + 400 - 640
    assert EncoderConfig(lookahead_frames=1).receptive_mels == 4 * 10


def test_json_round_trip(tmp_path):
    cfg = EncoderConfig(code_dim=16, lookahead_frames=3)
    cfg.save(tmp_path / "enc.json")
    assert EncoderConfig.load(tmp_path / "enc.json") == cfg
    d = DeformerConfig(hidden=32)
    assert DeformerConfig.from_dict(d.to_dict()) == d


def test_bad_configs(tmp_path):
    with pytest.raises(FormatError, match="no fields"):
        EncoderConfig.from_dict({"code_dims": 3})
    with pytest.raises(FormatError, match="multiple of fps"):
        EncoderConfig(fps=23)
    with pytest.raises(FormatError, match="does not exist"):
        EncoderConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        EncoderConfig.load(tmp_path / "bad.json")
