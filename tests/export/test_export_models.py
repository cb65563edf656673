"""The model family: budgets, shapes, frame count, receptive field, log-mel twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from huma_rt.export.mel_torch import LogMel
from huma_rt.export.models import AudioEncoder, build_models, count_parameters

from huma_rt.audio.mel import log_mel
from huma_rt.errors import InputError
from huma_rt.model_config import DeformerConfig, EncoderConfig, MelConfig

# numpy and torch multiply by the same float32 matrices but accumulate in different orders;
# the log of near-floor bins magnifies that to ~2e-5 (measured on unit-variance noise).
MEL_ATOL = 5e-5


def test_parameter_budgets(models):
    encoder, spatial, deformer = models
    assert count_parameters(encoder) < 1_000_000
    assert count_parameters(spatial) + count_parameters(deformer) < 100_000


@pytest.mark.parametrize("scale", [1.0, 0.05, 1e-4, 0.0])
def test_numpy_mel_equals_torch_mel(scale):
    cfg = MelConfig()
    audio = (np.random.default_rng(7).standard_normal(12345) * scale).astype(np.float32)
    want = log_mel(audio, cfg)
    got = LogMel(cfg)(torch.from_numpy(audio)[None])[0].numpy()
    assert got.shape == want.shape == (1 + (12345 - 400) // 160, 80)
    np.testing.assert_allclose(got, want, rtol=0, atol=MEL_ATOL)


@pytest.mark.parametrize("n", [1, 639, 640, 641, 1400, 16000, 16001])
def test_encode_audio_frame_count_is_ceil(models, n):
    encoder = models[0]
    code = encoder.encode_audio(torch.zeros(2, n))
    assert code.shape == (2, -(-n // 640), 32)


def test_encode_audio_empty_and_bad_input(models):
    encoder = models[0]
    assert encoder.encode_audio(torch.zeros(1, 0)).shape == (1, 0, 32)
    with pytest.raises(InputError, match=r"\[B, S\] float32"):
        encoder.encode_audio(torch.zeros(16000))
    with pytest.raises(InputError, match="float32"):
        encoder.encode_audio(torch.zeros(1, 100, dtype=torch.float64))


@pytest.mark.parametrize("past,look", [(8, 2), (3, 1), (0, 0)])
def test_code_depends_exactly_on_its_window(past, look):
    """Code t changes with mel frames [4(t-P), 4(t+1+L)) of the padded mel and with nothing else."""
    torch.manual_seed(0)
    cfg = EncoderConfig(past_frames=past, lookahead_frames=look, channels=16)
    enc = AudioEncoder(cfg).eval()
    r = cfg.receptive_mels
    frames = 6
    mel = torch.randn(1, r + 4 * (frames - 1), 80) * 4 - 5
    with torch.no_grad():
        base = enc(mel)
        assert base.shape == (1, frames, 32)
        t = 3
        for m in range(mel.shape[1]):
            bumped = mel.clone()
            bumped[0, m] += 3.0
            changed = not torch.equal(enc(bumped)[0, t], base[0, t])
            assert changed == (4 * t <= m < 4 * t + r), m


def test_deformer_shapes_and_rest_pose(models):
    _, spatial, deformer = models
    means = torch.rand(500, 3) * 2 - 1
    with torch.no_grad():
        feat = spatial(means)
        dmu, dquat, dscale = deformer(feat, torch.randn(3, 32))
    assert feat.shape == (500, 48)
    assert dmu.shape == (3, 500, 3) and dquat.shape == (3, 500, 4) and dscale.shape == (3, 500, 3)
    # untrained deltas stay near the rest pose
    assert float(torch.cat([dmu, dquat, dscale], -1).abs().max()) < 0.1


def test_incompatible_configs_and_bbox():
    with pytest.raises(InputError, match="code_dim"):
        build_models(EncoderConfig(code_dim=16), DeformerConfig(code_dim=32))
    with pytest.raises(InputError, match="bbox"):
        build_models(EncoderConfig(), DeformerConfig(bbox_min=[0, 0, 0], bbox_max=[1, 0, 1]))


def test_flop_counts_match_the_architecture(models):
    """Counted FLOPs equal the closed form of the layers (2 per multiply-accumulate)."""
    from huma_rt.export.flops import model_costs

    encoder, spatial, deformer = models
    costs = model_costs(encoder, spatial, deformer, ns=(100, 300))
    h, layers, d = 48, 2, 32
    for n in (100, 300):
        assert costs["per_n"][n]["deformer_per_frame"] == n * (2 * h * h * layers + 2 * h * 10) + 2 * d * h
        assert costs["per_n"][n]["spatial_preload"] == n * 2 * (3 * 8) * h
    c, k = 128, 4
    outs = [11, 9, 7, 5, 3, 1]  # frame conv output length, then after each kernel-3 conv
    want = 2 * 80 * k * c * outs[0] + sum(2 * c * c * 3 * o for o in outs[1:]) + 2 * c * 32
    assert costs["encoder_per_frame_streaming"] == want
