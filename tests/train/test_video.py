"""train/video.py on the real FGNet clip and on files written here with PyAV."""

from __future__ import annotations

import math

import numpy as np
import pytest

from huma_rt.errors import InputError

av = pytest.importorskip("av")

from huma_rt.train.video import VideoConfig, VideoError, open_video  # noqa: E402


def _write(path, seconds: float, *, video: bool = True, audio: bool = False, size=(64, 48), fps: int = 25,
           tone_hz: float = 440.0, rate: int = 44100, rotation: int = 0):  # fmt: skip
    """An MP4 (H.264 + AAC) or, without video, an M4A of ``seconds``: moving gradient, sine tone."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
            if rotation:
                vs.set_display_rotation(rotation)
        aus = out.add_stream("aac", rate=rate) if audio else None
        if aus is not None:
            aus.layout = "mono"
        if vs is not None:
            for i in range(int(seconds * fps)):
                img = np.zeros((size[1], size[0], 3), np.uint8)
                img[..., 0] = (np.arange(size[0]) * 4 + i * 3) % 256
                img[:8, :16] = 255  # a white mark in the stored frame's top-left corner
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        if aus is not None:
            t = np.arange(int(seconds * rate)) / rate
            pcm = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            for k in range(0, len(pcm), 1024):
                frame = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024], format="flt", layout="mono")
                frame.sample_rate = rate
                for p in aus.encode(frame):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
    return path


def test_reads_the_real_clip(talking_video):
    r = open_video(talking_video)
    i = r.info
    assert (i.width, i.height, i.fps, i.codec, i.has_audio) == (400, 300, 25.0, "h264", False)
    assert 30 < i.seconds < 31.5 and 760 <= i.frames <= 770
    first = [(k, t, f) for k, (_, t, f) in zip(range(3), r.frames(), strict=False)]
    for k, t, f in first:
        assert f.dtype == np.uint8 and f.shape == (300, 400, 3)
        assert t == pytest.approx(k / 25.0, abs=1e-6)
    assert first[0][2].std() > 10  # a picture, not a blank
    k, t, f = next(r.frames(start=2))
    assert k == 2 and np.array_equal(f, first[2][2])  # starting later gives the same frame
    assert r.audio() is None


def test_sample_seeks_to_the_same_frames_as_the_stream(talking_video, tmp_path):
    r = open_video(talking_video)
    sampled = list(r.sample(6))
    # the first frames at or after the middles of six equal spans of 30.6 s: 64, 192, ...
    assert [k for k, _, _ in sampled] == [math.ceil((j + 0.5) / 6 * r.info.seconds * 25) for j in range(6)]
    want = {k: (t, f) for k, t, f in sampled}
    for k, t, f in r.frames():
        if k in want:
            assert t == pytest.approx(want[k][0], abs=1e-6) and np.array_equal(f, want[k][1]), k
    phone = open_video(_write(tmp_path / "phone.mp4", 10.2, rotation=90))
    frames = list(phone.sample(3))
    assert len(frames) == 3 and all(f.shape == (64, 48, 3) for _, _, f in frames)  # upright, like frames()


def test_shrinks_large_frames(talking_video):
    r = open_video(talking_video, VideoConfig(max_side=200))
    assert (r.info.width, r.info.height, r.info.native_width) == (200, 150, 400)
    _, _, f = next(r.frames())
    assert f.shape == (150, 200, 3)


def test_speech_track_is_16k_mono(tmp_path):
    path = _write(tmp_path / "talk.mp4", 10.5, audio=True, tone_hz=440.0)
    r = open_video(path)
    assert r.info.has_audio and r.info.seconds == pytest.approx(10.5, abs=0.1)
    pcm = r.audio()
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert len(pcm) == pytest.approx(10.5 * 16000, rel=0.01)
    spectrum = np.abs(np.fft.rfft(pcm[16000:32000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 s at 16 kHz: bins are 1 Hz


def test_phone_rotation_is_applied(tmp_path):
    path = _write(tmp_path / "phone.mp4", 10.2, size=(64, 48), rotation=90)
    r = open_video(path)
    assert (r.info.width, r.info.height, r.info.rotation) == (48, 64, 90)
    _, _, f = next(r.frames())
    assert f.shape == (64, 48, 3)
    # stored top-left, turned 90 degrees counter-clockwise: bottom-left
    assert f[-6:, :6].min() > 200 and f[:6, :6, 1].max() < 60


def test_too_short_names_the_duration(tmp_path):
    path = _write(tmp_path / "short.mp4", 2.0)
    with pytest.raises(VideoError, match=r"lasts 2\.0 s.*at least 10 s"):
        open_video(path)


def test_too_long_names_the_duration(talking_video):
    with pytest.raises(VideoError, match=r"lasts 30\.6 s.*at most 20 s"):
        open_video(talking_video, VideoConfig(max_seconds=20))


def test_audio_only_file_has_no_video(tmp_path):
    path = _write(tmp_path / "speech.m4a", 11.0, video=False, audio=True)
    with pytest.raises(VideoError, match="no video stream.*audio"):
        open_video(path)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100, None])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "clip.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=str(path)):
        open_video(path)


def test_config_is_checked_and_round_trips():
    cfg = VideoConfig(min_seconds=5, max_seconds=60, max_side=0)
    assert VideoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="min_seconds <= max_seconds"):
        VideoConfig(min_seconds=30, max_seconds=20)
    assert issubclass(VideoError, InputError)
