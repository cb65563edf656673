"""Face tracking on the real FGNet clips: found, stable, articulation that follows the mouth and
the eyes, refused frames with their reasons, resume, the .npz round trip, the report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from _mp4 import write_mp4  # tests/_mp4.py

from huma_rt.errors import FormatError, InputError

pytest.importorskip("dlib")

from huma_rt.train.face_filter import one_euro  # noqa: E402
from huma_rt.train.face_matte import rasterize  # noqa: E402
from huma_rt.train.face_pose import intrinsics, project, solve_pnp  # noqa: E402
from huma_rt.train.face_template import MEAN_FACE, RIGID  # noqa: E402
from huma_rt.train.tracking import (  # noqa: E402
    TrackingConfig,
    TrackingError,
    check_tracks,
    track_frames,
    track_video,
)
from huma_rt.train.tracking_tracks import REASONS, Tracks  # noqa: E402
from huma_rt.train.video import open_video  # noqa: E402

FRAMES = 125  # 5 s of cap13: speech, an eye closure at ~4 s


@pytest.fixture(scope="module")
def cap13_frames(talking_video):
    return [f for _, _, f in itertools.islice(open_video(talking_video).frames(), FRAMES)]


@pytest.fixture(scope="module")
def cap13_tracks(talking_video):
    return track_video(talking_video, max_frames=FRAMES)


def _iod(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[42:48].mean(0) - points[36:42].mean(0)))


def test_face_found_in_nearly_every_frame(cap13_tracks, franck_video):
    assert len(cap13_tracks) == FRAMES
    assert cap13_tracks.valid.mean() >= 0.95, cap13_tracks.reasons()
    franck = track_video(franck_video, max_frames=72)  # a 3 s cut, another person and camera
    assert franck.valid.mean() >= 0.95, franck.reasons()
    assert franck.fps == 24.0 and franck.landmarks.shape == (72, 68, 2)


def test_smoothed_landmarks_are_stable(cap13_tracks):
    ok = cap13_tracks.valid
    assert ok.all()
    raw = cap13_tracks.landmarks_raw[:, RIGID].astype(np.float64)
    smooth = cap13_tracks.landmarks[:, RIGID].astype(np.float64)
    iod = _iod(cap13_tracks.landmarks[0])

    def jitter(x):  # second difference: shaking, not motion at constant speed
        return np.median(np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1)) / iod

    assert jitter(smooth) < 0.6 * jitter(raw)
    assert jitter(smooth) < 0.01  # under 1 % of the eye distance frame to frame
    assert np.abs(smooth - raw).mean() / iod < 0.03  # and still where the face is


def test_pose_fits_the_template(cap13_tracks):
    t = cap13_tracks
    assert np.isfinite(t.rotvec).all() and np.isfinite(t.translation).all()
    assert np.nanmedian(t.reprojection) < 0.08 * _iod(t.landmarks[0])  # one template for everyone
    assert np.abs(t.euler[:, 1]).max() < 20 and np.abs(t.euler[:, 2]).max() < 15  # frontal, upright
    # the head's distance follows its size in the image: ~63 mm between the eyes
    depth = t.intrinsics[0, 0] * 64.3 / _iod(t.landmarks[0])
    assert t.translation[0, 2] == pytest.approx(depth, rel=0.25)


def _dark_mouth_area(rgb: np.ndarray, points: np.ndarray) -> float:
    """Mouth opening measured without the inner-lip landmarks: dark pixels in a box around the
    outer lips, relative to the face's skin brightness."""
    lips = points[48:60]
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    pad = 0.2 * (x1 - x0)
    box = rgb[int(y0 - pad) : int(y1 + pad), int(x0) : int(x1)].astype(np.float64).mean(-1)
    nose = points[29].astype(int)
    skin = np.median(rgb[nose[1] - 3 : nose[1] + 3, nose[0] - 3 : nose[0] + 3].mean(-1))
    return float((box < 0.45 * skin).sum()) / (x1 - x0) ** 2


def test_jaw_follows_the_mouth_opening(cap13_tracks, cap13_frames):
    jaw = cap13_tracks.articulation_of("jaw")
    assert np.nanstd(jaw) > 0.1 and np.nanmax(jaw) - np.nanmin(jaw) > 0.4  # the person talks
    dark = np.array([_dark_mouth_area(f, p) for f, p in zip(cap13_frames, cap13_tracks.landmarks, strict=True)])
    r = np.corrcoef(jaw, dark)[0, 1]
    assert r > 0.7, r


def test_mouth_width_from_the_lips_colour_with_the_landmarks_as_fallback(cap13_tracks):
    from huma_rt.train.face_articulation import FEATURES
    from huma_rt.train.tracking import finish

    t = cap13_tracks
    measured = np.isfinite(t.mouth_width)
    assert measured.mean() >= 0.95
    corners = np.linalg.norm(t.landmarks_raw[:, 54] - t.landmarks_raw[:, 48], axis=1)
    ratio = t.mouth_width[measured] / corners[measured]
    assert 0.9 < np.median(ratio) < 1.4 and ratio.std() < 0.1, (np.median(ratio), ratio.std())  # the same lips
    raw = {k: getattr(t, k) for k in ("times", "boxes", "faces", "landmarks_raw", "spread", "lip_contrast",
                                      "mouth_width", "reason")}  # fmt: skip
    width = FEATURES.index("width")

    def widths(**options):
        return finish(raw, t.fps, t.width, t.height, TrackingConfig(**options)).features[:, width]

    landmark = widths(mouth_colour=False)
    np.testing.assert_array_equal(widths(min_colour_share=1.01), landmark)  # too few measured: fallback
    colour = widths()
    np.testing.assert_array_equal(colour, t.features[:, width])
    assert np.abs(colour - landmark).max() > 0.5  # the colour width is in use
    assert np.corrcoef(colour, landmark)[0, 1] > 0.5  # and follows the same mouth


def test_blinks_are_short_dips(cap13_tracks):
    for name in ("blink", "blink_left", "blink_right"):
        b = cap13_tracks.articulation_of(name)
        assert np.median(b) < 0.15, name  # eyes open most of the time
        closed = b > 0.5
        runs = np.diff(np.r_[0, closed.astype(int), 0])
        starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
        assert len(starts) >= 1, name
        assert ((ends - starts) / cap13_tracks.fps).max() < 1.0, name  # a blink, not a shut-eye stretch


def test_articulation_names_line_up_with_the_demo_avatar(cap13_tracks):
    from huma_rt.export.demo.articulation import PARAMS
    from huma_rt.train.face_articulation import ARTICULATION

    assert ARTICULATION[: len(PARAMS)] == PARAMS
    a = cap13_tracks.articulation
    assert a.dtype == np.float32 and a.shape == (FRAMES, len(ARTICULATION))
    assert (a[:, :5] >= 0).all() and (a[:, :5] <= 1).all()


def _black_face(rgb, pts):
    out = rgb.copy()
    (x0, y0), (x1, y1) = pts.min(0).astype(int), pts.max(0).astype(int)
    pad = (x1 - x0) // 5
    out[max(y0 - 2 * pad, 0) : y1 + pad, max(x0 - pad, 0) : x1 + pad] = 0
    return out


def _hand_over_mouth(rgb, pts):
    """Four fingers across the mouth from the side and a palm over the chin, in the person's skin
    colour (sampled on the forehead) with dark gaps between the fingers."""
    out = rgb.astype(np.float64).copy()
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    iod = _iod(pts)
    c = pts[48:68].mean(0)
    fy, fx = int(pts[27, 1] - 0.4 * iod), int(pts[27, 0])
    skin = np.median(rgb[fy - 3 : fy + 3, fx - 5 : fx + 5].reshape(-1, 3), 0) * 1.05
    mask = np.zeros((h, w), bool)
    shade = np.ones((h, w))
    for k in range(4):
        y0 = c[1] - 0.45 * iod + k * 0.32 * iod
        mask |= (np.abs(yy - y0) < 0.15 * iod) & (xx > c[0] - (1.1 - 0.1 * k) * iod) & (xx < c[0] + 1.6 * iod)
        shade[np.abs(yy - y0 - 0.15 * iod) < 0.03 * iod] = 0.6
    mask |= ((xx - c[0] - 1.3 * iod) / (0.9 * iod)) ** 2 + ((yy - c[1] - 0.6 * iod) / iod) ** 2 < 1
    out[mask] = (skin * shade[..., None])[mask]
    return out.clip(0, 255).astype(np.uint8)


def _finger_over_lips(rgb, pts):
    """A skin-coloured finger lying across the lips (the chin and jaw stay visible)."""
    out = rgb.copy()
    (x0, y0), (x1, y1) = pts[48:60].min(0), pts[48:60].max(0)
    pad = 0.25 * (x1 - x0)
    fy, fx = int(pts[27, 1] - 0.4 * _iod(pts)), int(pts[27, 0])
    skin = np.median(rgb[fy - 3 : fy + 3, fx - 5 : fx + 5].reshape(-1, 3), 0)
    out[int(y0 - 2) : int(y1 + 3), int(x0 - pad) : int(x1 + pad)] = skin.astype(np.uint8)
    return out


def test_hidden_face_and_hidden_mouth_are_refused(cap13_frames, cap13_tracks):
    frames = list(cap13_frames[:60])
    pts = cap13_tracks.landmarks_raw
    black, hand, finger = range(15, 20), range(30, 35), range(45, 50)
    for group, cover in ((black, _black_face), (hand, _hand_over_mouth), (finger, _finger_over_lips)):
        for i in group:
            frames[i] = cover(frames[i], pts[i])
    t = track_frames(frames, 25.0)
    reasons = t.reasons()
    assert [reasons[i] for i in black] == ["low_confidence"] * 5, reasons[13:22]
    assert all(reasons[i] in ("low_confidence", "mouth_occluded") for i in hand), reasons[28:37]
    # the finger leaves the face's outline alone: the lip-colour check is what refuses it
    assert all(reasons[i] in ("low_confidence", "mouth_occluded") for i in finger), reasons[43:52]
    assert sum(reasons[i] == "mouth_occluded" for i in finger) >= 3, reasons[43:52]
    touched = [*black, *hand, *finger]
    untouched = [i for i in range(60) if i not in touched]
    assert np.mean([reasons[i] == "ok" for i in untouched]) >= 0.9, reasons
    assert reasons[25] == "ok" and reasons[40] == "ok" and reasons[55] == "ok"  # the track recovers
    assert np.isnan(t.articulation[touched]).all()


def _two_faces(frames, start):
    """Frames on a double-width canvas: the clip on the left, from ``start`` the same frame again
    on the right (two people), before that the right half is the clip's wall colour."""
    out = []
    for i, f in enumerate(frames):
        right = f if i >= start else np.broadcast_to(np.median(f[:40, -40:].reshape(-1, 3), 0).astype(np.uint8), f.shape)
        out.append(np.concatenate([f, right], axis=1))
    return out


def test_two_faces_are_refused(cap13_frames):
    frames = _two_faces(cap13_frames[:36], start=15)
    t = track_frames(frames, 25.0, TrackingConfig(detect_every=1))
    assert t.reasons()[:15] == ["ok"] * 15
    assert t.reasons()[15:] == ["faces"] * 21
    assert (t.faces[15:] == 2).all()
    # by default detection runs every 12 frames while tracking: the second face is seen at the
    # first detection after it appears (frame 24) and from then on every frame is refused
    t = track_frames(frames, 25.0)
    assert t.reasons()[:24] == ["ok"] * 24 and t.reasons()[24:] == ["faces"] * 12


def test_resume_after_interruption_gives_the_same_tracks(talking_video, tmp_path):
    whole = track_video(talking_video, TrackingConfig(), max_frames=30)

    class Stop(Exception):
        pass

    def interrupt(stage, done, total, eta):
        if done >= 20:
            raise Stop

    def run(cfg, progress):
        return track_video(talking_video, cfg, max_frames=30, checkpoint=ckpt, progress=progress)

    ckpt = tmp_path / "track.ckpt.npz"
    cfg = TrackingConfig(checkpoint_every=10, log_every=5)  # same results, other bookkeeping
    with pytest.raises(Stop):
        run(TrackingConfig(checkpoint_every=10, log_every=5, detect_every=6), interrupt)
    seen = []
    run(cfg, lambda *a: seen.append(a[1]))
    assert seen[0] == 5  # a checkpoint of another config (detect_every) is not resumed
    assert not ckpt.exists()  # removed when the stage finished

    with pytest.raises(Stop):
        run(cfg, interrupt)
    assert ckpt.exists()
    seen.clear()
    resumed = run(cfg, lambda *a: seen.append(a[1]))
    assert seen[0] == 25  # went on from the checkpoint at frame 20, not from 0
    for name in ("landmarks_raw", "landmarks", "valid", "reason", "rotvec", "articulation", "matte",
                 "mouth_width"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(resumed, name), err_msg=name)


def _wall(n: int, h: int = 120, w: int = 160) -> list[np.ndarray]:
    return [np.full((h, w, 3), 128 + 10 * (i % 3), np.uint8) for i in range(n)]


def test_a_video_without_a_face_is_refused_by_the_probe_before_the_pass(tmp_path):
    video = write_mp4(tmp_path / "wall.mp4", _wall(260))  # 10.4 s
    ckpt, calls = tmp_path / "track.ckpt.npz", []
    with pytest.raises(TrackingError, match=r"tracked in 0 of 24 frames sampled across the video \(no face found: "
                                            r"24\); at least 50 % of the frames must be tracked"):  # fmt: skip
        track_video(video, checkpoint=ckpt, progress=lambda *a: calls.append(a), min_valid=0.5)
    assert calls == [] and not ckpt.exists()  # the pass never started
    # without the probe the pass refuses once more than half the frames (+1 % for the estimated
    # count) are refused: frame 132 of 260
    with pytest.raises(TrackingError, match=r"tracking stopped at frame 132 of 260: the face was refused in 132 "
                                            r"frames \(no face found: 132 frames\), so fewer than 50 %"):  # fmt: skip
        track_video(video, TrackingConfig(probe_frames=0), checkpoint=ckpt, min_valid=0.5)
    assert ckpt.exists()
    with pytest.raises(InputError, match="probe_frames"):
        TrackingConfig(probe_frames=-1)


def test_tracking_stops_once_min_valid_is_out_of_reach_and_resumes_under_a_lower_one(cap13_frames, tmp_path):
    # 5 s of a face, then 7 s of wall: the probe keeps 10 of its 24 frames and lets it pass; the
    # pass stops when the 152nd frame is refused (> 0.5 x 300 x 1.01), at frame 277 of 300
    video = write_mp4(tmp_path / "gone.mp4", cap13_frames + _wall(175, *cap13_frames[0].shape[:2]))
    ckpt = tmp_path / "track.ckpt.npz"
    seen = []

    def run(min_valid):
        seen.clear()
        return track_video(video, TrackingConfig(log_every=25), checkpoint=ckpt, min_valid=min_valid,
                           progress=lambda *a: seen.append(a[1]))  # fmt: skip

    # (the face is looked for where it was for hold_frames = 25 frames: hidden, then absent)
    with pytest.raises(TrackingError, match=r"stopped at frame 277 of 300: the face was refused in 152 frames "
                                            r"\(no face found: 127 frames, landmarks not held .*: 25 frames\)"):  # fmt: skip
        run(0.5)
    assert seen[-1] == 275 and ckpt.exists()
    with pytest.raises(TrackingError, match="stopped at frame 277 of 300"):  # resumed: refused at once
        run(0.5)
    assert seen == []
    tracks = run(0.4)  # 125 of 300 frames (42 %) are enough: the pass goes on from frame 277
    assert seen[0] == 300 and len(tracks) == 300 and not ckpt.exists()
    assert tracks.reasons()[125:] == ["low_confidence"] * 25 + ["no_face"] * 150
    assert tracks.valid[:125].mean() >= 0.95
    assert check_tracks(tracks, 0.4) is tracks


def test_tracks_round_trip_and_refuse_bad_files(cap13_tracks, tmp_path):
    path = tmp_path / "tracks.npz"
    cap13_tracks.save(path)
    back = Tracks.load(path)
    assert back.rest == cap13_tracks.rest and back.fps == cap13_tracks.fps
    for name in ("landmarks", "articulation", "matte", "reason", "valid", "intrinsics", "times", "mouth_width"):
        a, b = getattr(cap13_tracks, name), getattr(back, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    with np.load(path) as z:  # a file of schema 1 (before mouth_width) still loads
        old = {k: z[k] for k in z.files if k != "mouth_width"}
    meta = json.loads(str(old["meta"]))
    old["meta"] = np.array(json.dumps({**meta, "schema": 1}))
    np.savez(tmp_path / "old.npz", **old)
    assert np.isnan(Tracks.load(tmp_path / "old.npz").mouth_width).all()
    old["meta"] = np.array(json.dumps({**meta, "schema": 0}))
    np.savez(tmp_path / "older.npz", **old)
    with pytest.raises(FormatError, match="schema 0"):
        Tracks.load(tmp_path / "older.npz")
    path.write_bytes(b"junk")
    with pytest.raises(FormatError, match="not a tracks file"):
        Tracks.load(path)
    with pytest.raises(InputError, match="expected uint8"):
        track_frames([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 12, 3), np.uint8)], 25.0)


def test_matte_covers_the_face_and_not_the_background(cap13_tracks, cap13_frames):
    t = cap13_tracks
    m = rasterize(t.matte[0], t.height, t.width) > 0
    pts = t.landmarks[0].round().astype(int)
    assert m[pts[:, 1], pts[:, 0]].all()  # every landmark inside
    assert not m[:20].any() and not m[:, :60].any()  # the wall at the top and left
    forehead = (pts[27] - [0, int(1.2 * _iod(t.landmarks[0]))])
    assert m[forehead[1], forehead[0]]


def test_report_overlay(cap13_tracks, talking_video, tmp_path):
    from huma_rt.train.report_tracking import write_report

    pytest.importorskip("matplotlib")
    paths = write_report(cap13_tracks, talking_video, tmp_path / "report")
    assert [p.name for p in paths] == ["overlay.png", "articulation.png", "summary.json"]
    assert all(p.stat().st_size > 10_000 for p in paths[:2])


def test_pnp_recovers_a_known_pose():
    k = intrinsics(640, 480)
    rng = np.random.default_rng(3)
    for _ in range(5):
        r = rng.normal(0, 0.3, 3)
        t = np.array([rng.normal(0, 40), rng.normal(0, 40), rng.uniform(350, 900)])
        xy = project(MEAN_FACE, r, t, k) + rng.normal(0, 0.3, (68, 2))
        r2, t2, err = solve_pnp(MEAN_FACE[RIGID], xy[RIGID], k)
        assert np.abs(r2 - r).max() < 0.02 and np.abs(t2 - t).max() < 0.02 * t[2] and err < 0.6


def test_one_euro_removes_jitter_and_keeps_a_step():
    rng = np.random.default_rng(0)
    x = np.r_[np.zeros(50), np.ones(50)] + rng.normal(0, 0.01, 100)
    y = one_euro(x, 25.0, 2.0, 1.0)
    assert np.std(np.diff(y[5:45])) < 0.5 * np.std(np.diff(x[5:45]))
    assert y[53] > 0.8  # most of the step within 3 frames
    restart = one_euro(x, 25.0, 2.0, 1.0, valid=np.arange(100) != 60)
    assert restart[61] == x[61]  # a gap restarts the filter
    with pytest.raises(InputError):
        one_euro(x, 0.0, 2.0, 1.0)


def test_a_cut_is_refused_and_the_track_recovers(cap13_frames):
    # from frame 20 the picture jumps 30 px (~0.7 eye distances) sideways: the landmarks started
    # from the last frame's box no longer sit on features
    frames = cap13_frames[:20] + [np.roll(f, 30, axis=1) for f in cap13_frames[20:30]]
    t = track_frames(frames, 25.0)
    assert t.reasons()[:20] == ["ok"] * 20
    assert t.reasons()[20] in ("low_confidence", "jump")
    assert t.reasons()[21:] == ["ok"] * 9  # re-detected at once
    assert abs(np.nanmean(t.landmarks[25, :, 0] - t.landmarks[15, :, 0]) - 30) < 3


def test_a_video_without_a_face_is_refused(cap13_tracks):
    assert check_tracks(cap13_tracks) is cap13_tracks
    wall = [np.full((120, 160, 3), 128 + 10 * (i % 3), np.uint8) for i in range(12)]
    t = track_frames(wall, 25.0)
    assert t.reasons() == ["no_face"] * 12 and np.isnan(t.landmarks).all()
    with pytest.raises(TrackingError, match=r"tracked in 0 % of 12 frames.*no face found: 12 frames"):
        check_tracks(t)


def test_reasons_are_documented():
    from huma_rt.train.tracking_tracks import REASON_TEXT

    assert set(REASON_TEXT) == set(REASONS)


def test_rasterize_matches_matplotlib_on_simple_polygons():
    path_cls = pytest.importorskip("matplotlib.path").Path
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:60, :70] + 0.5
    for _ in range(20):  # star-shaped (simple) polygons, partly outside the image
        n = rng.integers(3, 25)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(5, 40, n)
        poly = np.c_[35 + r * np.cos(ang), 30 + r * np.sin(ang)] + rng.uniform(-0.4, 0.4, (n, 2))
        want = path_cls(poly).contains_points(np.c_[xx.ravel(), yy.ravel()]).reshape(60, 70)
        np.testing.assert_array_equal(rasterize(poly, 60, 70) > 0, want)
