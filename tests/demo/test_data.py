"""Lip-sync data: code embedding, augmentation, utterances from espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.export.demo import augment
from huma_rt.export.demo.codes import CODE_SCALE, codes_to_params, embedding, params_to_codes
from huma_rt.export.demo.corpus import HELD_OUT_SENTENCES, HELD_OUT_VOICES, VOCABULARY, random_voice
from huma_rt.export.demo.data import SAMPLES_PER_FRAME, augmented, make_utterance, random_utterance

from huma_rt.errors import InputError


def test_embedding_round_trip():
    e = embedding(32, seed=0)
    assert e.shape == (32, 5)
    np.testing.assert_allclose(e.T @ e, CODE_SCALE**2 * np.eye(5), atol=1e-5)
    np.testing.assert_array_equal(e, embedding(32, seed=0))
    p = np.random.default_rng(0).uniform(0, 1, (7, 5)).astype(np.float32)
    np.testing.assert_allclose(codes_to_params(params_to_codes(p, e), e), p, atol=1e-5)
    with pytest.raises(InputError, match="code_dim"):
        embedding(4)


def test_utterance_targets_follow_the_speech():
    u = make_utterance("Bob ate a map.", "en-us", rate=160, pitch=50, lead_s=0.5, tail_s=0.5)
    assert u.audio.dtype == np.float32 and u.audio.size % SAMPLES_PER_FRAME == 0
    frames = u.audio.size // SAMPLES_PER_FRAME
    assert u.targets.shape == (frames, 4) and u.speech.shape == (frames,)
    assert u.targets[:5].max() < 0.05 and u.targets[-5:].max() < 0.05  # padded silence: rest
    assert u.targets[u.speech, 0].max() > 0.6 and u.targets[u.speech, 3].max() > 0.7
    # audio energy sits where the speech mask says
    rms = np.sqrt((u.audio.reshape(frames, -1) ** 2).mean(1))
    assert rms[u.speech].mean() > 20 * rms[~u.speech].mean() + 1e-9


def test_augmentation_keeps_length_and_range():
    rng = np.random.default_rng(0)
    u = random_utterance(rng)
    for _ in range(4):
        a = augmented(u, rng)
        assert a.audio.shape == u.audio.shape and np.isfinite(a.audio).all()
        assert np.abs(a.audio).max() <= 1.0
        np.testing.assert_array_equal(a.targets, u.targets)
    x = u.audio
    noisy = augment.noise(x, np.random.default_rng(1))
    assert np.std(noisy - x) > 0
    wet = augment.reverb(x, 16000, np.random.default_rng(2))
    assert wet.shape == x.shape and not np.allclose(wet, x)


def test_held_out_split_is_disjoint():
    rng = np.random.default_rng(0)
    train_voices = {random_voice(rng) for _ in range(500)}
    assert not train_voices & set(HELD_OUT_VOICES)
    assert len(VOCABULARY) > 300 and len(HELD_OUT_SENTENCES) >= 10
