"""The shipped ASR (Moonshine tiny-en from the moonshine-voice 0.1.0 wheel) on real speech.

Speech is made by the project's Piper voice and by espeak-ng saying known sentences
(huma_rt.speech.asr_eval.SENTENCES); the transcripts are scored by word error rate.

WER bound: measured (2026-12-06, 2-core CPU) 0.014 (1 error in 71 words: "old man in the sea")
on the Piper voice at 22.05 kHz with its noise scales at 0 (the `steady_tts` fixture: the same
audio every run), 0.028 on the first 4 sentences at 44.1 kHz, 0.042 (3 / 71) on espeak-ng; the
voice's own random noise gave 0.014..0.056 over 6 runs. The bound 0.10 leaves room for a few
more slips and still fails at once on anything systematic: a wrong tokens.txt, resampling or
model decodes most words wrong.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from huma_rt.errors import FormatError, InputError, MissingDependencyError
from huma_rt.speech import moonshine
from huma_rt.speech.asr import AsrConfig, Recognizer, detect_layout
from huma_rt.speech.asr_eval import SENTENCES, word_error_rate, word_errors
from huma_rt.speech.audio import prepare_input, read_wav, resample

WER_BOUND = 0.10

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("moonshine_voice") is None or importlib.util.find_spec("sherpa_onnx") is None,
    reason="needs moonshine-voice==0.1.0 (pip install --no-deps) and sherpa-onnx",
)


@pytest.fixture(scope="module")
def asr_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("asr-cache")


@pytest.fixture(scope="module")
def rec(asr_cache) -> Recognizer:
    """The shipped recognizer, loaded once for this module, its cache private to the tests."""
    return Recognizer(cache_dir=asr_cache)


@pytest.fixture(scope="module")
def piper_speech(steady_tts) -> list[tuple[str, np.ndarray, int]]:
    """(text, pcm, rate) of every test sentence spoken by the packaged Piper voice (22.05 kHz)."""
    return [(s, *steady_tts.synthesize(s)) for s in SENTENCES]


def _espeak(tmp: Path, text: str) -> tuple[np.ndarray, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng (Debian package espeak-ng) is not installed")
    path = tmp / "s.wav"
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    return read_wav(path)


# -- tokenizer.bin -> tokens.txt ------------------------------------------------------------


def test_tokenizer_format_one_and_two_byte_lengths():
    long = bytes(range(200)) * 2  # 400 bytes: length 400 = 3 * 128 + 16 -> bytes 0x90, 0x03
    data = b"\x05<unk>" + b"\x00" + bytes([0x80 + 16, 3]) + long + b"\x01a"
    tokens = moonshine.parse_tokenizer(data)
    assert tokens == [b"<unk>", b"", long, b"a"]
    text = moonshine.tokens_txt(tokens)
    lines = text.splitlines()
    assert lines[0] == "PHVuaz4= 0" and lines[1] == " 1" and lines[3] == "YQ== 3"
    for bad, what in [(b"\x05<un", "past the end"), (b"\x01a\x90", "two-byte length is cut off"), (b"", "empty")]:
        with pytest.raises(FormatError, match=what):
            moonshine.parse_tokenizer(bad)


@needs_model
def test_packaged_tokenizer_and_cached_tokens_txt(tmp_path):
    files = moonshine.packaged_model()
    tokens = moonshine.parse_tokenizer(files.tokenizer.read_bytes())
    assert len(tokens) == moonshine.PACKAGED_VOCAB and tokens[:3] == [b"<unk>", b"<s>", b"</s>"]
    assert [i for i, t in enumerate(tokens) if t == b""] == [31353]
    out = moonshine.ensure_tokens(files.tokenizer, tmp_path, moonshine.PACKAGED_VOCAB)
    assert out.name == f"moonshine-tokens-{moonshine.PACKAGED_SHA256['tokenizer.bin'][:16]}.txt"
    lines = out.read_text().splitlines()
    assert len(lines) == 32768 and lines[31353] == " 31353" and lines[0] == "PHVuaz4= 0"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # the atomic write left no temp file
    stamp = out.stat().st_mtime_ns
    assert moonshine.ensure_tokens(files.tokenizer, tmp_path) == out and out.stat().st_mtime_ns == stamp
    out.write_text("PHVuaz4= 0\n")  # a damaged cache entry is rebuilt, not handed to sherpa-onnx
    assert len(moonshine.ensure_tokens(files.tokenizer, tmp_path).read_text().splitlines()) == 32768
    with pytest.raises(FormatError, match="has 32768 tokens; the decoder's vocabulary has 51865"):
        moonshine.ensure_tokens(files.tokenizer, tmp_path, 51865)


@needs_model
def test_unwritable_cache_falls_back_to_the_temp_folder(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a cache "folder" under a file: mkdir fails, as on a read-only disk
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    out = moonshine.ensure_tokens(moonshine.packaged_model().tokenizer, blocker / "asr")
    assert out.parent == tmp_path / "tmp" / "huma-rt-asr" and len(out.read_text().splitlines()) == 32768


# -- configuration and missing pieces -------------------------------------------------------


def test_default_config_is_the_shipped_model_or_says_how_to_install(monkeypatch):
    assert AsrConfig().model_dir == ""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moonshine_voice" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps moonshine-voice==0\.1\.0"):
        detect_layout(AsrConfig())


@needs_model
def test_shipped_layout_and_its_limits():
    lay = detect_layout(AsrConfig())
    assert (lay.kind, lay.streaming, lay.packaged) == ("moonshine", False, True)
    assert sorted(lay.files) == ["decoder", "encoder", "tokenizer"]
    with pytest.raises(FormatError, match="offline"):
        detect_layout(AsrConfig(mode="online"))
    with pytest.raises(InputError, match="English only; got language 'de'"):
        detect_layout(AsrConfig(language="de"))
    with pytest.raises(InputError, match="'whisper' needs model_dir"):
        detect_layout(AsrConfig(kind="whisper"))
    with pytest.raises(InputError, match="num_threads must be an integer in 1..64; got 0"):
        detect_layout(AsrConfig(num_threads=0))


# -- corrupt files: FormatError before sherpa-onnx sees them (it crashes on some) -----------


def _copy_model(dst: Path, **replace: bytes) -> Path:
    """A Moonshine dir: the packaged files linked in, those named in ``replace`` rewritten."""
    src = moonshine.packaged_model()
    dst.mkdir()
    for p in (src.encoder, src.decoder, src.tokenizer):
        key = p.name.split(".")[0]
        if key in replace:
            (dst / p.name).write_bytes(replace[key])
        else:
            os.symlink(p, dst / p.name)
    return dst


@needs_model
def test_corrupt_packaged_files_are_refused_by_digest(tmp_path, monkeypatch):
    src = moonshine.packaged_model()
    bad = _copy_model(tmp_path / "tiny-en", tokenizer=src.tokenizer.read_bytes()[:-1] + b"!")
    monkeypatch.setattr(moonshine, "packaged_dir", lambda: bad)
    with pytest.raises(FormatError, match=r"tokenizer\.bin is not the file moonshine-voice 0\.1\.0 ships"):
        Recognizer(cache_dir=tmp_path / "cache")


@needs_model
@pytest.mark.parametrize("case", ["tokenizer_truncated", "tokenizer_short", "encoder_truncated",
                                  "decoder_garbage", "decoder_is_another_model", "swapped"])
def test_corrupt_moonshine_dir_is_a_format_error(tmp_path, case):
    src = moonshine.packaged_model()
    tok, enc = src.tokenizer.read_bytes(), src.encoder.read_bytes()
    short = b"".join(bytes([len(t)]) + t for t in moonshine.parse_tokenizer(tok)[:1000] if len(t) < 128)
    vad = Path(str(importlib.resources.files("silero_vad").joinpath("data", "silero_vad.onnx")))
    replace = {
        "tokenizer_truncated": {"tokenizer": tok[:1001]},
        "tokenizer_short": {"tokenizer": short},
        "encoder_truncated": {"encoder_model": enc[: len(enc) // 2]},
        "decoder_garbage": {"decoder_model_merged": b"\x00" * 4096},
        "decoder_is_another_model": {"decoder_model_merged": vad.read_bytes()},  # sherpa-onnx: segfault
        "swapped": {"encoder_model": src.decoder.read_bytes(), "decoder_model_merged": enc},  # sherpa: ""
    }[case]
    d = _copy_model(tmp_path / "moonshine-tiny", **replace)
    if case == "decoder_is_another_model":
        (d / "decoder_model_merged.ort").rename(d / "decoder_model_merged.onnx")
    with pytest.raises(FormatError) as err:
        Recognizer(AsrConfig(str(d)), cache_dir=tmp_path / "cache")
    assert str(d) in str(err.value)  # the message names the bad file


@needs_model
def test_a_moonshine_dir_of_your_own(tmp_path, asr_cache, rec, steady_tts):
    d = _copy_model(tmp_path / "my-moonshine")
    lay = detect_layout(AsrConfig(str(d)))
    assert (lay.kind, lay.packaged, sorted(lay.files)) == ("moonshine", False, ["decoder", "encoder", "tokenizer"])
    # sherpa-onnx's release layout: tokens.txt instead of tokenizer.bin
    (d / "tokenizer.bin").unlink()
    moonshine.ensure_tokens(moonshine.packaged_model().tokenizer, asr_cache).replace(d / "tokens.txt")
    mine = Recognizer(AsrConfig(str(d)), cache_dir=asr_cache)
    assert mine.layout.files["tokens"] == d / "tokens.txt" and "moonshine model" in mine.description
    pcm = prepare_input(*steady_tts.synthesize(SENTENCES[0]))
    assert mine.transcribe(pcm).text == rec.transcribe(pcm).text
    (d / "tokens.txt").write_text("PHVuaz4= 0\n")
    with pytest.raises(FormatError, match="tokens.txt has 1 lines; the decoder's vocabulary has 32768"):
        Recognizer(AsrConfig(str(d)), cache_dir=asr_cache)
    (d / "tokens.txt").write_text("PHVuaz4= 0\n!!!* 1\n")  # not base64: sherpa-onnx would exit(-1)
    with pytest.raises(FormatError, match="line 2 is '!!!\\* 1'; expected '<symbol> <integer id>' with a base64"):
        detect_layout(AsrConfig(str(d)))


# -- real speech ----------------------------------------------------------------------------


@needs_model
def test_piper_speech_at_22k_and_44k(rec, piper_speech):
    pairs22, pairs44 = [], []
    for text, pcm, rate in piper_speech:
        assert rate == 22050
        pairs22.append((text, rec.transcribe(prepare_input(pcm, rate)).text))
    for text, pcm, rate in piper_speech[:4]:
        pairs44.append((text, rec.transcribe(prepare_input(resample(pcm, rate, 44100), 44100)).text))
    wer22, wer44 = word_error_rate(pairs22), word_error_rate(pairs44)
    assert wer22 <= WER_BOUND, pairs22
    assert wer44 <= WER_BOUND, pairs44
    # the first sentence is recognised word for word on every machine we measured
    assert word_errors(*pairs22[0]) == (0, 8)


@needs_model
def test_espeak_speech(rec, tmp_path):
    pairs = []
    for text in SENTENCES:
        pcm, rate = _espeak(tmp_path, text)
        result = rec.transcribe(prepare_input(pcm, rate))
        assert 0 < result.compute_s and result.audio_s == pytest.approx(prepare_input(pcm, rate).size / 16000)
        pairs.append((text, result.text))
    assert word_error_rate(pairs) <= WER_BOUND, pairs


@needs_model
def test_nothing_said_is_empty_text(rec):
    rng = np.random.default_rng(0)
    for pcm in (np.zeros(0, np.float32), np.zeros(16000, np.float32), np.zeros(800, np.float32),
                (rng.standard_normal(32000) * 1e-4).astype(np.float32),  # Moonshine alone: '♪♪♪♪'
                (rng.standard_normal(800) * 0.1).astype(np.float32)):  # 50 ms: too short for its encoder
        assert rec.transcribe(pcm).text == ""


def test_word_error_rate():
    assert word_errors("Where is the nearest train station?", "'Where's the nearest train station'") == (0, 6)
    assert word_errors("Call me tomorrow.", "Call me to-morrow") == (0, 3)
    assert word_errors("Where is the old man?", "Where's the old men? Yes.") == (2, 5)  # 1 sub + 1 ins
    assert word_error_rate([("a b c", "a x c"), ("d e", "d e f")]) == pytest.approx(2 / 5)
    assert word_error_rate([]) == 0.0
