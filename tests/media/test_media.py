"""MP4/PNG/WAV writers and readers, checked by decoding with independent readers (PyAV, soundfile, matplotlib)."""

from __future__ import annotations

import math
import struct

import av
import numpy as np
import pytest
import soundfile

from huma_rt.errors import FormatError, InputError
from huma_rt.media import Mp4Writer, encode_png, read_wav, write_mp4, write_png, write_wav


def decode_mp4(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        info = {"codec": v.codec_context.name, "fps": float(v.average_rate), "frames": len(frames),
                "audio_codec": a.codec_context.name if a else None,
                "audio_s": float(a.duration * a.time_base) if a and a.duration else None,
                "video_s": float(v.duration * v.time_base) if v.duration else None}  # fmt: skip
    return frames, info


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT"])
@pytest.mark.parametrize("channels", [1, 2])
def test_read_wav_matches_soundfile(tmp_path, subtype, channels):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.9, 0.9, (2205, channels)).astype(np.float32)
    p = tmp_path / "a.wav"
    soundfile.write(p, x if channels == 2 else x[:, 0], 22050, subtype=subtype)
    got, rate = read_wav(p)
    want, _ = soundfile.read(p, dtype="float32", always_2d=False)
    assert rate == 22050 and got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7 if subtype != "PCM_32" else 1e-6)


def test_write_wav_round_trip(tmp_path):
    x = np.linspace(-1, 1, 1000, dtype=np.float32)
    got, rate = read_wav(write_wav(tmp_path / "w.wav", x, 16000))
    assert rate == 16000
    np.testing.assert_allclose(got, x, rtol=0, atol=1 / 32768)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"OggS" + b"\0" * 40, "not an audio file"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", 1, 9, 8000, 144000, 18, 16) + b"data\0\0\0\0", "9 audio channels"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", 1, 1, 1000, 2000, 2, 16) + b"data\2\0\0\0\0\0", "1000 Hz"),
        (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16), "not an audio file"),
        (b"RIFF\0\0\0\0WAVEfmt \x04\0\0\0\1\0\1\0", "not an audio file"),
        (b"", "empty"),
    ],
)
def test_read_wav_refuses(tmp_path, data, match):
    p = tmp_path / "bad.wav"
    p.write_bytes(data)
    with pytest.raises(FormatError, match=match) as err:
        read_wav(p)
    assert "bad.wav" in str(err.value)


def test_png_round_trip(tmp_path):
    import matplotlib.image

    rgb = np.random.default_rng(1).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    back = matplotlib.image.imread(write_png(tmp_path / "f.png", rgb))
    np.testing.assert_array_equal(np.round(back * 255).astype(np.uint8), rgb)
    with pytest.raises(InputError, match="uint8"):
        encode_png(rgb.astype(np.float32))


def test_mp4_frames_audio_and_duration(tmp_path):
    fps, n, w, h = 25, 30, 48, 38
    frames = [np.full((h, w, 3), 8 * i, np.uint8) for i in range(n)]
    audio = (0.2 * np.sin(np.arange(n * 640) / 10)).astype(np.float32)
    out = write_mp4(tmp_path / "o.mp4", frames, audio, fps=fps, sample_rate=16000)
    got, info = decode_mp4(out)
    assert info["frames"] == n and info["fps"] == fps and info["audio_codec"] == "aac"
    assert info["codec"] == ("h264" if "libx264" in av.codecs_available else "mpeg4")
    assert abs(info["audio_s"] - n / fps) < 0.1
    assert got[0].shape == (h, w, 3)
    for i in (0, n // 2, n - 1):  # flat grey frames survive lossy coding closely
        assert abs(float(got[i].mean()) - 8 * i) < 3


def test_mp4_writer_checks(tmp_path):
    with pytest.raises(InputError, match=".mp4"):
        Mp4Writer(tmp_path / "o.avi", 25, (8, 8))
    w = Mp4Writer(tmp_path / "o.mp4", 25, (8, 8))
    with pytest.raises(InputError, match=r"uint8 \[8, 8, 3\]"):
        w.write(np.zeros((8, 9, 3), np.uint8))
    w.close(None)


def test_render_command_mp4_png_raw(media_bundle, tmp_path):
    import subprocess
    import sys

    from huma_rt.cli import main

    sr, seconds = 22050, 1.3
    t = np.arange(int(sr * seconds)) / sr
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 200 * t), 0.3 * np.sin(2 * np.pi * 300 * t)], 1).astype(np.float32)
    wav = tmp_path / "in.wav"
    soundfile.write(wav, stereo, sr, subtype="PCM_16")
    n = math.ceil(seconds * 25)

    out = tmp_path / "o.mp4"
    assert main(["render", "--bundle", str(media_bundle), "--wav", str(wav), "-o", str(out), "--threads", "1"]) == 0
    frames, info = decode_mp4(out)
    assert info["frames"] == n and info["fps"] == 25 and info["audio_codec"] == "aac"
    assert abs(info["audio_s"] - seconds) < 0.1
    assert frames[0].shape == (40, 48, 3)

    png = tmp_path / "png"
    assert main(["render", "--bundle", str(media_bundle), "--wav", str(wav), "--png-dir", str(png), "--threads", "1"]) == 0
    assert sorted(p.name for p in png.iterdir()) == [f"frame_{i:06d}.png" for i in range(n)]

    proc = subprocess.run(
        [sys.executable, "-m", "huma_rt", "render", "--bundle", str(media_bundle), "--wav", str(wav), "--raw", "--threads", "1"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(proc.stdout) == n * 40 * 48 * 3
    assert b"ffmpeg -f rawvideo -pix_fmt rgb24 -s 48x40 -r 25" in proc.stderr
    import matplotlib.image

    first_png = np.round(matplotlib.image.imread(png / "frame_000000.png") * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.frombuffer(proc.stdout[: 40 * 48 * 3], np.uint8).reshape(40, 48, 3), first_png)


def test_render_command_blinks(media_bundle, tmp_path, capsys):
    """--blink: the frames of BlinkSchedule(fps)'s blinks differ from a render without it, every
    other frame is the same; an avatar without a blink code is refused with the reason."""
    import matplotlib.image
    from _runtime_avatar import shared_export, small_source

    from huma_rt.bundle import pack
    from huma_rt.cli import main
    from huma_rt.runtime.blink import BlinkSchedule

    export = shared_export(tmp_path / "export")
    code = np.random.default_rng(5).normal(0, 1.0, 8).astype(np.float32)  # the small configs' code_dim
    bundle = pack(small_source(export, blink_code=code), tmp_path / "blinking")
    t = np.arange(16000 * 8) / 16000
    wav = write_wav(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (t % 1 < 0.5)).astype(np.float32), 16000)
    pngs = {}
    for flag in ((), ("--blink",)):
        out = tmp_path / ("blink" if flag else "plain")
        assert main(["render", "--bundle", str(bundle), "--wav", str(wav), "--png-dir", str(out), "--threads", "1",
                     *flag]) == 0  # fmt: skip
        pngs[bool(flag)] = [matplotlib.image.imread(p) for p in sorted(out.glob("frame_*.png"))]
    assert len(pngs[True]) == len(pngs[False]) == 200
    sched = BlinkSchedule(25)
    differ = [i for i in range(200) if not np.array_equal(pngs[True][i], pngs[False][i])]
    assert differ == [i for i in range(200) if sched.weight(i) > 0] and len(differ) >= sched.blink_frames

    capsys.readouterr()
    assert main(["render", "--bundle", str(media_bundle), "--wav", str(wav), "-o", str(tmp_path / "o.mp4"),
                 "--blink"]) == 1  # fmt: skip
    assert "cannot blink: its bundle has no expressions.blink code" in capsys.readouterr().err


def test_render_command_errors(media_bundle, tmp_path, capsys):
    from huma_rt.cli import main

    assert main(["render", "--bundle", str(media_bundle), "--wav", str(tmp_path / "none.wav"), "-o", str(tmp_path / "o.mp4")]) == 1
    assert "does not exist" in capsys.readouterr().err
    wav = write_wav(tmp_path / "a.wav", np.zeros(100, np.float32), 16000)
    assert main(["render", "--bundle", str(media_bundle), "--wav", str(wav), "-o", str(tmp_path / "o.avi")]) == 1
    assert ".mp4" in capsys.readouterr().err


def test_render_command_speaks_text(media_bundle, tmp_path, capsys, monkeypatch):
    """``render --text``: the MP4 carries the spoken text as its audio, one frame per 40 ms of it; with
    --png-dir the speech is written beside the frames; the default voice is the shipped Piper one."""
    from huma_rt.cli import main
    from huma_rt.speech import say

    text = "Hello there, this is a test."
    # espeak-ng's length varies between calls (its first synthesis in a process ran 53 ms shorter
    # than the next ones here), so each run is checked against its own speech
    spoken_s = say.speak(text, "espeak")[0].size / 16000

    out = tmp_path / "o.mp4"
    argv = ["render", "--bundle", str(media_bundle), "--text", text, "--tts", "espeak", "--threads", "1"]
    assert main([*argv, "-o", str(out)]) == 0
    frames, info = decode_mp4(out)
    assert info["audio_codec"] == "aac" and abs(info["audio_s"] - spoken_s) < 0.1
    assert abs(info["frames"] - info["audio_s"] * 25) <= 1.5

    png = tmp_path / "png"
    assert main([*argv, "--png-dir", str(png)]) == 0
    pcm, sr = read_wav(png / "speech.wav")
    assert sr == 16000 and abs(pcm.size / 16000 - spoken_s) < 0.1 and np.abs(pcm).max() > 0.1
    n = math.ceil(pcm.size / 640)  # one frame per 40 ms of the speech written beside them
    assert sorted(p.name for p in png.iterdir()) == [f"frame_{i:06d}.png" for i in range(n)] + ["speech.wav"]

    piper = tmp_path / "piper.mp4"
    assert main(["render", "--bundle", str(media_bundle), "--text", text, "-o", str(piper), "--threads", "1"]) == 0
    _, piper_info = decode_mp4(piper)
    assert piper_info["audio_s"] > 1.0 and piper_info["frames"] > 25
    capsys.readouterr()

    # refused before any voice is loaded: --raw (its ffmpeg command muxes an audio file), a bad bundle
    def no_voice(*_a, **_k):
        raise AssertionError("a voice was loaded for a command that must fail first")

    monkeypatch.setattr(say, "speak", no_voice)
    assert main(["render", "--bundle", str(media_bundle), "--text", text, "--raw"]) == 1
    assert "--raw" in capsys.readouterr().err
    assert main(["render", "--bundle", str(tmp_path / "none"), "--text", text, "-o", str(out)]) == 1
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", "--bundle", str(media_bundle), "--text", text, "--audio", str(png / "speech.wav"), "-o", str(out)])
    assert "not allowed with" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["render", "--bundle", str(media_bundle), "--text", "   ", "-o", str(out)]) == 1
    assert "--text must contain something to say" in capsys.readouterr().err


def test_pack_command_repacks_as_archive(media_bundle, tmp_path, capsys):
    from huma_rt.bundle import open_bundle
    from huma_rt.cli import main

    out = tmp_path / "re.tar"
    assert main(["pack", "--from-bundle", str(media_bundle), "-o", str(out), "--archive", "--name", "again"]) == 0
    b = open_bundle(out)
    assert b.archive and b.name == "again"
    np.testing.assert_array_equal(b.arrays["means"], open_bundle(media_bundle).arrays["means"])
    assert "packed 1500 Gaussians" in capsys.readouterr().out
    assert main(["pack", "--from-bundle", str(media_bundle), "-o", str(out), "--archive"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["pack", "--ply", str(tmp_path / "x.ply"), "-o", str(tmp_path / "y")]) == 1
    assert "--ply needs --regions, --camera, --export" in capsys.readouterr().err
