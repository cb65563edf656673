"""The conversation chain: (end of turn: VAD + ASR) -> responder -> TTS -> avatar session, stages overlapping.

Each stage runs in its own thread and hands its output on through a queue as soon as a piece
is ready: the responder streams text deltas, the TTS speaks each chunk as it completes, the
avatar loop (the caller's thread) pushes each piece of audio into the session and hands every
frame to the sink. In ``live`` mode the avatar loop keeps a real-time clock: when the next
audio has not arrived by the time the pushed audio would have played out, it pushes silence,
so a slow or failed stage shows as a closed mouth, never as a stall or drift. A stage failure
reaches the caller as :class:`PipelineError` after the session was finished cleanly (the
frames already produced stay in sync with their audio).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from huma_rt.errors import HumaError, InputError
from huma_rt.speech.audio import TARGET_RATE, prepare_input
from huma_rt.speech.pacing import PacingConfig, SynthesisPacer
from huma_rt.speech.text import ChunkAssembler, decode_text, is_speakable
from huma_rt.speech.turns import TurnConfig, TurnDetector

log = logging.getLogger(__name__)


class PipelineError(HumaError):
    """A stage of the chain failed; ``result`` holds what was produced before the failure."""

    def __init__(self, message: str, result: ChatResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class PipelineConfig:
    """live: real-time frame clock, gaps filled with silence (False: as fast as possible).
    pace_input: feed input audio at real time, as a microphone would (latencies measured from
    the true end of speech). input_chunk: samples per input push. max_answer_chars: the answer
    is cut at a chunk boundary past this length. turns: the end-of-turn decision (silero VAD
    plus the ASR's text of the utterance so far, as ``huma-rt serve`` decides it). pacing: how
    the TTS stays ahead of the live clock (``speech.pacing``)."""

    live: bool = True
    pace_input: bool = True
    input_chunk: int = 320
    max_answer_chars: int = 2000
    turns: TurnConfig = field(default_factory=TurnConfig)
    pacing: PacingConfig = field(default_factory=PacingConfig)


# Latency milestones, in chain order: (attribute, label)
MILESTONES = (
    ("user_end", "end of user speech / text in"),
    ("asr_final", "ASR text (during the silence)"),
    ("turn_end", "end of turn decided"),
    ("responder_first", "responder first chunk"),
    ("tts_first", "TTS first audio"),
    ("first_frame", "first video frame"),
)


@dataclass
class ChatResult:
    """What one turn produced, with perf_counter() timestamps of each milestone."""

    question: str = ""
    answer: str = ""
    frames: int = 0
    audio: list[np.ndarray] = field(default_factory=list)  # 16 kHz pieces pushed, in order
    silence_s: float = 0.0  # silence the frame clock inserted while waiting for a stage
    truncated: bool = False
    times: dict[str, float] = field(default_factory=dict)
    rtf: dict[str, float] = field(default_factory=dict)

    def latencies_ms(self) -> list[tuple[str, float | None, float | None]]:
        """[(label, ms since the previous milestone, ms since the user finished)]."""
        t0 = self.times.get("user_end")
        rows, prev = [], t0
        for key, label in MILESTONES:
            t = self.times.get(key)
            if t is None or t0 is None:
                rows.append((label, None, None))
                continue
            rows.append((label, 1000 * (t - prev), 1000 * (t - t0)))
            prev = t
        return rows

    def table(self) -> str:
        def fmt(v: float | None) -> str:
            return f"{v:9.1f}" if v is not None else f"{'-':>9s}"

        lines = [f"{'stage':32s} {'step ms':>9s} {'total ms':>9s}"]
        for label, step, total in self.latencies_ms():
            lines.append(f"{label:32s} {fmt(step)} {fmt(total)}")
        if self.rtf:
            lines.append("real-time factor: " + ", ".join(f"{k} {v:.3f}" for k, v in self.rtf.items()))
        if self.silence_s:
            lines.append(f"silence pushed by the live frame clock while a stage was late: {self.silence_s:.2f} s")
        return "\n".join(lines)


TTS_NICENESS = 5  # how much lower the TTS thread's CPU priority is than the frame loop's


def yield_to_frames() -> None:
    """Lower this (TTS) thread's CPU priority below the avatar's frame loop.

    Called once the first audio is out. On 2 cores the TTS synthesising the next sentences and
    the renderer's threads then compete; the frame loop must win (the first frame is due), and
    the TTS, ~5x faster than real time, still stays ahead in the time the renderer leaves.
    Linux sets priority per thread (the thread ends with the turn); elsewhere a no-op.
    """
    import os

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + TTS_NICENESS)
    except (AttributeError, OSError) as exc:  # no per-thread priority here: keep the default
        log.debug("TTS thread priority unchanged: %s", exc)


class _Done:
    pass


@dataclass
class _Failed:
    stage: str
    error: BaseException


_DONE = _Done()
FrameSink = Callable[[object], None]


def validate_question(text: str | bytes) -> str:
    """User text -> str; empty or unspeakable text is an InputError."""
    text = decode_text(text, source="question text")
    if not text.strip():
        raise InputError("question text is empty; expected at least one word")
    if not is_speakable(text):
        raise InputError(f"question text has no words (only punctuation, symbols or emoji): {text[:40]!r}")
    return text


class ChatPipeline:
    """One avatar answering: ``run_text(text, sink)`` or ``run_audio(pcm, rate, sink)``.

    avatar: a loaded ``huma_rt.Avatar`` (``session(live=...)``, ``push_audio``, ``frames``,
    ``finish``). tts: a ``PiperTTS`` (anything with ``stream_chunks``). responder: anything with
    ``respond(text)``. asr: anything with ``transcribe(pcm) -> AsrResult``; None = the shipped
    Moonshine tiny-en ``Recognizer()``, loaded by the first ``run_audio``.
    sink: called with every Frame in order (its rgb is valid only during the call).
    """

    def __init__(self, avatar, tts, responder, asr=None, config: PipelineConfig | None = None) -> None:
        self.avatar, self.tts, self.responder, self.asr = avatar, tts, responder, asr
        self.config = config or PipelineConfig()
        self._session = None

    def open(self) -> None:
        """Open the avatar session now (~0.4 s on 2 cores), outside any turn's latency.

        Turns reuse it (``session.reset()`` between turns); without ``open()`` the first turn
        opens it while its responder and TTS start.
        """
        if self._session is None:
            self._session = self.avatar.session(live=self.config.live)

    def close(self) -> None:
        """Release the avatar session."""
        session, self._session = self._session, None
        if session is not None and hasattr(session, "close"):
            session.close()

    def _turn_session(self):
        session = self._session
        if session is not None and hasattr(session, "reset"):
            session.reset()  # a new stream on the same buffers: frame indices restart at 0
            return session
        self._session = self.avatar.session(live=self.config.live)
        return self._session

    # -- entry points ------------------------------------------------------------------------
    def run_text(self, text: str | bytes, sink: FrameSink) -> ChatResult:
        question = validate_question(text)
        result = ChatResult(question=question)
        result.times["user_end"] = time.perf_counter()
        q_text: queue.Queue = queue.Queue()
        q_text.put(question)
        q_text.put(_DONE)
        return self._answer(q_text, result, sink)

    def run_audio(self, pcm: np.ndarray, sample_rate: int, sink: FrameSink) -> ChatResult:
        x = prepare_input(pcm, sample_rate, name="question audio")
        if x.size == 0:
            raise InputError("question audio is empty")
        if self.asr is None:  # the shipped Moonshine tiny-en, loaded once (before the audio is paced in)
            from huma_rt.speech.asr import Recognizer

            self.asr = Recognizer()
        heard: list = []  # the AsrResult of each decode (its real-time factor is reported)

        def transcribe(samples: np.ndarray) -> str:
            heard.append(self.asr.transcribe(samples))
            return heard[-1].text.strip()

        # before any thread: bad settings fail here. Paced like a microphone, the ASR decodes on a
        # thread of its own while the silence goes on, as in huma-rt serve; as fast as possible,
        # inline (the same decisions, deterministic)
        turns = TurnDetector(self.config.turns, transcribe, background=self.config.pace_input)
        result = ChatResult()
        q_text: queue.Queue = queue.Queue()
        listener = threading.Thread(target=self._listen, args=(turns, heard, x, q_text, result), daemon=True)
        listener.start()
        try:
            return self._answer(q_text, result, sink)
        finally:
            listener.join(timeout=5)
            turns.close()

    # -- stages ------------------------------------------------------------------------------
    def _listen(self, turns: TurnDetector, heard: list, x: np.ndarray, q_text: queue.Queue,
                result: ChatResult) -> None:  # fmt: skip
        """End-of-turn detection over the input (paced like a microphone); the first turn's text
        (transcribed by the detector during the silence) is the question."""
        try:
            step = self.config.input_chunk
            pushed_at: list[float] = []
            t_start = time.perf_counter()
            turn = None
            for i in range(0, x.size, step):
                if self.config.pace_input:
                    delay = t_start + i / TARGET_RATE - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                pushed_at.append(time.perf_counter())
                turn = next((e for e in turns.push(x[i : i + step]) if e.kind == "end"), None)
                if turn is not None:
                    break
            if turn is None:
                turn = next((e for e in turns.flush() if e.kind == "end"), None)
            if turn is None:
                raise InputError(
                    f"no speech found in the question audio ({x.size / TARGET_RATE:.2f} s; silence only?)"
                )
            if self.config.pace_input:  # the wall time at which the last speech sample was spoken
                result.times["user_end"] = min(t_start + turn.end / TARGET_RATE, turn.at)
            else:  # as fast as possible: when the chunk holding the last speech sample went in
                result.times["user_end"] = pushed_at[min(max(turn.end - 1, 0) // step, len(pushed_at) - 1)]
            result.times["asr_final"] = turns.asr_done_at if turns.asr_done_at is not None else turn.at
            result.times["turn_end"] = turn.at
            result.rtf["turns"] = turns.busy_s / max(turns.pushed_samples / TARGET_RATE, 1e-9)
            if heard:
                result.rtf["asr"] = heard[-1].rtf
            text = (turn.text or "").strip()
            result.question = text
            log.info("ASR: %r (%.2f s of speech, turn ended: %s)", text, turn.samples.size / TARGET_RATE, turn.reason)
            if not text:
                raise InputError("the ASR model heard nothing it could transcribe in the question audio")
            q_text.put(text)
            q_text.put(_DONE)
        except BaseException as exc:  # handed to the caller through the queue
            q_text.put(_Failed("listening (VAD/ASR)", exc))

    def _respond(self, q_text: queue.Queue, q_chunks: queue.Queue, result: ChatResult, stop: threading.Event) -> None:
        try:
            item = q_text.get()
            if isinstance(item, _Failed):
                q_chunks.put(item)
                return
            assembler = ChunkAssembler(max_total=self.config.max_answer_chars)
            parts = []
            for delta in self.responder.respond(item):
                if stop.is_set():  # the avatar loop is gone; let the TTS thread end too
                    q_chunks.put(_DONE)
                    return
                if "responder_first" not in result.times:
                    result.times["responder_first"] = time.perf_counter()
                parts.append(delta)
                for chunk in assembler.feed(delta):
                    q_chunks.put(chunk)
                if assembler.truncated:
                    break
            for chunk in assembler.close():
                q_chunks.put(chunk)
            result.answer = "".join(parts)
            result.truncated = assembler.truncated
            if assembler.released == 0:
                raise InputError(f"the responder's answer has nothing speakable: {result.answer[:60]!r}")
            if assembler.truncated:
                log.warning("answer cut at %d characters (max_answer_chars)", assembler.released)
            q_chunks.put(_DONE)
        except BaseException as exc:
            q_chunks.put(_Failed("responder", exc))

    def _speak(self, q_chunks: queue.Queue, q_audio: queue.Queue, result: ChatResult, stop: threading.Event) -> None:
        failure: list[_Failed] = []
        made_s = 0.0  # seconds of audio handed to the avatar loop

        def ahead_s() -> float:
            """Audio made and not yet played: the live clock plays from the first audio on."""
            t0 = result.times.get("tts_first")
            return t0 + made_s - time.perf_counter() if self.config.live and t0 is not None else math.inf

        # the first audio is on the critical path; then each next piece is, until enough audio
        # waits ahead: the pacer cuts a piece that would be late, and then lets the frames first
        pacer = SynthesisPacer(self.tts, ahead_s, yield_to_frames, self.config.pacing)
        try:
            while not stop.is_set():
                item = q_chunks.get()
                if isinstance(item, _Failed):
                    failure.append(item)
                    break
                if item is _DONE:
                    break
                for piece in pacer.pieces(item):
                    if stop.is_set():
                        break
                    for pcm, _chunk in self.tts.stream_chunks([piece], starts_answer="tts_first" not in result.times):
                        if "tts_first" not in result.times:
                            result.times["tts_first"] = time.perf_counter()
                        q_audio.put(pcm)
                        made_s += pcm.size / TARGET_RATE
                        pacer.audio_out()
            q_audio.put(failure[0] if failure else _DONE)
        except BaseException as exc:
            q_audio.put(_Failed("TTS", exc))

    # -- the avatar loop (caller's thread) ---------------------------------------------------
    def _answer(self, q_text: queue.Queue, result: ChatResult, sink: FrameSink) -> ChatResult:
        q_chunks: queue.Queue = queue.Queue()
        q_audio: queue.Queue = queue.Queue()
        stop = threading.Event()
        workers = [
            threading.Thread(target=self._respond, args=(q_text, q_chunks, result, stop), daemon=True),
            threading.Thread(target=self._speak, args=(q_chunks, q_audio, result, stop), daemon=True),
        ]
        for w in workers:
            w.start()
        # Opening a session costs ~0.4 s on the 2-core machine (buffers, bindings): reused
        # across turns, and when first opened here, done while the responder and TTS start.
        try:
            session = self._turn_session()
        except BaseException:
            stop.set()
            raise
        tts_stats = getattr(self.tts, "stats", None)
        tts_before = (tts_stats.compute_s, tts_stats.audio_s) if tts_stats else None
        failure: _Failed | None = None
        render_s = 0.0
        frame_samples = TARGET_RATE // int(getattr(self.avatar, "fps", 25))
        silence = np.zeros(frame_samples, np.float32)
        pushed = 0
        t_play = None  # wall time at which pushed audio sample 0 "plays"

        def push(pcm: np.ndarray) -> None:
            nonlocal pushed, render_s
            t0 = time.perf_counter()
            session.push_audio(pcm, sample_rate=TARGET_RATE)
            result.audio.append(pcm)
            pushed += pcm.size
            self._drain(session.frames(), result, sink)
            render_s += time.perf_counter() - t0

        try:
            while True:
                timeout = None
                if self.config.live and t_play is not None:
                    timeout = max(0.0, t_play + pushed / TARGET_RATE - time.perf_counter())
                try:
                    item = q_audio.get(timeout=timeout)
                except queue.Empty:  # a stage is late: keep the clock with one frame of silence
                    push(silence)
                    result.silence_s += silence.size / TARGET_RATE
                    continue
                if item is _DONE:
                    break
                if isinstance(item, _Failed):
                    failure = item
                    break
                if t_play is None:
                    t_play = time.perf_counter()
                push(item)
        finally:
            stop.set()
            t0 = time.perf_counter()
            if pushed:
                session.finish()
                self._drain(session.frames(), result, sink)
            render_s += time.perf_counter() - t0
            for w in workers:
                w.join(timeout=1.0)
        if result.frames:
            result.rtf["avatar"] = render_s / (result.frames / float(getattr(self.avatar, "fps", 25)))
        if tts_stats and tts_stats.audio_s > tts_before[1]:
            result.rtf["tts"] = (tts_stats.compute_s - tts_before[0]) / (tts_stats.audio_s - tts_before[1])
        if failure is not None:
            err = failure.error
            if isinstance(err, InputError) and not result.frames:
                raise err  # bad input: nothing was produced, the plain message says it all
            raise PipelineError(
                f"{failure.stage} failed: {err}; the avatar produced {result.frames} frames "
                f"({result.frames / float(getattr(self.avatar, 'fps', 25)):.2f} s) before it",
                result,
            ) from err
        return result

    @staticmethod
    def _drain(frames, result: ChatResult, sink: FrameSink) -> None:
        for frame in frames:
            if result.frames == 0:
                result.times["first_frame"] = time.perf_counter()
            sink(frame)
            result.frames += 1
