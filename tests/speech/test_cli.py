"""``huma-rt chat``: argument and input errors come before any heavy load, as one clear line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from huma_rt.cli import main
from huma_rt.speech.audio import write_wav


def _run(capsys, *argv):
    rc = main(["chat", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_wav_without_asr_model_is_a_clear_error(capsys, tmp_path):
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(1600, np.float32), 16000)
    rc, _, err = _run(capsys, "--wav", str(wav), "-o", str(tmp_path / "a.mp4"))
    assert rc == 1 and "error: --wav needs a speech-recognition model: pass --asr-model DIR" in err
    assert not (tmp_path / "a.mp4").exists()


def test_wav_with_a_non_model_dir(capsys, tmp_path):
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(1600, np.float32), 16000)
    (tmp_path / "m").mkdir()
    rc, _, err = _run(capsys, "--wav", str(wav), "--asr-model", str(tmp_path / "m"), "-o", str(tmp_path / "a.mp4"))
    assert rc == 1 and "is not a sherpa-onnx ASR model directory" in err


@pytest.mark.parametrize(("content", "match"), [
    (b"", "empty"), (b"\xf0\x9f\x98\x80 !!", "no words"), (b"caf\xe9 au lait", "byte 0xe9 at offset 3")])
def test_bad_text_files(capsys, tmp_path, content, match):
    f = tmp_path / "q.txt"
    f.write_bytes(content)
    rc, _, err = _run(capsys, "--text-file", str(f), "-o", str(tmp_path / "a.mp4"))
    assert rc == 1 and match in err
    assert not (tmp_path / "a.mp4").exists()


def test_bad_output_and_missing_wav(capsys, tmp_path):
    rc, _, err = _run(capsys, "--text", "hello", "-o", str(tmp_path / "a.avi"))
    assert rc == 1 and "-o must name an .mp4 file" in err
    rc, _, err = _run(capsys, "--wav", str(tmp_path / "nope.wav"), "--asr-model", str(tmp_path))
    assert rc == 1 and "does not exist" in err


@pytest.mark.skipif(importlib.util.find_spec("huma_rt.runtime") is None, reason="huma_rt.runtime not in this tree yet")
def test_text_chat_writes_an_mp4_with_audio(capsys, tmp_path):  # pragma: no cover - needs the runtime
    av = pytest.importorskip("av")
    out = tmp_path / "a.mp4"
    rc, stdout, _ = _run(capsys, "--text", "Hello there.", "-o", str(out), "--no-live")
    assert rc == 0 and "first video frame" in stdout
    with av.open(str(out)) as c:
        assert {s.type for s in c.streams} == {"video", "audio"}
