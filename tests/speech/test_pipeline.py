"""The chain with real VAD, real Piper TTS and real responders. The avatar is the labelled
stand-in of tests/speech/_speech_standin.py until huma_rt.runtime lands; the ASR is a labelled double,
the tiny hand-built transducer, or (test_default_asr_is_the_shipped_moonshine) the shipped model."""

from __future__ import annotations

import time

import numpy as np
import pytest
from _speech_standin import StandInAvatar

from huma_rt.errors import InputError
from huma_rt.speech.asr import AsrResult
from huma_rt.speech.pipeline import ChatPipeline, PipelineConfig, PipelineError
from huma_rt.speech.responder import EchoResponder, ResponderError, ScriptedResponder
from huma_rt.speech.turns import TurnConfig

pytest.importorskip("sherpa_onnx")


class Frames:
    def __init__(self):
        self.spans = []

    def __call__(self, frame):
        assert int(frame.rgb[0, 0, 0]) == frame.index % 256  # rgb valid during the call
        self.spans.append((frame.index, frame.sample_start, frame.sample_end))


def _check_sync(result, frames: Frames):
    total = sum(p.size for p in result.audio)
    assert len(frames.spans) == result.frames == -(-total // 640)
    for i, (index, start, end) in enumerate(frames.spans):
        assert (index, start, end) == (i, 640 * i, 640 * i + 640)


class _ScriptedAsrDouble:
    """TEST DOUBLE for an ASR model: says a fixed text, records what it was handed."""

    def __init__(self, text="what is the weather like"):
        self.text, self.heard = text, []

    def transcribe(self, pcm):
        self.heard.append(pcm.size)
        return AsrResult(self.text, 0.01, pcm.size / 16000)


class _FailingResponder:
    """A responder (our own protocol) whose endpoint dies after the first sentence."""

    def respond(self, text):
        yield "Here is the first sentence of my answer. "
        yield "And then"
        raise ResponderError("responder http://127.0.0.1:9/v1/chat/completions dropped the connection mid-answer")


class _SlowResponder:
    def respond(self, text):
        yield "One moment. "
        time.sleep(1.2)
        yield "Done."


def test_text_to_frames_with_latency_table(tts):
    pipe = ChatPipeline(StandInAvatar(), tts, EchoResponder(), config=PipelineConfig(live=False))
    frames = Frames()
    result = pipe.run_text("Hello avatar, how are you?", frames)
    assert result.answer == "You said: Hello avatar, how are you?"
    _check_sync(result, frames)
    t = result.times
    assert t["user_end"] <= t["responder_first"] <= t["tts_first"] <= t["first_frame"]
    table = result.table()
    for label in ("responder first chunk", "TTS first audio", "first video frame", "real-time factor"):
        assert label in table
    assert 0 < result.rtf["tts"] < 2


def test_live_clock_fills_a_slow_stage_with_silence(tts):
    avatar = StandInAvatar()
    pipe = ChatPipeline(avatar, tts, _SlowResponder(), config=PipelineConfig(live=True))
    frames = Frames()
    result = pipe.run_text("Are you there?", frames)
    _check_sync(result, frames)
    assert result.silence_s > 0.2  # the 1.2 s pause showed as silence, not a stall


def test_live_a_chunk_the_tts_would_make_late_is_cut_so_no_silence_is_pushed(voice_cache):
    """Live, a short first chunk then a long sentence that a busy core makes in more time than
    the first chunk's audio lasts: made whole, the clock pushes silence (the listener hears a
    gap); paced, it is cut into a first piece made in time and no silence is pushed."""
    from _busy_core import LATE_REPLY, Unpaced, busy_piper  # tests/_busy_core.py

    tts = busy_piper(voice_cache)
    silence, pieces = [], []
    for voice in (Unpaced(tts), tts):
        calls = tts.stats.calls
        result = ChatPipeline(StandInAvatar(), voice, ScriptedResponder([LATE_REPLY]),
                              config=PipelineConfig(live=True)).run_text("What is the weather like?", Frames())  # fmt: skip
        assert result.answer == LATE_REPLY
        silence.append(result.silence_s)
        pieces.append(tts.stats.calls - calls)
    assert pieces[0] == 2 and pieces[1] >= 3, pieces
    assert silence[0] >= 0.2 and silence[1] == 0.0, silence


def test_stage_failure_is_a_clear_error_and_frames_stay_in_sync(tts):
    avatar = StandInAvatar()
    frames = Frames()
    with pytest.raises(PipelineError, match="responder failed: .*dropped the connection.*produced \\d+ frames") as info:
        ChatPipeline(avatar, tts, _FailingResponder(), config=PipelineConfig(live=False)).run_text("Hi", frames)
    result = info.value.result
    assert result.frames > 25 and avatar.sessions[0].finished
    _check_sync(result, frames)


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "empty"), (" \n ", "empty"), ("😀🎉", "no words"), ("?!...", "no words"),
     (b"\xff\xfehello", "not valid UTF-8")],
)
def test_bad_text_fails_before_any_session(tts, text, match):
    avatar = StandInAvatar()
    with pytest.raises(InputError, match=match):
        ChatPipeline(avatar, tts, EchoResponder()).run_text(text, Frames())
    assert avatar.sessions == []


def test_unspeakable_answer_is_an_error_not_an_empty_video(tts):
    avatar = StandInAvatar()
    with pytest.raises(InputError, match="nothing speakable"):
        ChatPipeline(avatar, tts, ScriptedResponder(["🙂 ... !!!"])).run_text("hi", Frames())
    assert all(s.pushed == 0 for s in avatar.sessions)


def test_long_text_is_answered_and_cut(tts):
    frames = Frames()
    cfg = PipelineConfig(live=False, max_answer_chars=60)
    pipe = ChatPipeline(StandInAvatar(), tts, EchoResponder(), config=cfg)
    result = pipe.run_text("tell me more. " * 720, frames)  # 10 080 characters
    assert result.truncated and 0 < result.frames < 25 * 10
    _check_sync(result, frames)


def _question(question_pcm, rate):
    from huma_rt.speech.audio import resample

    pcm = np.concatenate([np.zeros(8000, np.float32), question_pcm, np.zeros(16000, np.float32)])
    return resample(pcm, 16000, rate) if rate != 16000 else pcm


@pytest.mark.parametrize("rate", [8000, 48000])
def test_speech_question_stereo_any_rate(tts, question_pcm, tiny_asr_dir, rate):
    from huma_rt.speech.asr import AsrConfig, Recognizer

    asr = Recognizer(AsrConfig(str(tiny_asr_dir)))  # real sherpa-onnx recognizer, tiny model
    pcm = _question(question_pcm, rate)
    stereo = np.stack([pcm, pcm * 0.5], axis=1)
    cfg = PipelineConfig(live=False, pace_input=False, turns=TurnConfig())
    frames = Frames()
    pipe = ChatPipeline(StandInAvatar(), tts, ScriptedResponder(["Sure, it is sunny."]), asr=asr, config=cfg)
    result = pipe.run_audio(stereo, rate, frames)
    # The tiny model says 'a' per loud 10 ms frame: ASR heard the utterance the VAD cut out.
    assert set(result.question) == {"a"} and 50 < len(result.question) < question_pcm.size / 160
    assert result.answer == "Sure, it is sunny."
    t = result.times
    assert t["user_end"] <= t["asr_final"] <= t["turn_end"] <= t["responder_first"] <= t["first_frame"]
    assert "turns" in result.rtf and "asr" in result.rtf
    _check_sync(result, frames)


def test_default_asr_is_the_shipped_moonshine(tts, steady_tts, voice_cache, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("moonshine_voice") is None:
        pytest.skip("needs moonshine-voice==0.1.0 (pip install --no-deps)")
    from huma_rt.speech.asr_eval import word_errors

    monkeypatch.setenv("HUMA_RT_CACHE", str(voice_cache))
    cfg = PipelineConfig(live=False, pace_input=False, turns=TurnConfig())
    pipe = ChatPipeline(StandInAvatar(), tts, EchoResponder(), config=cfg)  # no asr given
    frames = Frames()
    spoken = "Can you tell me a short story about a dragon?"
    pcm, rate = steady_tts.synthesize(spoken)  # the Piper voice at 22.05 kHz, the same audio every run
    padded = np.concatenate([np.zeros(rate // 2, np.float32), pcm, np.zeros(rate, np.float32)])
    result = pipe.run_audio(padded, rate, frames)
    assert "Moonshine tiny-en" in pipe.asr.description
    # the VAD's cut of this Piper sentence is measured word for word; 2 slips of 10 allowed
    assert word_errors(spoken, result.question)[0] <= 2, result.question
    assert result.answer == f"You said: {result.question}" and "asr" in result.rtf
    _check_sync(result, frames)


def test_turn_detector_hands_only_the_utterance_to_asr(tts, question_pcm):
    asr = _ScriptedAsrDouble()
    cfg = PipelineConfig(live=False, pace_input=True, turns=TurnConfig())
    pipe = ChatPipeline(StandInAvatar(), tts, ScriptedResponder(["Okay."]), asr=asr, config=cfg)
    t0 = time.perf_counter()
    result = pipe.run_audio(_question(question_pcm, 16000), 16000, Frames())
    # the last decode (the one whose text ended the turn) is the whole utterance, not the silence
    assert abs(asr.heard[-1] - question_pcm.size) < 0.3 * 16000
    # Paced like a microphone: the answer cannot start before the question was spoken.
    assert result.times["user_end"] - t0 > 0.9 * (8000 + question_pcm.size) / 16000


def test_speech_bad_inputs(tts):
    pipe = ChatPipeline(StandInAvatar(), tts, EchoResponder(), asr=_ScriptedAsrDouble(),
                        config=PipelineConfig(pace_input=False))
    with pytest.raises(InputError, match="no speech found"):
        pipe.run_audio(np.zeros(2 * 16000, np.float32), 16000, Frames())
    bad = np.zeros(16000, np.float32)
    bad[100] = np.nan
    with pytest.raises(InputError, match="NaN"):
        pipe.run_audio(bad, 16000, Frames())
    with pytest.raises(InputError, match="question audio is empty"):  # before the default ASR loads
        ChatPipeline(StandInAvatar(), tts, EchoResponder()).run_audio(np.zeros(0, np.float32), 16000, Frames())


def test_tts_failure_mid_answer(tts):
    class _BrokenAfterFirst:
        """The real voice for the first chunk, then a failing one (e.g. a corrupt voice file)."""

        stats = tts.stats
        made = 0

        def stream_chunks(self, chunks, **kw):
            for item in tts.stream_chunks(chunks, **kw):
                if self.made == 1:
                    raise RuntimeError("onnxruntime: cannot allocate memory")
                self.made += 1
                yield item

    avatar, frames = StandInAvatar(), Frames()
    pipe = ChatPipeline(avatar, _BrokenAfterFirst(), ScriptedResponder(["Sure, I can. Then more words here."]),
                        config=PipelineConfig(live=True))
    with pytest.raises(PipelineError, match="TTS failed: onnxruntime: cannot allocate memory") as info:
        pipe.run_text("hi", frames)
    assert info.value.result.frames > 0 and avatar.sessions[0].finished
    _check_sync(info.value.result, frames)


def test_real_avatar_two_turns_reuse_one_session(tts, small_bundle):
    from huma_rt.runtime import Avatar

    avatar = Avatar.load(small_bundle)
    pipe = ChatPipeline(avatar, tts, ScriptedResponder(["Hi there.", "Bye now."]), config=PipelineConfig(live=True))
    pipe.open()
    try:
        for reply in ("Hi there.", "Bye now."):
            frames = Frames.__new__(Frames)
            frames.spans = []
            shapes = set()

            def sink(frame, frames=frames, shapes=shapes):
                shapes.add((frame.rgb.shape, frame.rgb.dtype.str))
                frames.spans.append((frame.index, frame.sample_start, frame.sample_end))

            result = pipe.run_text("hello", sink)
            assert result.answer == reply
            _check_sync(result, frames)  # indices restart at 0 on the reused session
            assert shapes == {((128, 128, 3), "|u1")}
    finally:
        pipe.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="no per-thread priority")
def test_tts_thread_yields_cpu_to_the_frame_loop_after_its_first_audio(tts):
    """After the first audio the TTS thread runs TTS_NICENESS below the caller (Linux: per
    thread), so the frames win the 2 cores; the caller's own priority is left alone. (Not live,
    no clock plays the audio: it is at once "enough ahead". Live, the pacer waits for
    ``pacing.yield_ahead_s`` of audio ahead: tests/speech/test_pacing.py.)"""
    import os
    import threading

    from huma_rt.speech import pipeline as pl

    seen = []
    real_stream = tts.stream_chunks

    def spying_stream(chunks, **kw):
        for pcm, chunk in real_stream(chunks, **kw):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            yield pcm, chunk

    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    tts.stream_chunks = spying_stream
    try:
        pipe = ChatPipeline(StandInAvatar(), tts, ScriptedResponder(["First part. Second part."]),
                            config=PipelineConfig(live=False))
        pipe.run_text("hello", Frames())
    finally:
        del tts.stream_chunks
    assert seen[0] == base  # the first audio: full priority (it is on the critical path)
    assert seen[1] == min(base + pl.TTS_NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
