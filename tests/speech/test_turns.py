"""End-of-turn detection on real speech (espeak-ng) with the shipped recogniser: a question ends
after a short silence, words that lead into more wait for the long one, speech that comes back
continues the utterance, and the events do not depend on how the audio is chunked."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from _espeak import espeak

from huma_rt.errors import InputError
from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector, looks_finished

RATE = 16000
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("moonshine_voice") is None or importlib.util.find_spec("sherpa_onnx") is None,
    reason="needs moonshine-voice==0.1.0 (pip install --no-deps) and sherpa-onnx",
)


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    from huma_rt.speech.asr import Recognizer

    rec = Recognizer(cache_dir=tmp_path_factory.mktemp("asr-cache"))
    return lambda pcm: rec.transcribe(pcm).text.strip()


@pytest.fixture(scope="module")
def prob():
    return SpeechProbability()


def _trim(pcm: np.ndarray) -> np.ndarray:
    """The clip without espeak-ng's leading and trailing silence (so pauses are what a test says)."""
    loud = np.flatnonzero(np.abs(pcm) > 0.01)
    return pcm[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("turns")
    return {
        "question": _trim(espeak("What is the weather like today in Paris?", tmp / "q.wav")),
        "lead": _trim(espeak("Tell me about the weather and", tmp / "lead.wav")),
        "rest": _trim(espeak("the trains in Paris.", tmp / "rest.wav")),
    }


def _silence(s: float) -> np.ndarray:
    return np.zeros(int(s * RATE), np.float32)


def _stream(det: TurnDetector, pcm: np.ndarray, chunk: int = 320) -> list[tuple[int, object]]:
    """-> [(stream samples pushed when the event came, event)]."""
    out = []
    for i in range(0, pcm.size, chunk):
        for ev in det.push(pcm[i : i + chunk]):
            out.append((det.pushed_samples, ev))
    return out


def test_looks_finished():
    assert looks_finished("What is the weather like today in Paris?")
    assert looks_finished("Turn off the lights, please.")
    assert not looks_finished("Tell me about the weather and.")  # the recogniser ends with a period
    assert not looks_finished("Well, I was wondering whether")
    assert not looks_finished("So, um")
    assert not looks_finished("I need,")
    assert not looks_finished("")
    assert not looks_finished("  ...  ")


def test_question_ends_after_the_short_silence(speech, asr, prob):
    cfg = TurnConfig()
    det = TurnDetector(cfg, asr, probability=prob)
    events = _stream(det, np.concatenate([_silence(0.5), speech["question"], _silence(1.5)]))
    kinds = [ev.kind for _, ev in events]
    # a gap between two words may be a pause (then a resume); one turn, one end, at the end
    assert kinds[0] == "speech" and kinds[-2:] == ["pause", "end"] and kinds.count("end") == 1, kinds
    at, end = events[-1]
    assert end.reason == "finished" and "paris" in end.text.lower() and end.text.endswith("?")
    # decided one question-silence after the first silent window, long before the long silence
    pause_at = events[-2][0]
    assert pause_at - end.end <= 3 * 512 + 320
    assert at - pause_at <= cfg.question_silence_s * RATE + 512 + 320
    assert at - end.end < cfg.long_silence_s * RATE
    # the utterance's audio is the speech with its pre-roll, not the trailing silence
    assert end.samples.size == end.end - end.start + 512 * (-(-int(cfg.pre_roll_s * RATE) // 512)) or \
        end.samples.size >= end.end - end.start  # fmt: skip
    assert end.samples.size <= end.end - end.start + int((cfg.pre_roll_s + 0.1) * RATE)


def test_unfinished_words_wait_and_the_utterance_continues(speech, asr, prob):
    cfg = TurnConfig()
    det = TurnDetector(cfg, asr, probability=prob)
    pause = 0.45  # longer than the statement silence, shorter than the long one
    clip = np.concatenate([_silence(0.5), speech["lead"], _silence(pause), speech["rest"], _silence(1.5)])
    events = _stream(det, clip)
    kinds = [ev.kind for _, ev in events]
    assert kinds.count("end") == 1, kinds
    assert "resume" in kinds, kinds
    end = events[-1][1]
    words = end.text.lower()
    assert "tell me" in words and "trains" in words, end.text  # both parts, one utterance
    # the same pause after words that sound finished ends the turn there
    det2 = TurnDetector(cfg, asr, probability=prob)
    clip2 = np.concatenate([_silence(0.5), speech["question"], _silence(pause), speech["rest"], _silence(1.5)])
    ends = [ev for _, ev in _stream(det2, clip2) if ev.kind == "end"]
    assert len(ends) == 2 and "paris" in ends[0].text.lower()


def test_without_asr_every_turn_waits_the_long_silence(speech, prob):
    cfg = TurnConfig()
    det = TurnDetector(cfg, None, probability=prob)
    events = _stream(det, np.concatenate([_silence(0.5), speech["question"], _silence(1.5)]))
    at, end = events[-1]
    assert end.kind == "end" and end.reason == "silence" and end.text is None
    assert cfg.long_silence_s * RATE <= at - end.end <= (cfg.long_silence_s + 0.25) * RATE


def test_events_do_not_depend_on_chunking(speech, asr, prob):
    clip = np.concatenate([_silence(0.3), speech["lead"], _silence(0.45), speech["question"], _silence(1.0)])
    seen = []
    for chunk in (320, 777, 4096):
        det = TurnDetector(TurnConfig(), asr, probability=prob)
        seen.append([(ev.kind, ev.start, ev.end, ev.text) for _, ev in _stream(det, clip, chunk)])
    assert seen[0] == seen[1] == seen[2]


def test_a_background_text_is_announced_and_poll_ends_the_turn_without_more_audio(speech, asr, prob):
    """Live streams: the reader learns the speculative text is ready (``on_text``) and ``poll``
    decides the end then, instead of at the next packet."""
    import threading

    gate, ready = threading.Event(), threading.Semaphore(0)  # one release per text made (or dropped)
    texts = []

    def gated(pcm):  # the real recogniser, held until all the audio below was pushed
        gate.wait(30)
        texts.append(asr(pcm))
        return texts[-1]

    det = TurnDetector(TurnConfig(), gated, probability=prob, background=True, on_text=ready.release)
    try:
        clip = np.concatenate([_silence(0.5), speech["question"], _silence(0.3)])  # under the long silence
        kinds = [ev.kind for _, ev in _stream(det, clip)]
        assert "pause" in kinds and "end" not in kinds, kinds  # no text yet: nothing decided
        assert det.poll() == []
        gate.set()
        ends = []
        while not ends:  # a pause between two words may have queued a text before the last one
            assert ready.acquire(timeout=30), "on_text was not called when the text was ready"
            ends = det.poll()
        (end,) = ends
        assert end.kind == "end" and end.reason == "finished" and end.text == texts[-1]
        assert "paris" in end.text.lower() and det.poll() == [] and not det.speaking
    finally:
        gate.set()
        det.close()


def test_flush_and_max_speech(speech, prob):
    det = TurnDetector(TurnConfig(max_speech_s=1.0), None, probability=prob)
    events = [ev for _, ev in _stream(det, np.concatenate([_silence(0.3), speech["question"]]))]
    assert [ev.reason for ev in events if ev.kind == "end"][:1] == ["max_speech"]
    det = TurnDetector(TurnConfig(), None, probability=prob)
    _stream(det, np.concatenate([_silence(0.3), speech["question"][:16000]]))
    assert det.speaking
    (end,) = det.flush()
    assert end.kind == "end" and end.samples.size > 8000 and not det.speaking


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"threshold": 0.3, "off_threshold": 0.5}, "off_threshold"),
        ({"short_silence_s": 0.9}, "short_silence_s (0.9)"),
        ({"question_silence_s": 0.0}, "question_silence_s"),
        ({"pre_roll_s": 2.0}, "pre_roll_s"),
        ({"energy_drop_db": 5.0}, r"energy_drop_db must be 0 (off) or in \[10, 80\] dB; got 5.0"),
        ({"energy_drop_db": -35.0}, "energy_drop_db"),
        ({"early_asr_db": 90.0}, r"early_asr_db must be 0 (off) or in \[10, 80\] dB; got 90.0"),
        ({"early_asr_windows": 0}, "early_asr_windows must be an integer >= 1; got 0"),
        ({"early_asr_windows": 1.5}, "early_asr_windows must be an integer >= 1; got 1.5"),
    ],
)
def test_bad_config_is_refused(fields, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        TurnConfig(**fields).validate()


def test_digital_silence_skips_the_model(speech, prob):
    prob.reset()
    assert prob(np.zeros(512, np.float32)) == 0.0
    window = speech["question"][8000 : 8000 + 512]
    assert max(prob(speech["question"][i : i + 512]) for i in range(0, 16000, 512)) > 0.5
    assert np.any(np.abs(window) > 3e-5)
    prob.reset()


def test_bad_audio_is_refused(prob):
    det = TurnDetector(TurnConfig(), None, probability=prob)
    bad = np.zeros(640, np.float32)
    bad[100] = np.nan
    with pytest.raises(InputError, match="NaN"):
        det.push(bad)
    assert det.pushed_samples == 0, "refused audio is not half-consumed"


def test_a_quiet_microphone_skips_the_model_but_not_speech(speech, prob):
    """The quiet gate: low noise (a muted microphone's decoded audio is not digital zeros) is
    passed over without silero once it has lasted, and the turns found are those found with the
    model run on every window, for speech at its level and 26 dB quieter."""
    rng = np.random.default_rng(0)

    def noise(s: float) -> np.ndarray:  # -74 dBFS RMS
        return rng.normal(0.0, 2e-4, int(s * RATE)).astype(np.float32)

    for gain in (1.0, 0.05):
        pcm = np.concatenate([noise(3.5), gain * speech["lead"], noise(0.4), gain * speech["rest"], noise(3.0),
                              gain * speech["question"], noise(1.0)]).astype(np.float32)  # fmt: skip
        got = {}
        for rms in (0.0, 1e-3):
            det = TurnDetector(TurnConfig(quiet_gate_rms=rms), None, probability=prob)
            events = [(ev.kind, ev.start, ev.end) for _, ev in _stream(det, pcm)]
            got[rms] = (events + [(ev.kind, ev.start, ev.end) for ev in det.flush()], det.gated)
        assert got[0.0][1] == 0
        assert got[1e-3][1] > 1.0 * RATE / 512, "the model was run on the long quiet stretches"
        assert [k for k, _, _ in got[0.0][0]].count("speech") >= 2, got[0.0][0]
        # silero's state differs after the gate (it drifts on noise; see TurnConfig): the same turns, their
        # bounds within a window or two
        (off, _), (on, _) = got[0.0], got[1e-3]
        assert [k for k, _, _ in on] == [k for k, _, _ in off], (gain, on, off)
        assert all(abs(a[1] - b[1]) <= 1024 and abs(a[2] - b[2]) <= 1024 for a, b in zip(on, off, strict=True)), (gain, on, off)


def _noisy(pieces: list[np.ndarray], rms: float = 1e-3, seed: int = 0) -> np.ndarray:
    """The pieces on a floor of -60 dBFS noise (a live microphone's silence is not zeros; silero
    goes on calling a window or more of it speech after the speech)."""
    pcm = np.concatenate(pieces).astype(np.float32)
    return (pcm + np.random.default_rng(seed).normal(0.0, rms, pcm.size)).astype(np.float32)


def test_the_energy_clock_starts_at_the_audible_end_and_the_audio_still_reaches_silero_end(speech, asr, prob):
    """energy_drop_db: the silence rules count from the window where the energy fell (the
    known end of the trimmed speech), not from silero's later end; the ASR still gets all the
    audio up to silero's end, so the text and samples are those without the rule."""
    lead = int(0.5 * RATE)
    pcm = _noisy([_silence(0.5), speech["question"], _silence(1.5)])
    true_end = lead + speech["question"].size
    got = {}
    for db in (0.0, 35.0):
        det = TurnDetector(TurnConfig(energy_drop_db=db), asr, probability=prob)
        events = _stream(det, pcm)
        ends = [(at, ev) for at, ev in events if ev.kind == "end"]
        assert len(ends) == 1, [ev.kind for _, ev in events]
        got[db] = ends[0]
    (at_off, off), (at_on, on) = got[0.0], got[35.0]
    assert off.silence_start == off.end  # without the rule the clock starts at silero's end
    assert off.end > true_end + 256, "silero called the noise after the speech speech (the lag the rule is for)"
    # with it: at the window where the speech ended (windows are 512 samples), before silero's end
    assert true_end - 512 <= on.silence_start <= true_end + 512 < on.end, (true_end, on.silence_start, on.end)
    assert on.end == off.end and on.start == off.start  # silero's utterance, unchanged
    assert np.array_equal(on.samples, off.samples) and on.text == off.text  # all the audio, the same text
    assert on.samples.size >= on.end - on.start and "paris" in on.text.lower()
    # decided earlier by what the clock gained, and never before silero's end
    assert at_off - at_on >= (on.end - on.silence_start) - 512 - 320 and at_on > on.end
    assert on.reason == off.reason == "finished"


def test_a_soft_ending_does_not_start_the_energy_clock(speech, prob):
    """Speech 20 dB under its loudest window (a soft ending, a fricative) is not silence."""
    q = speech["question"]
    soft = 0.1 * q[q.size // 3 : q.size // 3 + int(0.3 * RATE)]  # voiced speech at -20 dB
    pcm = _noisy([_silence(0.5), q, soft, _silence(1.5)])
    end_of_soft = int(0.5 * RATE) + q.size + soft.size
    det = TurnDetector(TurnConfig(energy_drop_db=35.0), None, probability=prob)
    (end,) = [ev for _, ev in _stream(det, pcm) if ev.kind == "end"]
    assert end.end >= end_of_soft - 512, "silero heard the soft speech"
    assert end.silence_start >= end_of_soft - 512, (end.silence_start, end_of_soft)


def test_the_early_asr_transcribes_at_the_audible_end_and_its_text_stands(speech, asr, prob):
    """early_asr_db: the speculative ASR runs at the first window 35 dB under the utterance's
    loudest, while silero still calls the noise after the speech speech, on the audio up to
    that window; its text is the turn's (the end event still carries all the audio up to
    silero's end, and the silence rules still count from there)."""
    lead = int(0.5 * RATE)
    pcm = _noisy([_silence(0.5), speech["question"], _silence(1.5)])
    true_end = lead + speech["question"].size
    got, calls = {}, {}
    for db in (0.0, 35.0):
        seen: list[tuple[int, int]] = []  # (samples pushed when the ASR was called, samples it got)
        box: list[TurnDetector] = []

        def transcribe(x, seen=seen, box=box):
            seen.append((box[0].pushed_samples, x.size))
            return asr(x)

        det = TurnDetector(TurnConfig(early_asr_db=db, early_asr_windows=1), transcribe, probability=prob)
        box.append(det)
        events = _stream(det, pcm, chunk=512)
        ends = [(at, ev) for at, ev in events if ev.kind == "end"]
        assert len(ends) == 1, [ev.kind for _, ev in events]
        got[db], calls[db] = ends[0], seen
        # espeak's gaps between words are quiet windows too: each starts a decode that the
        # louder word after it drops; the last one is the turn's
        assert (det.early_asr_runs >= 1) if db else det.early_asr_runs == 0
    (_, off), (_, on) = got[0.0], got[35.0]
    (at_off, n_off), (at_on, n_on) = calls[0.0][-1], calls[35.0][-1]
    assert on.end > true_end + 256, "silero called the noise after the speech speech"
    # at the first window after the speech (windows are 512 samples), before silero's pause
    assert at_on <= true_end + 2 * 512 and at_on <= on.end < at_off, (at_on, true_end, on.end, at_off)
    assert at_off - at_on >= 512, "the decode started a window or more sooner"
    assert n_off - (on.end - true_end) - 512 <= n_on <= n_off, (n_on, n_off)  # the audio up to the drop
    assert on.end == off.end and np.array_equal(on.samples, off.samples)  # silero's utterance, unchanged
    assert "paris" in on.text.lower() and on.text.endswith("?") and on.reason == "finished", on.text


def test_speech_after_the_early_asr_drops_its_text(speech, asr, prob):
    """A quiet window inside the utterance starts the early ASR; the louder speech after it drops
    that text, and the turn's text is of the whole utterance."""
    gap = _silence(0.07)  # a breath: two windows of the noise floor, too short for silero's pause
    pcm = _noisy([_silence(0.5), speech["lead"], gap, speech["rest"], _silence(1.5)])
    det = TurnDetector(TurnConfig(early_asr_windows=1), asr, probability=prob)
    ends = [ev for _, ev in _stream(det, pcm) if ev.kind == "end"]
    assert len(ends) == 1 and det.early_asr_runs >= 2, det.early_asr_runs  # in the gap, then at the end
    words = ends[0].text.lower()
    assert "tell me" in words and "trains" in words, ends[0].text


def test_the_speculative_text_is_offered_during_the_silence_before_the_end(speech, asr, prob):
    """``speculative_text``: None while the visitor speaks; during the silence, once the ASR is
    done, the very text the end will carry (what a caller may start answering)."""
    det = TurnDetector(TurnConfig(question_silence_s=0.3, short_silence_s=0.3), asr, probability=prob)
    pcm = _noisy([_silence(0.5), speech["question"], _silence(1.0)])
    offered, end = [], None
    for i in range(0, pcm.size, 320):
        events = det.push(pcm[i : i + 320])
        if det.speaking:
            assert det.speculative_text is None
        elif det.speculative_text is not None:
            offered.append((det.pushed_samples, det.speculative_text))
        end = next((ev for ev in events if ev.kind == "end"), end)
    assert end is not None and offered, "offered before the end"
    assert {t for _, t in offered} == {end.text} and "paris" in end.text.lower()
    assert offered[0][0] <= end.end + int(0.3 * RATE), "offered well before the 0.3 s silence was over"
    assert det.speculative_text is None  # the turn is over
