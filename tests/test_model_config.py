"""Model configs: JSON round trip, timing arithmetic, clear errors."""

from __future__ import annotations

import json

import numpy as np
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


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: EncoderConfig(fps=0), r"\$\.fps must be >= 1; got 0"),  # old: ZeroDivisionError
        (lambda: EncoderConfig(mel=MelConfig(hop=0)), r"\$\.hop must be >= 1; got 0"),  # old: ZeroDivisionError
        (lambda: EncoderConfig(past_frames=10**6), r"\$\.past_frames must be <= 250"),  # old: accepted
        (lambda: EncoderConfig(fps=True), r"\$\.fps must be of type integer; got True"),  # old: accepted
        (lambda: EncoderConfig(code_dim="8"), r"\$\.code_dim must be of type integer; got '8'"),  # old: accepted
        (lambda: DeformerConfig(hidden=10**9), r"\$\.hidden must be <= 4096"),  # old: accepted
        (lambda: DeformerConfig(layers=0), r"\$\.layers must be >= 1"),
        (lambda: DeformerConfig(bbox_min=[0, 0]), r"\$\.bbox_min must have at least 3 items"),
        (lambda: DeformerConfig(bbox_min=[0, 0, 2]), "bbox_min must be < bbox_max"),
        (lambda: MelConfig(log_floor=0.0), r"\$\.log_floor must be > 0"),
        (lambda: MelConfig(fmax=9000.0), "fmax <= sample_rate / 2"),
        (lambda: MelConfig(hop=500), "hop 500 must be <= n_fft 400"),
        (lambda: EncoderConfig(mel=MelConfig(hop=2, n_fft=4)), "mel frames per second exceeds"),
        (lambda: EncoderConfig(mel="x"), "must be a MelConfig"),
    ],
)
def test_fields_are_validated(build, match):
    with pytest.raises(FormatError, match=match):
        build()


def test_from_dict_and_load_name_the_field(tmp_path):
    bad = {**EncoderConfig().to_dict(), "mel": {**MelConfig().to_dict(), "hop": 0}}
    with pytest.raises(FormatError, match=r"^EncoderConfig: field \$\.mel\.hop must be >= 1; got 0"):
        EncoderConfig.from_dict(bad)
    (tmp_path / "enc.json").write_text(json.dumps(bad))
    with pytest.raises(FormatError, match=r"config file .*enc\.json: field \$\.mel\.hop must be >= 1"):
        EncoderConfig.load(tmp_path / "enc.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(FormatError, match="must be a JSON object; got list"):
        DeformerConfig.load(tmp_path / "list.json")
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(FormatError, match="nests too deeply|too large a JSON document"):
        DeformerConfig.load(tmp_path / "deep.json")
    with pytest.raises(FormatError, match="lacks the required key"):
        DeformerConfig.from_dict({"code_dim": 8})


def test_numpy_numbers_are_stored_as_python_numbers():
    d = DeformerConfig(hidden=np.int64(32), bbox_min=list(np.float32([-1, -1, -1])))
    assert type(d.hidden) is int and all(type(v) is float for v in d.bbox_min)
    assert json.loads(json.dumps(d.to_dict())) == d.to_dict()
    assert EncoderConfig.from_dict(EncoderConfig(fps=np.int32(50)).to_dict()).fps == 50


def test_config_errors_are_format_and_input_errors(tmp_path):
    """A config built in code with bad values is bad input; one read from a file is a bad file:
    the same ConfigError answers to both (export catches InputError, the bundle FormatError)."""
    from huma_rt.errors import ConfigError, InputError

    with pytest.raises(ConfigError) as built:
        DeformerConfig(bbox_min=[0, 0, 2])
    (tmp_path / "d.json").write_text(json.dumps({**DeformerConfig().to_dict(), "bbox_min": [0, 0, 2]}))
    with pytest.raises(ConfigError) as loaded:
        DeformerConfig.load(tmp_path / "d.json")
    for err in (built.value, loaded.value):
        assert isinstance(err, FormatError) and isinstance(err, InputError)
