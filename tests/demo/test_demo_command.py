"""`huma-rt demo` pieces that need no runtime: audio sources, PNG contact sheet, bad input;
and the end-to-end command once the runtime, bundle and media parts are installed."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import huma_rt
from huma_rt.cli import main
from huma_rt.commands.demo import contact_sheet, load_wav, sheet_indices
from huma_rt.errors import InputError
from huma_rt.speech.say import speak


def _read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if tag == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(h, w, 3)


def test_contact_sheet_layout():
    assert sheet_indices(40, cols=4, rows=2) == [0, 6, 11, 17, 22, 28, 33, 39]
    assert sheet_indices(3) == [0, 1, 2] and sheet_indices(0) == []
    frames = {i: np.full((64, 48, 3), i, np.uint8) for i in sheet_indices(40, cols=4, rows=2)}
    audio = np.zeros(40 * 640, np.float32)
    audio[22 * 640:23 * 640] = 0.5
    sheet = contact_sheet(frames, audio, 25, cols=4, scale=2)
    assert sheet.shape == (2 * (32 + 6), 4 * 24, 3)
    assert sheet[0, 0, 0] == 0 and sheet[38, 72, 0] == 39  # first and last frame
    assert (sheet[38 + 32:38 + 38, :20] == (200, 40, 40)).all()  # loud frame 22: a full level bar
    assert (sheet[32:38, :] == 255).all()  # silent frames: no bar
    with pytest.raises(InputError):
        contact_sheet({}, audio, 25)


def test_speak_with_espeak_and_wav_input(tmp_path):
    pcm, voice = speak("Hello there.", tts="espeak")
    assert pcm.dtype == np.float32 and 0.5 < pcm.size / 16000 < 3 and "espeak" in voice
    from huma_rt.speech.audio import write_wav

    write_wav(tmp_path / "a.wav", np.tile(pcm[:, None], (1, 1))[:, 0], 16000)
    back = load_wav(tmp_path / "a.wav")
    assert abs(back.size - pcm.size) <= 1
    with pytest.raises(InputError, match="empty"):
        speak("   ", tts="espeak")


def test_cli_refuses_bad_input(tmp_path, capsys):
    assert main(["demo", "--wav", str(tmp_path / "missing.wav")]) == 1
    assert "missing.wav" in capsys.readouterr().err
    assert main(["demo", "--text", "hi", "--tts", "espeak", "-o", str(tmp_path / "x.avi")]) == 1
    assert ".mp4" in capsys.readouterr().err


_RUNTIME = all(importlib.util.find_spec(m) for m in ("huma_rt.runtime", "huma_rt.bundle", "huma_rt.media"))
_WEIGHTS = (Path(huma_rt.__file__).parent / "data" / "demo" / "demo.json").is_file()


@pytest.mark.skipif(not (_RUNTIME and _WEIGHTS), reason="runtime parts or shipped demo weights missing")
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo.mp4"
    rc = main(["demo", "--text", "Hi, Bob!", "--tts", "espeak", "-o", str(out),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "preload" in text and "real-time factor" in text
    assert out.stat().st_size > 1000
    sheet = _read_png(out.with_suffix(".png"))
    assert sheet.shape[0] > 100 and sheet.std() > 10
    # second run reuses the cached bundle
    assert main(["demo", "--text", "Hi.", "--tts", "espeak", "-o", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "cached" in capsys.readouterr().out


def test_demo_audio_reads_what_render_reads(tmp_path):
    """demo --audio/--wav goes through the reader render uses: same formats, same rate range."""
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
    from _audio_files import tone, write_audio

    for rate, kind in ((5000, "wav-PCM_16"), (192000, "wav-PCM_U8"), (44100, "mp3"), (44100, "flac")):
        path = write_audio(tmp_path / f"a{rate}.{kind.split('-')[0]}", tone(0.5, rate), rate, kind)
        pcm = load_wav(path)
        assert pcm.dtype == np.float32 and abs(pcm.size - 8000) <= 1200, (rate, kind, pcm.size)


def test_demo_cli_bad_audio_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "speech.ogg"
    bad.write_bytes(b"OggS" + b"\0" * 100)
    for flag in ("--audio", "--wav"):
        assert main(["demo", flag, str(bad), "-o", str(tmp_path / "o.mp4")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "speech.ogg" in err and "Traceback" not in err
