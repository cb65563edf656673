"""The evaluation's measures on signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from huma_rt.export.demo.evaluate import (  # noqa: E402
    audio_envelope,
    av_offset,
    lag_correlations,
    load_recording,
    mouth_box,
    pearson,
    pooled_offset,
    silence_ratio,
)


@pytest.mark.parametrize("shift", [-3, -1, 0, 1, 2, 4])
def test_av_offset_finds_a_known_shift(shift):
    rng = np.random.default_rng(shift + 10)
    env = np.convolve(rng.random(200), np.ones(4) / 4, "same")
    motion = np.roll(env, shift) + 0.05 * rng.random(200)  # video late by `shift` frames
    lag, corr = av_offset(motion, env)
    assert lag == shift and corr > 0.8
    curves = [lag_correlations(motion, env), lag_correlations(np.roll(env, shift), env)]
    assert pooled_offset(curves) == shift


def test_envelope_pearson_silence():
    audio = np.zeros(640 * 10, np.float32)
    audio[640 * 3:640 * 4] = 0.5
    env = audio_envelope(audio, 12)
    assert env.shape == (12,) and env[3] == pytest.approx(0.5) and env[[0, 10, 11]].max() == 0
    assert pearson([1, 2, 3], [2, 4, 6.5]) > 0.99 and np.isnan(pearson([1, 1], [1, 2]))
    energy = np.array([1.0, 1.0, 0.01, 0.03])
    speech = np.array([True, True, False, False])
    assert silence_ratio(energy, speech, ~speech) == pytest.approx(0.02)


def test_mouth_box_and_raw_recordings(tmp_path):
    y0, y1, x0, x1 = mouth_box()
    assert 180 < y0 < 250 < y1 < 360 and x0 < 256 < x1
    raw = (np.sin(np.arange(16000) / 10) * 1000).astype("<i2")
    raw.tofile(tmp_path / "a.raw")
    pcm = load_recording(tmp_path / "a.raw")
    assert pcm.dtype == np.float32 and pcm.size == 16000 and abs(pcm.max() - 1000 / 32768) < 1e-4
