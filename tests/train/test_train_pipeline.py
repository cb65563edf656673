"""``huma-rt train`` (train/pipeline.py, cli.py, report.py, progress.py): the whole chain on a
closed-loop clip of the demo avatar (video -> bundle -> rendered speech), resume after an
interruption, changed options, and the videos that must be refused with one clear line."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
from _mp4 import write_mp4  # tests/_mp4.py

pytest.importorskip("torch")
pytest.importorskip("dlib")
pytest.importorskip("matplotlib")

from huma_rt.train import pipeline_stages  # noqa: E402
from huma_rt.train.pipeline import STAGES, TrainConfig, TrainError, train_avatar, work_paths  # noqa: E402
from huma_rt.train.pipeline_work import WorkFolder  # noqa: E402
from huma_rt.train.progress import StageProgress, TerminalBar  # noqa: E402
from huma_rt.train.tracking import TrackingError  # noqa: E402
from huma_rt.train.video import VideoError  # noqa: E402

from huma_rt.bundle import open_bundle  # noqa: E402
from huma_rt.errors import HumaError  # noqa: E402

CLIP_S = 10.4  # the reader's minimum is 10 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 10.4 s talking clip of the demo avatar (video with speech, speech.wav, truth)."""
    from huma_rt.train.synthetic import SyntheticConfig, make_synthetic

    out = tmp_path_factory.mktemp("clip")
    make_synthetic(SyntheticConfig(duration_s=CLIP_S, seed=3, threads=1), out)
    return out


@pytest.fixture(scope="module")
def silent_clip(clip, tmp_path_factory):
    """The same video stream without its audio track (packets copied: the same frames)."""
    import av

    out = tmp_path_factory.mktemp("silent") / "silent.mp4"
    with av.open(str(clip / "video.mp4")) as src, av.open(str(out), "w") as dst:
        s = src.streams.video[0]
        d = dst.add_stream_from_template(s)
        for packet in src.demux(s):
            if packet.dts is None:
                continue
            packet.stream = d
            dst.mux(packet)
    return out


@pytest.fixture(scope="module")
def trained_run(clip, tmp_path_factory):
    """``huma-rt train video.mp4 -o me.bundle --preset quick`` through the CLI, uninterrupted:
    (the bundle, what the command printed on stderr)."""
    import contextlib
    import io

    from huma_rt.cli import main

    out = tmp_path_factory.mktemp("run") / "me.bundle"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["train", str(clip / "video.mp4"), "-o", str(out), "--preset", "quick", "--no-progress"])
    assert rc == 0, err.getvalue()
    return out, err.getvalue()


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run[0]


def test_cli_ends_with_commands_that_work(trained_run, tmp_path):
    """The last lines name what to do with the bundle; the render command runs as printed
    (its output name moved into tmp_path)."""
    import shlex

    from huma_rt.cli import main

    bundle, err = trained_run
    lines = err.splitlines()
    render = next(line for line in lines if line.startswith("next: huma-rt render"))
    argv = shlex.split(render)[2:]  # past "next:" and "huma-rt"
    assert argv[:3] == ["render", "--bundle", str(bundle)] and "--text" in argv, argv
    argv[argv.index("-o") + 1] = str(tmp_path / "hello.mp4")
    assert main(argv) == 0 and (tmp_path / "hello.mp4").stat().st_size > 10000
    assert lines[lines.index(render) + 1].split() == ["huma-rt", "serve", "--bundle", str(bundle)]


def _events(sink: list):
    return lambda rec: sink.append(rec)


@pytest.mark.slow
def test_cli_trains_a_bundle_that_speaks(trained, clip, tmp_path):
    work, report = work_paths(trained)
    assert trained.is_dir() and work.is_dir() and report.is_dir()
    state = json.loads((work / "stages.json").read_text())
    assert list(state["stages"]) == list(STAGES)
    # the bundle loads in the runtime and renders new speech with a moving mouth
    from matplotlib.pyplot import imread

    from huma_rt.cli import main as huma_rt
    from huma_rt.runtime import Avatar

    avatar = Avatar.load(trained, device="cpu")
    assert avatar.fps == 25
    pngs = tmp_path / "frames"
    assert huma_rt(["render", "--bundle", str(trained), "--wav", str(clip / "speech.wav"), "--png-dir", str(pngs),
                    "--threads", "1"]) == 0  # fmt: skip
    frames = sorted(pngs.glob("frame_*.png"))
    assert len(frames) == round(CLIP_S * 25)
    imgs = np.stack([imread(p)[..., :3] * 255.0 for p in frames])
    speaking = np.load(clip / "truth.npz")["speaking"]  # the same speech drove the clip
    rest = np.median(imgs[~speaking], 0)
    moved = np.abs(imgs - rest).max(-1).reshape(len(imgs), -1).max(1)  # the most a pixel moved
    assert moved[speaking].mean() > 5.0 and moved[speaking].mean() > 5 * moved[~speaking].mean(), (
        f"the mouth does not follow speech: speaking {moved[speaking].mean():.1f}, silent {moved[~speaking].mean():.1f}")
    # the report: every stage's time, the frames left out and why, held-out numbers, the images
    rep = json.loads((report / "report.json").read_text())
    assert set(rep["stages"]) == set(STAGES) and all(s["seconds"] > 0 for s in rep["stages"].values())
    assert rep["frames"]["total"] == len(np.load(clip / "truth.npz")["pts"])
    assert rep["frames"]["valid"] + sum(v["frames"] for v in rep["frames"]["left_out"].values()) == rep["frames"]["total"]
    for fit in ("static", "articulated"):
        assert rep[fit]["psnr"] > 20 and 0 < rep[fit]["ssim"] <= 1 and rep[fit]["gaussians"] > 100
        # one evaluator (heldout_eval.py): both fits scored on the same regions
        assert {"psnr_face", "psnr_face_wide", "psnr_head", "psnr_mouth", "psnr_eyes"} <= set(rep[fit]), fit
    assert rep["audio"]["adapted"] in (True, False) and rep["audio"]["reason"]
    for name in ("heldout.png", "losses.png", "tracking/overlay.png"):
        assert (report / name).stat().st_size > 10000, name
    md = (report / "report.md").read_text()
    assert "| articulated |" in md and "Held-out" in md and f"{rep['frames']['valid']} of 260 used" in md
    assert "Bundle: 128x128 px (the fit's frames: 64x64)" in md  # quick: pack_side 128, twice the fit
    # the demo avatar the clip was rendered from never blinks in it: nor does the trained one
    assert "It does not blink: the fitted frames show no shut eye." in md and not avatar.can_blink
    assert (avatar.size, open_bundle(trained).camera.fx) == ((128, 128), pytest.approx(2 * 512 / 8))
    # the Gaussians no frame shows are left out of the bundle, and the report says so
    pack = rep["stages"]["pack"]["summary"]
    assert open_bundle(trained).gaussians().count == pack["gaussians"] <= pack["fitted_gaussians"]
    assert pack["fitted_gaussians"] == rep["articulated"]["gaussians"]
    if pack["gaussians"] < pack["fitted_gaussians"]:
        assert f"{pack['fitted_gaussians'] - pack['gaussians']} of the fit's" in md and pack["prune_psnr"] > 40
    sheet = imread(report / "heldout.png")
    assert sheet.shape[0] > 200 and sheet.std() > 0.05


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_avatar(trained, clip, silent_clip, tmp_path, caplog, monkeypatch):
    """Ctrl-C inside the static fit, then --resume: finished stages are not redone, the fit
    continues from its checkpoint and ends where the uninterrupted run ended (the silent copy
    of the clip has the same frames); a silent video still gets the shipped audio path, and
    --audio later adapts it without redoing the other stages; a changed option or code redoes
    its stage."""
    out = tmp_path / "me.bundle"
    cfg = TrainConfig.quick()
    cfg.articulated.iterations = 60  # not compared here: only the static fit is
    seen: list[StageProgress] = []

    def interrupt(rec: StageProgress) -> None:
        seen.append(rec)
        if rec.stage == "static" and rec.event == "update" and rec.done >= 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_avatar(silent_clip, out, cfg, progress=interrupt)
    work = work_paths(out)[0]
    assert (work / "static" / "static.ckpt.pt").is_file() and not out.exists()
    assert [r.stage for r in seen if r.event == "end"] == ["video", "track"]
    updates = [r for r in seen if r.event == "update"]
    assert any(r.stage == "track" and r.unit == "frames" for r in updates)
    assert any(r.stage == "static" and r.loss is not None and r.eta_s is not None for r in updates)

    with pytest.raises(TrainError, match="--resume"):
        train_avatar(silent_clip, out, cfg)  # a run to continue is never discarded silently
    events: list[StageProgress] = []
    with caplog.at_level(logging.INFO):
        result = train_avatar(silent_clip, out, cfg, resume=True, progress=_events(events))
    assert [r.stage for r in events if r.event == "skip"] == ["video", "track"]
    assert "resumed from" in caplog.text and "at iteration 20" in caplog.text
    assert result.bundle == out and out.is_dir()
    assert result.metrics["audio"]["adapted"] is False and "no speech" in result.metrics["audio"]["reason"]
    a = np.load(work / "static" / "result.npz")
    b = np.load(work_paths(trained)[0] / "static" / "result.npz")
    np.testing.assert_array_equal(a["g_means"], b["g_means"])
    np.testing.assert_array_equal(a["g_sh"], b["g_sh"])

    # --audio: a recording of the video's speech adapts the audio path; nothing else is redone,
    # and the report keeps the drawings of the stages that did not change
    report = work_paths(out)[1]
    drawn = {p: p.stat().st_mtime_ns for p in (report / "tracking" / "overlay.png", report / "heldout.png")}
    events.clear()
    result = train_avatar(silent_clip, out, cfg, audio=clip / "speech.wav", resume=True, progress=_events(events))
    assert [r.stage for r in events if r.event == "end"] == ["audio", "pack"]
    assert {p: p.stat().st_mtime_ns for p in drawn} == drawn
    assert result.metrics["audio"]["speech"] == str(clip / "speech.wav")
    assert result.metrics["audio"]["held_out_frames"] > 0 and result.metrics["audio"]["reason"]

    # a changed option redoes its stage and the ones after it, and says what changed
    caplog.clear()
    cfg.static.iterations = 40
    events.clear()
    with caplog.at_level(logging.WARNING):
        train_avatar(silent_clip, out, cfg, resume=True, until="codes", progress=_events(events))
    assert "static.iterations: 60 -> 40" in caplog.text
    assert [r.stage for r in events if r.event == "skip"] == ["video", "track", "codes"]
    assert [r.stage for r in events if r.event == "end"] == ["static"]
    overlay, sheet = drawn
    assert overlay.stat().st_mtime_ns == drawn[overlay] and sheet.stat().st_mtime_ns != drawn[sheet]

    # an edit of the code a stage runs (or an upgrade) redoes that stage, and the log says so
    caplog.clear()
    events.clear()
    real = pipeline_stages.stage_code
    monkeypatch.setattr(pipeline_stages, "stage_code", lambda s: "edited" if s == "codes" else real(s))
    with caplog.at_level(logging.WARNING):
        train_avatar(silent_clip, out, cfg, resume=True, until="codes", progress=_events(events))
    assert f"code: {real('codes')!r} -> 'edited'" in caplog.text
    assert [r.stage for r in events if r.event == "skip"] == ["video", "track", "static"]
    assert [r.stage for r in events if r.event == "end"] == ["codes"]

    # another min_valid: the finished tracks are judged again under it, nothing is redone
    events.clear()
    judged: list[float] = []
    real_check = pipeline_stages.check_tracks

    def check(tracks, min_valid):
        judged.append(min_valid)
        return real_check(tracks, min_valid)

    monkeypatch.setattr(pipeline_stages, "check_tracks", check)
    lower = TrainConfig.from_dict({**cfg.to_dict(), "min_valid": 0.3})
    train_avatar(silent_clip, out, lower, resume=True, until="codes", progress=_events(events))
    assert [r.stage for r in events if r.event == "skip"] == ["video", "track", "static", "codes"]
    assert judged == [0.3]
    monkeypatch.setattr(pipeline_stages, "check_tracks", lambda tracks, min_valid: real_check(tracks, 1.01))
    with pytest.raises(TrackingError, match="101 % is needed"):  # a bar no tracks meet: refused on the skip
        train_avatar(silent_clip, out, lower, resume=True, until="codes")


def test_a_work_folder_of_another_video_is_refused(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"x")
    wf = WorkFolder.open(tmp_path / "me.train", video, "a" * 64, resume=False, overwrite=False)
    wf.finish("video", "k", {}, 1.0)
    with pytest.raises(TrainError, match="another video"):
        WorkFolder.open(tmp_path / "me.train", video, "b" * 64, resume=True, overwrite=False)
    with pytest.raises(TrainError, match="--resume .* --overwrite"):
        WorkFolder.open(tmp_path / "me.train", video, "a" * 64, resume=False, overwrite=False)
    again = WorkFolder.open(tmp_path / "me.train", video, "b" * 64, resume=False, overwrite=True)
    assert again.stages == {}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(TrainError, match="not a work folder"):
        WorkFolder.open(tmp_path / "mine", video, "a" * 64, resume=False, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def _cli(capsys, *args):
    from huma_rt.cli import main

    rc = main(["train", *map(str, args), "--preset", "quick", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_short_and_unreadable_videos_are_refused_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    short = write_mp4(tmp_path / "short.mp4", [rng.integers(0, 255, (64, 64, 3), np.uint8)] * 75)
    rc, err = _cli(capsys, short, "-o", tmp_path / "a.bundle")
    assert rc == 1 and len(err) == 1 and "3.0 s" in err[0] and "at least 10 s" in err[0]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    rc, err = _cli(capsys, junk, "-o", tmp_path / "b.bundle")
    assert rc == 1 and len(err) == 1 and "not a video file" in err[0]
    with pytest.raises(VideoError):
        train_avatar(junk, tmp_path / "c.bundle", TrainConfig.quick())
    assert not work_paths(tmp_path / "c.bundle")[0].exists()  # nothing is written for a bad file


def test_a_video_without_a_face_is_refused_in_seconds(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)
    frames = [np.full((96, 128, 3), 90, np.uint8) + rng.integers(0, 40, (96, 128, 3), np.uint8) for _ in range(260)]
    video = write_mp4(tmp_path / "wall.mp4", frames)
    out = tmp_path / "w.bundle"
    rc, err = _cli(capsys, video, "-o", out)
    assert rc == 1 and len(err) == 1
    # refused by the tracking probe before the frame pass: nothing of it to keep
    assert "tracked in 0 of 24 frames sampled across the video (no face found: 24)" in err[0] and "--resume" in err[0]
    work, _ = work_paths(out)
    assert (work / "video.json").is_file() and not (work / "tracks.npz").exists()
    assert not (work / "track.ckpt.npz").exists()
    with pytest.raises(TrackingError, match="no face found"):  # the resumed run is refused the same way
        train_avatar(video, out, TrainConfig.quick(), resume=True)
    # with a lower bar the probe lets it through, the pass tracks it, and the check still refuses
    cfg = TrainConfig.from_dict({**TrainConfig.quick().to_dict(), "min_valid": 0.01})
    with pytest.raises(TrackingError, match=r"tracked in 0 % of 260 frames.*no face found: 260 frames"):
        train_avatar(video, out, cfg, resume=True)
    assert (work / "tracks.npz").is_file()  # kept: a later resume re-checks them without tracking
    # under yet another bar: the bar judges the tracks, it is not part of what made them
    def no_tracking(*a, **k):
        raise AssertionError("the video was tracked again for a new min_valid")

    monkeypatch.setattr(pipeline_stages, "track_video", no_tracking)
    cfg = TrainConfig.from_dict({**TrainConfig.quick().to_dict(), "min_valid": 0.02})
    with pytest.raises(TrackingError, match=r"tracked in 0 % of 260 frames.*2 % is needed"):
        train_avatar(video, out, cfg, resume=True)


@pytest.mark.slow
def test_two_faces_are_refused(clip, tmp_path, capsys):
    from huma_rt.train.video import open_video

    # side by side at half size (256 x 512): the faces stay well above the detector's ~80 px and
    # tracking every frame (detection runs on each while two faces show) costs a quarter
    frames = [np.concatenate([f[::2, ::2], f[1::2, 1::2]], 1) for _, _, f in open_video(clip / "video.mp4").frames()]
    video = write_mp4(tmp_path / "two.mp4", frames)
    rc, err = _cli(capsys, video, "-o", tmp_path / "t.bundle")
    assert rc == 1 and len(err) == 1 and "more than one face" in err[0]


def test_config_round_trips_and_refuses_bad_values(tmp_path):
    cfg = TrainConfig.quick()
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again.to_dict() == cfg.to_dict()
    assert TrainConfig.from_dict({"static": {"iterations": 7}}).static.iterations == 7
    with pytest.raises(HumaError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"statik": {}})
    with pytest.raises(HumaError, match="min_valid"):
        TrainConfig(min_valid=0)
    for bad in (1.0, -0.01, True, "0.02"):
        with pytest.raises(HumaError, match="prune_below must be a share of one pixel in"):
            TrainConfig(prune_below=bad)
    with pytest.raises(HumaError, match="until"):
        train_avatar(tmp_path / "x.mp4", tmp_path / "x.bundle", until="everything")


def test_terminal_bar_writes_a_line_per_tenth_off_a_terminal():
    import io

    s = io.StringIO()
    bar = TerminalBar(s)
    bar(StageProgress("static", "start"))
    for i in range(1, 101):
        bar(StageProgress("static", "update", i, 100, "iterations", 100.0 - i, 0.5 / i))
    bar(StageProgress("static", "end", seconds=75.0))
    lines = s.getvalue().splitlines()
    assert len(lines) == 12 and lines[-1].endswith("done in 1:15")  # tenths 0..10, then the end
    assert "100/100 iterations" in lines[-2] and "loss 0.0050" in lines[-2] and "ETA 0:00" in lines[-2]


def test_work_paths_sit_beside_the_bundle(tmp_path):
    assert work_paths(tmp_path / "me.bundle") == (tmp_path / "me.train", tmp_path / "me.report")
    assert work_paths(tmp_path / "me") == (tmp_path / "me.train", tmp_path / "me.report")


@pytest.fixture(autouse=True)
def _no_big_leftovers(tmp_path):
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)
