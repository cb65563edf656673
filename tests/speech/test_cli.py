"""``huma-rt chat``: argument and input errors come before any heavy load, as one clear line."""

from __future__ import annotations

import numpy as np
import pytest

from huma_rt.cli import main
from huma_rt.speech.audio import write_wav


def _run(capsys, *argv):
    rc = main(["chat", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_wav_without_the_shipped_asr_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moonshine_voice" else real(name, *a))
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(1600, np.float32), 16000)
    rc, _, err = _run(capsys, "--wav", str(wav), "-o", str(tmp_path / "a.mp4"))
    assert rc == 1 and "pip install --no-deps moonshine-voice==0.1.0" in err  # before any heavy load
    assert not (tmp_path / "a.mp4").exists()


def test_chat_spoken_question_with_the_shipped_asr(capsys, tmp_path, monkeypatch, steady_tts, voice_cache,
                                                    small_bundle):
    """`huma-rt chat --wav question.wav` out of the box: Piper speech at 22.05 kHz -> end of turn
    (VAD + Moonshine tiny-en) -> echo responder -> TTS -> avatar; the recognised words come back."""
    import importlib.util
    import json

    if importlib.util.find_spec("moonshine_voice") is None:
        pytest.skip("needs moonshine-voice==0.1.0 (pip install --no-deps)")
    from huma_rt.speech.asr_eval import word_errors

    monkeypatch.setenv("HUMA_RT_CACHE", str(voice_cache))  # the voice prepared by the fixtures; ASR tokens beside it
    question = "Can you tell me a short story about a dragon?"
    pcm, rate = steady_tts.synthesize(question)
    wav, out, report = tmp_path / "question.wav", tmp_path / "answer.mp4", tmp_path / "lat.json"
    write_wav(wav, np.concatenate([np.zeros(rate // 2, np.float32), pcm, np.zeros(rate, np.float32)]), rate)
    rc, stdout, err = _run(capsys, "--wav", str(wav), "--bundle", str(small_bundle), "-o", str(out),
                           "--no-live", "--no-pace", "--json", str(report))
    assert rc == 0, err
    assert "Moonshine tiny-en" in err  # the shipped ASR was loaded, no --asr-model given
    data = json.loads(report.read_text())
    heard = data["question"]
    errors, n = word_errors(question, heard)
    assert errors <= 1, heard  # measured: word for word
    assert data["answer"] == f"You said: {heard}" and f"question: {heard}" in stdout
    lat = data["latency_ms"]
    # the text is made during the silence; the turn ends once the question's silence is up
    assert 0 < lat["ASR text (during the silence)"] <= lat["end of turn decided"] <= lat["first video frame"]
    assert data["rtf"]["asr"] > 0 and data["frames"] > 0 and out.is_file()


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


def test_chat_text_to_mp4_with_the_real_runtime(capsys, tmp_path, small_bundle):
    av = pytest.importorskip("av")
    out, report = tmp_path / "answer.mp4", tmp_path / "lat.json"
    rc, stdout, err = _run(capsys, "--text", "Hello there.", "--bundle", str(small_bundle), "--responder", "scripted",
                           "--reply", "Hi, nice to meet you.", "-o", str(out), "--no-live", "--json", str(report))
    assert rc == 0, err
    assert "answer:   Hi, nice to meet you." in stdout and "first video frame" in stdout
    import json

    data = json.loads(report.read_text())
    assert data["latency_ms"]["first video frame"] > 0 and data["rtf"]["tts"] > 0
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    with av.open(str(out)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert frames == data["frames"] and frames * 640 <= samples + 640  # video covers the audio


def test_chat_responder_down_leaves_no_mp4(capsys, tmp_path, small_bundle):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "answer.mp4"
    rc, _, err = _run(capsys, "--text", "Hello there.", "--bundle", str(small_bundle), "--responder", "openai",
                      "--base-url", f"http://127.0.0.1:{port}/v1", "--timeout", "2", "-o", str(out))
    assert rc == 1 and "cannot reach responder" in err
    assert not out.exists()


@pytest.mark.parametrize(("args", "match"), [
    (["--statement-silence", "0"], "short_silence_s must be > 0 seconds; got 0.0"),
    (["--max-silence", "0.05"], r"long_silence_s \(0.05\)"),
])
def test_bad_end_of_turn_silences_are_refused_before_loading(capsys, tmp_path, args, match):
    import re

    rc, _, err = _run(capsys, "--text", "hi", "-o", str(tmp_path / "a.mp4"), *args)
    assert rc == 1 and re.search(match, err), err
    assert "loaded avatar" not in err and not (tmp_path / "a.mp4").exists()
