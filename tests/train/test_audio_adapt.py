"""The audio path (train/audio_adapt.py) on espeak-ng speech whose articulation is known exactly:
resampling to the code timeline, adaptation to a person's own articulation, the guard that keeps
the demo encoder when adaptation does not help, masked unknown frames, the streaming contract."""

from __future__ import annotations

import numpy as np
import pytest
from _espeak import needs_libespeak  # tests/_espeak.py

from huma_rt.errors import InputError

pytest.importorskip("torch")

from huma_rt.train.audio_adapt import (  # noqa: E402
    AudioAdaptConfig,
    adapt_encoder,
    encoder_params,
    holdout_mask,
    load_demo_encoder,
    resample_params,
    split_frames,
)

SPF = 640



@pytest.fixture(scope="module")
def demo():
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint

    if not is_checkpoint(DEMO_CHECKPOINT_DIR):
        pytest.skip("no shipped demo weights")
    return load_demo_encoder()


@pytest.fixture(scope="module")
def speech():
    """~16 s of espeak-ng speech (6 held-out sentences, training voices) and its exact viseme
    targets as demo-scale params [F, 5] (blink 0)."""
    from huma_rt.export.demo.corpus import HELD_OUT_SENTENCES, TRAIN_VOICES
    from huma_rt.export.demo.data import make_utterance

    needs_libespeak()
    utts = [make_utterance(s, TRAIN_VOICES[i % 3], rate=165, pitch=50) for i, s in enumerate(HELD_OUT_SENTENCES[:6])]
    pcm = np.concatenate([u.audio for u in utts])
    targets = np.concatenate([u.targets for u in utts])
    return pcm, np.concatenate([targets, np.zeros((len(targets), 1), np.float32)], 1)


def test_resample_params_to_the_code_timeline():
    times = np.arange(48) / 24.0  # 2 s of a 24 fps video
    params = np.stack([times + k for k in range(5)], 1)
    out = resample_params(params, times, 50)
    assert out.shape == (50, 5) and out.dtype == np.float32
    inside = np.arange(50) / 25.0 <= times[-1]
    np.testing.assert_allclose(out[inside], (np.arange(50)[inside, None] / 25.0 + np.arange(5)), atol=1e-5)
    assert np.isnan(out[~inside]).all()  # after the last video frame nothing is known
    params[10] = np.nan  # a frame where tracking failed
    out = resample_params(params, times, 50)
    hole = np.flatnonzero(np.isnan(out[:, 0]) & inside)
    assert hole.size and np.all(np.abs(hole / 25.0 - 10 / 24.0) < 1 / 24.0)  # only codes next to it
    same = resample_params(params[:, :2], np.arange(48) / 25.0, 48)
    np.testing.assert_array_equal(np.isnan(same[:, 0]), np.isnan(params[:, 0]))  # 25 fps: identity
    with pytest.raises(InputError, match="times"):
        resample_params(params, times[:-1], 50)


def test_holdout_blocks_are_a_fifth_split_in_validation_and_test():
    held = holdout_mask(500, 25, 2.0, 5)
    assert held.mean() == pytest.approx(0.2) and not held[:50].any() and held[50:100].all()
    train, val, test = split_frames(500, 25, 1.0, 5)
    assert (train ^ val ^ test).all() and not (val & test).any()  # a partition
    assert val[25:50].all() and test[150:175].all() and val[275:300].all()  # alternating held-out blocks
    assert val.sum() == test.sum() == 50


def test_adaptation_learns_a_persons_own_articulation(demo, speech):
    """A 'person' who rounds where the demo spreads and spreads where it rounds: the demo encoder
    gets those two wrong; adapting on 80 % of the speech fixes them on the held-out 20 %."""
    pcm, params = speech
    person = params[:, [0, 2, 1, 3, 4]].copy()
    person[100:160] = np.nan  # tracking failed here: unknown, not zero
    result = adapt_encoder(demo, pcm, person, AudioAdaptConfig(steps=400, lr=1e-3, block_s=1.0))
    m = result.metrics
    known = int(np.isfinite(person[:, 0]).sum())
    assert m["train_frames"] + m["held_out_frames"] == known
    assert result.adapted and result.encoder is not demo, m["reason"]
    for name in ("round", "spread"):
        assert m["r_after"][name] > m["r_before"][name] + 0.2, (name, m["r_before"], m["r_after"])
    assert m["r_after"]["jaw"] > 0.8  # what was right stays right
    assert m["score_after"] > m["score_before"]
    # the original is untouched
    np.testing.assert_array_equal(encoder_params(demo, pcm[: 50 * SPF]), encoder_params(load_demo_encoder(), pcm[: 50 * SPF]))
    # only weights changed: a prefix encodes to the same codes as the whole clip (valid convs,
    # same lookahead), so streaming still equals one-shot
    enc = result.encoder
    assert enc.cfg == demo.cfg
    full = encoder_params(enc, pcm)
    part = encoder_params(enc, pcm[: 120 * SPF])
    look = enc.cfg.lookahead_frames
    np.testing.assert_allclose(part[: 120 - look], full[: 120 - look], atol=1e-5)
    assert not np.allclose(part[120 - look:], full[120 - look:120], atol=1e-5)  # the lookahead is really used


def test_guard_keeps_the_demo_encoder_when_adaptation_cannot_help(demo, speech):
    pcm, params = speech
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 1, params.shape).astype(np.float32)  # articulation unrelated to the sound
    result = adapt_encoder(demo, pcm, noise, AudioAdaptConfig(steps=150, eval_every=25, patience=2))
    assert not result.adapted and result.encoder is demo, result.metrics
    assert "kept the demo encoder" in result.metrics["reason"]


def test_the_demo_encoder_is_kept_on_its_own_training_truth(demo, speech):
    """Targets the demo encoder was trained for (exact viseme timing): nothing to gain."""
    pcm, params = speech
    result = adapt_encoder(demo, pcm, params, AudioAdaptConfig(steps=100, patience=2))
    assert result.metrics["r_before"]["jaw"] > 0.9
    assert not result.adapted and result.encoder is demo, result.metrics["reason"]


def test_too_little_known_speech_is_not_adapted(demo, speech):
    pcm, params = speech
    few = np.full_like(params, np.nan)
    few[:40] = params[:40]
    result = adapt_encoder(demo, pcm, few)
    assert not result.adapted and result.encoder is demo and "too few" in result.metrics["reason"]


def test_bad_input_is_refused(demo, speech):
    pcm, params = speech
    with pytest.raises(InputError, match="pcm"):
        adapt_encoder(demo, pcm.astype(np.float64), params)
    with pytest.raises(InputError, match=r"\[F, 5\]"):
        adapt_encoder(demo, pcm, params[:-1])
    with pytest.raises(InputError, match="holdout_every"):
        AudioAdaptConfig(holdout_every=1)
    with pytest.raises(InputError, match="steps"):
        AudioAdaptConfig(steps=0)
