"""One visitor's conversation: microphone audio in, avatar frames with their audio out.

Three kinds of threads, all owned by :class:`Conversation`:

- the frame clock (``_tick_loop``): every 1/fps s it pushes one frame's worth of answer audio
  into the live session (or, with nothing to say, lets ``session.idle_frames`` push silence) and
  hands exactly one frame to the sink together with the 640 samples that frame shows. Video and
  audio leave paired, from one timeline, so they cannot drift apart.
- the listener: microphone audio -> end-of-turn detection (huma_rt.speech.turns: VAD, the ASR
  run at each pause, a silence that depends on what was said) -> a new turn; speech while an
  answer is playing -> barge-in (the answer's queued audio is dropped, its responder stream and
  TTS are cancelled). A turn decided at a pause after which the visitor goes on is dropped
  before it is heard, or cut by barge-in, and its words open the next question. Once the
  text heard at a pause looks finished, its answer is started speculatively while the turn's
  silence goes on (responder and TTS run; its audio and events are held); the end of the turn
  releases it when it carries the same question, anything else drops it unheard.
- per turn: the responder's text deltas -> ChunkAssembler -> TTS -> the answer buffer that the
  frame clock reads, bounded (the TTS waits when it is ``answer_ahead_s`` ahead).

Events for the page (captions, timings, barge-in) go to ``emit(dict)``, called from these
threads; the caller makes it thread-safe.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from huma_rt.config_checks import check_ints
from huma_rt.errors import InputError
from huma_rt.runtime.blink import BlinkSchedule
from huma_rt.speech.pacing import PacingConfig, SynthesisPacer
from huma_rt.speech.pipeline import validate_question, yield_to_frames
from huma_rt.speech.responder import Exchange, respond_in_context
from huma_rt.speech.text import ChunkAssembler
from huma_rt.speech.turns import TurnConfig, TurnDetector, TurnEvent, looks_finished

log = logging.getLogger(__name__)

RATE = 16000
# frame index, pts seconds, rgb [H, W, 3] uint8 (valid during the call; None: no new picture, the
# clock is behind), audio [spf] f32, when its tick was due (time.perf_counter() s); keyword
# still=True: rgb is the idle rest pose, the same unchanged array as before
FrameSink = Callable[..., None]
Emit = Callable[[dict], None]


@dataclass
class ConversationConfig:
    """turns: end-of-turn detection (its silences are the end-of-turn delay). barge_in_s: speech
    this long while the avatar answers cuts the answer. answer_ahead_s: TTS audio buffered ahead
    of playback at most. mic_queue_s: microphone audio waiting for the VAD at most (older audio
    is dropped). max_lag_s: a frame clock later than this re-bases instead of bursting frames.
    barge_in_s counts from the start of the speech; speech is confirmed after
    ``turns.min_speech_s`` (0.25 s), so shorter values act as that. merge_s: speech that starts
    this soon after the end of a spoken question whose answer it cuts continues that question.
    max_answer_chars: the answer is cut at a chunk boundary past this length. speculate: answer
    the text heard at the pause while the end of the turn is still being decided (audio and
    captions held until the end releases them); False: the responder is called only at the end
    of the turn (a paid endpoint is never called for a question the visitor then goes on from).
    history_turns: the visit's earlier exchanges (question, answer) the responder is given with
    each question, most recent kept (0: every question alone). pacing: how the TTS stays ahead of
    the answer's playback (``speech.pacing``). blink: the avatar blinks now and then, idle or
    talking (huma_rt.runtime.blink; avatars whose bundle has a blink code), at a random phase per
    visit; False: its eyes stay open (frame-exact comparisons)."""

    turns: TurnConfig = field(default_factory=TurnConfig)
    barge_in_s: float = 0.3
    merge_s: float = 1.0
    answer_ahead_s: float = 8.0
    mic_queue_s: float = 2.0
    max_lag_s: float = 0.2
    max_answer_chars: int = 2000
    speculate: bool = True
    history_turns: int = 16
    pacing: PacingConfig = field(default_factory=PacingConfig)
    blink: bool = True

    def validate(self) -> None:
        self.turns.validate()
        self.pacing.validate()
        for name in ("speculate", "blink"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false; got {getattr(self, name)!r}")
        check_ints(self, {"history_turns": 0})
        for name in ("barge_in_s", "answer_ahead_s", "mic_queue_s", "max_lag_s", "merge_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0 seconds; got {getattr(self, name)}")
        if self.max_answer_chars < 1:
            raise InputError(f"max_answer_chars must be >= 1; got {self.max_answer_chars}")


class _Turn:
    """One question and its answer; ``cancel`` stops every stage working on it."""

    def __init__(self, turn_id: int, question: str, source: str, user_end: float) -> None:
        self.id, self.question, self.source = turn_id, question, source
        self.cancel = threading.Event()
        self.times: dict[str, float] = {"user_end": user_end}
        self.first_sample: int | None = None  # timeline sample where its audio starts
        self.last_sample: int | None = None  # ... and ends (set once the TTS is done)
        self.started = self.ended = False
        self.speech_end: int | None = None  # microphone sample where a spoken question ended
        # a speculative answer (made while the visitor's silence goes on) is held: its audio is
        # not played and its events wait, until the end of the turn confirms its question
        self.released = threading.Event()
        self.released.set()
        self.held_events: list[dict] = []
        self.events_lock = threading.Lock()
        self.said: list[str] = []  # the responder's text deltas so far
        # (end sample in the answer's own audio, text) of each piece spoken so far: what a cut
        # answer got as far as (``Conversation._heard``)
        self.spoken: list[tuple[int, str]] = []


class _AnswerBuffer:
    """Answer audio waiting for the frame clock: a bounded FIFO of (turn, pcm) pieces.

    ``put`` blocks while more than ``max_samples`` are waiting (the TTS runs ~5x faster than
    real time: without the bound a long answer would sit in memory) and returns early when the
    turn is cancelled. ``take(n)`` hands out at most ``n`` samples of the oldest turn.
    """

    def __init__(self, max_samples: int, on_put: Callable[[], None] | None = None) -> None:
        self.max_samples = max_samples
        self.on_put = on_put  # told after each put (wakes an idle frame clock)
        self._items: deque = deque()  # (turn, pcm, offset) or (turn, None, 0) = end marker
        self._samples = 0
        self._cv = threading.Condition()

    def put(self, turn: _Turn, pcm: np.ndarray) -> None:
        with self._cv:
            while self._samples >= self.max_samples and not turn.cancel.is_set():
                self._cv.wait(0.05)
            if turn.cancel.is_set():
                return
            self._items.append([turn, pcm, 0])
            self._samples += pcm.size
        if self.on_put is not None:
            self.on_put()

    def starting(self) -> bool:
        """An answer's first audio waits (its turn released, not started, not cancelled)."""
        with self._cv:
            for turn, pcm, off in self._items:
                if not turn.cancel.is_set():
                    return pcm is not None and off == 0 and not turn.started and turn.released.is_set()
            return False

    def ahead_s(self, turn: _Turn, lead: int) -> float:
        """Seconds until the frame clock, taking ``turn``'s audio, finds none: its samples waiting
        (less the ``lead`` that the answer's first frame takes at once, until it started). A
        speculative answer held back counts as if released now: the end of the turn may come
        at any moment."""
        with self._cv:
            waiting = sum(pcm.size - off for t, pcm, off in self._items if t is turn and pcm is not None)
        return (waiting - (0 if turn.started else lead)) / RATE

    def put_end(self, turn: _Turn) -> None:
        with self._cv:
            if not turn.cancel.is_set():
                self._items.append([turn, None, 0])

    def take(self, n: int, out: np.ndarray) -> tuple[int, list[tuple[_Turn, int, str]]]:
        """Copy up to ``n`` samples into ``out``; -> (samples copied, [(turn, offset, 'start'|'end')])."""
        marks: list[tuple[_Turn, int, str]] = []
        got = 0
        with self._cv:
            while self._items and got < n:
                item = self._items[0]
                turn, pcm, off = item
                if turn.cancel.is_set():
                    self._items.popleft()
                    self._samples -= 0 if pcm is None else pcm.size - off
                    continue
                if not turn.released.is_set():  # a speculative answer: nothing after it plays either
                    break
                if pcm is None:
                    self._items.popleft()
                    marks.append((turn, got, "end"))
                    continue
                if off == 0 and not turn.started:
                    turn.started = True
                    marks.append((turn, got, "start"))
                k = min(n - got, pcm.size - off)
                out[got : got + k] = pcm[off : off + k]
                got += k
                self._samples -= k
                if off + k == pcm.size:
                    self._items.popleft()
                else:
                    item[2] = off + k
            # an end marker right behind the last samples belongs to this push
            while self._items and self._items[0][1] is None and not self._items[0][0].cancel.is_set() \
                    and self._items[0][0].released.is_set():  # fmt: skip
                marks.append((self._items.popleft()[0], got, "end"))
            self._cv.notify_all()
        return got, marks

    def clear(self) -> None:
        with self._cv:
            self._items.clear()
            self._samples = 0
            self._cv.notify_all()

    def drop(self, turn: _Turn) -> None:
        """Forget the audio of ``turn`` and of cancelled turns (a held speculative answer stays)."""
        with self._cv:
            keep = deque(it for it in self._items if it[0] is not turn and not it[0].cancel.is_set())
            self._samples = sum(it[1].size - it[2] for it in keep if it[1] is not None)
            self._items = keep
            self._cv.notify_all()


class _Timeline:
    """The session's audio clock as samples: what was pushed (answer or silence), in order.

    Each frame takes the ``spf`` samples it shows from the front, so the audio sent with a
    frame is exactly the audio that drove it. Holds at most lookahead + a frame or two.
    """

    def __init__(self, capacity: int) -> None:
        self._buf = np.zeros(capacity, np.float32)
        self.pushed = 0  # samples appended since the start
        self.popped = 0
        self.sound_until = 0  # end of the last non-silent push

    def pending_sound(self, span: int) -> bool:
        """Sound in the last frame's span (the ``span`` samples popped last) or pushed after it."""
        return self.sound_until > self.popped - span

    def push(self, pcm: np.ndarray | None, n: int) -> None:
        assert self.pushed + n - self.popped <= self._buf.size, "timeline overflow"
        cap = self._buf.size
        i = self.pushed % cap
        k = min(n, cap - i)
        if pcm is None:
            self._buf[i : i + k] = 0.0
            self._buf[: n - k] = 0.0
        else:
            self._buf[i : i + k] = pcm[:k]
            self._buf[: n - k] = pcm[k:n]
            self.sound_until = self.pushed + n
        self.pushed += n

    def peek(self, n: int, out: np.ndarray) -> None:
        """What the next ``pop(n)`` will give once the session has pushed what it needs: the
        samples queued, then silence (all the session ever pushes by itself)."""
        cap = self._buf.size
        m = min(n, self.pushed - self.popped)
        i = self.popped % cap
        k = min(m, cap - i)
        out[:k] = self._buf[i : i + k]
        out[k:m] = self._buf[: m - k]
        out[m:n] = 0.0

    def pop(self, n: int, out: np.ndarray) -> None:
        cap = self._buf.size
        i = self.popped % cap
        k = min(n, cap - i)
        out[:k] = self._buf[i : i + k]
        out[k:n] = self._buf[: n - k]
        self.popped += n

    def unpop(self, n: int) -> None:
        """Take back the last ``n`` samples popped (an idle frame retracted before it left)."""
        self.popped -= n

    def discard(self) -> None:
        """Forget what is queued (the session was reset and dropped it too)."""
        self.pushed = self.popped

    def zero_from(self, sample: int) -> None:
        """Silence what is queued from timeline sample ``sample`` on (barge-in)."""
        start = max(sample, self.popped)
        if start < self.pushed:
            self._buf[np.arange(start, self.pushed) % self._buf.size] = 0.0


class Conversation:
    """The live avatar of one visitor. ``start()``, then ``push_mic(pcm16k)`` / ``ask(text)``.

    avatar: a loaded Avatar (its live session is opened here). tts: a PiperTTS (used by one turn
    at a time). responder: ``respond(text) -> iterator of text deltas``. asr: ``transcribe(pcm)``
    or None (then speech is detected, for barge-in, but not answered). sink: gets every frame
    with its audio, on the frame clock's thread: ``sink(index, pts, rgb, audio, due)``, with
    ``still=True`` when rgb is the rest picture re-sent and ``transient=True`` (only then) for a
    blink drawn on it, after which the rest picture comes back. emit: gets the page's events.
    """

    def __init__(self, avatar, tts, responder, asr, sink: FrameSink, emit: Emit,
                 config: ConversationConfig | None = None) -> None:  # fmt: skip
        self.avatar, self.tts, self.responder, self.asr = avatar, tts, responder, asr
        self.sink, self.emit = sink, emit
        self.config = config or ConversationConfig()
        self.config.validate()
        transcribe = None if asr is None else (lambda pcm: asr.transcribe(pcm).text.strip())
        self._turns = TurnDetector(self.config.turns, transcribe, background=True, on_text=self._text_ready)
        self._session = avatar.session(live=True)
        self.fps = int(self._session.fps)
        self.spf = int(self._session.samples_per_frame)
        self._blinks = BlinkSchedule(self.fps, seed=random.getrandbits(32)) \
            if self.config.blink and avatar.can_blink else None  # fmt: skip
        # silence ahead of frame 0 after a reset: what idle_frames keeps pushed in the continuous
        # stream, so that one push of a frame's audio makes exactly one frame ready; an answer's
        # first frame takes this much of its audio at once
        self._lead = -(-int(avatar.lookahead_samples) // self.spf) * self.spf
        self._wake = threading.Event()  # answer audio arrived: an idle frame clock looks at once
        self._answer = _AnswerBuffer(int(self.config.answer_ahead_s * RATE), on_put=self._wake.set)
        self._timeline = _Timeline(int(avatar.lookahead_samples) + 8 * self.spf)
        per_push = 320  # the page's 20 ms packets, resampled to 16 kHz
        self._mic: queue.Queue = queue.Queue(maxsize=max(4, int(self.config.mic_queue_s * RATE / per_push)))
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _turn and _turn_count
        self._history: deque[Exchange] = deque(maxlen=self.config.history_turns)
        self._history_lock = threading.Lock()
        self._tts_lock = threading.Lock()  # the TTS is not thread-safe; turns overlap when cut
        # turns cut since the frame clock last looked: it silences their queued audio itself,
        # before it shows the next frame's (see _silence_cut)
        self._cut_turns: deque = deque()
        self._turn: _Turn | None = None
        self._spec: _Turn | None = None  # a speculative answer to the text heard at the pause
        self._turn_count = 0
        self._threads: list[threading.Thread] = []
        self._mic_samples = 0  # microphone samples handed to the VAD
        self._mic_marks: deque = deque(maxlen=256)  # (mic sample count, arrival time)
        self._carry: tuple[str, int] | None = None  # (question, its speech end) the visitor went on from
        self._pause_at: float | None = None  # when the VAD heard the last first silent window
        self.last_activity = time.monotonic()
        self.stats = {"mic_dropped": 0, "clock_rebases": 0, "frames": 0, "barge_ins": 0, "turns": 0}
        self.on_rebase: Callable[[float], None] | None = None  # told how far the clock slipped
        self.on_cut: Callable[[], None] | None = None  # an answer was cut: drop what is queued downstream
        # retract(pts, need_s) -> bool: take back the idle frame at pts not yet sent (see _ticks)
        self.retract: Callable[[float, float], bool] | None = None
        # audio_sink(pts, audio [spf] f32, due): set before start(), it gets each frame's audio
        # before that frame is drawn, and ``sink`` then gets audio=None (the media sends audio
        # on a shorter slack than pictures: AvatarMedia.push_audio)
        self.audio_sink: Callable[[float, np.ndarray, float], None] | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the frame clock and the listener."""
        for target, name in ((self._tick_loop, "huma-frames"), (self._listen_loop, "huma-listen")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop every thread (the current turn is cancelled) and release the session."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            for turn in (self._turn, self._spec):
                if turn is not None:
                    turn.cancel.set()
        self._answer.clear()
        for t in self._threads:
            t.join(timeout=2.0)
        if not any(t.is_alive() for t in self._threads):  # a stuck thread may still use it
            self._session.close()
        self._turns.close()

    def push_mic(self, pcm: np.ndarray, arrived: float | None = None) -> None:
        """Microphone audio, 16 kHz mono float32, any chunk size; never blocks (drops the oldest)."""
        item = (pcm, arrived if arrived is not None else time.perf_counter())
        try:
            self._mic.put_nowait(item)
        except queue.Full:
            try:
                self._mic.get_nowait()
                self.stats["mic_dropped"] += 1
            except queue.Empty:
                pass
            self._mic.put_nowait(item)

    def _text_ready(self) -> None:  # on the ASR thread
        """A speculative text is ready: the listener decides now, not at the next packet (20 ms)."""
        try:
            self._mic.put_nowait((None, 0.0))
        except queue.Full:  # the listener has audio to read anyway
            pass

    def ask(self, text: str | bytes) -> None:
        """A typed question: starts a turn now (cutting an answer in progress)."""
        question = validate_question(text)
        self._start_turn(question, "text", time.perf_counter())

    @property
    def stopped(self) -> bool:
        """True once the conversation stopped (``stop()``, or the frame clock failed)."""
        return self._stop.is_set()

    @property
    def answering(self) -> bool:
        turn = self._turn
        return turn is not None and not turn.cancel.is_set() and not turn.ended

    # -- turns -----------------------------------------------------------------------------------
    def _start_turn(self, question: str, source: str, user_end: float, extra: dict | None = None,
                    speech_end: int | None = None, spec: _Turn | None = None) -> None:  # fmt: skip
        """A new turn answering ``question`` (cutting the one in progress); ``spec``: the
        speculative answer already made to this very question, released instead."""
        self.last_activity = time.monotonic()
        with self._lock:
            old = self._turn
            if old is not None and not old.ended and not old.cancel.is_set():
                self._cut(old, "new question")
            self._turn_count += 1
            if spec is None:
                turn = _Turn(self._turn_count, question, source, user_end)
            else:  # numbered now; timed from the end of speech like any answer (its stages may precede the decision)
                turn = spec
                turn.id = self._turn_count
                turn.times["user_end"] = user_end
            turn.speech_end = speech_end
            if extra:
                turn.times.update(extra)
            self._turn = turn
        self.stats["turns"] += 1
        self.emit({"type": "heard", "turn": turn.id, "text": question, "source": source})
        if spec is not None:
            self.stats["speculation_used"] = self.stats.get("speculation_used", 0) + 1
            with turn.events_lock:  # its answer's events so far, after "heard"; then it plays
                for ev in turn.held_events:
                    ev["turn"] = turn.id
                    self.emit(ev)
                turn.held_events.clear()
                turn.released.set()
            self._wake.set()
            return
        t = threading.Thread(target=self._speak, args=(turn,), name=f"huma-turn{turn.id}", daemon=True)
        t.start()

    def _speculate(self, question: str) -> None:
        """Start answering ``question`` (the text heard at the pause, which looks finished) while
        the end of the turn is still being decided: responder and TTS run, the audio is held."""
        turn = _Turn(0, question, "speech", time.perf_counter())  # numbered if it is released
        turn.released.clear()
        with self._lock:
            self._spec = turn
        self.stats["speculated"] = self.stats.get("speculated", 0) + 1
        t = threading.Thread(target=self._speak, args=(turn,), name="huma-speculative", daemon=True)
        t.start()

    def _take_spec(self, question: str | None) -> _Turn | None:
        """The speculative answer if it answers ``question`` (None: none does); any other is dropped."""
        with self._lock:
            spec, self._spec = self._spec, None
        if spec is not None and (question is None or spec.question != question or spec.cancel.is_set()):
            spec.cancel.set()
            self._answer.drop(spec)
            self.stats["speculation_dropped"] = self.stats.get("speculation_dropped", 0) + 1
            spec = None
        return spec

    def _emit_turn(self, turn: _Turn, ev: dict) -> None:
        """An event of ``turn``'s answer (its "turn" is set here): held while the answer is speculative."""
        with turn.events_lock:
            ev["turn"] = turn.id
            if not turn.released.is_set():
                turn.held_events.append(ev)
                return
        self.emit(ev)

    def history(self) -> tuple[Exchange, ...]:
        """The visit's exchanges so far, oldest first: (question, answer as the responder gave
        it; a cut answer is its words the visitor heard before the cut, then "…")."""
        with self._history_lock:
            return tuple(self._history)

    def _remember(self, turn: _Turn, cut: bool) -> None:
        """Add ``turn`` to the history once its answer is over. Not: an answer cut before its
        audio started (the visitor went on: never heard), one whose question the next one
        continues (merged into it), or one with no text."""
        answer = "".join(turn.said).strip()
        carried = self._carry is not None and self._carry[0] == turn.question
        if not answer or (cut and (not turn.started or carried)):
            return
        if cut:
            answer = f"{self._heard(turn, answer)} …".lstrip()
        with self._history_lock:
            self._history.append((turn.question, answer))

    def _heard(self, turn: _Turn, answer: str) -> str:
        """The words of ``answer`` the visitor heard before ``turn`` was cut: the pieces whose
        audio the frame clock sent whole, and of the piece it was sending the share of its words
        that its audio sent so far is of its length (words are taken as evenly spread). Counted
        in words onto the responder's own text: a piece's text is cleaned and may carry a comma
        that the cut into pieces added. The responder is usually well ahead of the voice."""
        if turn.first_sample is None:
            return ""
        sent = self._timeline.popped - turn.first_sample
        words, start = 0, 0
        for end, text in turn.spoken:
            n = len(text.split())
            if sent < end:
                words += n * max(0, sent - start) // (end - start)
                break
            words, start = words + n, end
        return " ".join(answer.split()[:words])

    def _cut(self, turn: _Turn, why: str) -> None:
        """Cancel ``turn``: queued answer audio is dropped, its stages stop at their next step."""
        self._remember(turn, cut=True)
        turn.cancel.set()
        self._answer.drop(turn)
        self._cut_turns.append(turn)  # its audio on the timeline, not yet shown: silenced by the clock
        if self.on_cut is not None:
            self.on_cut()
        self.emit({"type": "answer_end", "turn": turn.id, "cut": True, "why": why})
        log.info("turn %d cut: %s", turn.id, why)

    def _respond(self, turn: _Turn, chunks: queue.Queue) -> None:
        """Responder deltas -> TTS chunks; stops (closing the stream) when the turn is cancelled."""
        assembler = ChunkAssembler(max_total=self.config.max_answer_chars)
        stream = None
        try:
            stream = iter(respond_in_context(self.responder, turn.question, self.history()))
            for delta in stream:
                if turn.cancel.is_set():
                    break
                turn.said.append(delta)
                if "responder_first" not in turn.times:
                    turn.times["responder_first"] = time.perf_counter()
                self._emit_turn(turn, {"type": "answer", "turn": turn.id, "text": delta})
                for chunk in assembler.feed(delta):
                    self._put_chunk(turn, chunks, chunk)
                if assembler.truncated:
                    break
            if not turn.cancel.is_set():
                for chunk in assembler.close():
                    self._put_chunk(turn, chunks, chunk)
        except Exception as exc:  # a responder failure ends this turn; the avatar stays alive
            log.warning("responder failed on turn %d: %s", turn.id, exc)
            self._emit_turn(turn, {"type": "error", "turn": turn.id, "message": f"responder failed: {exc}"})
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # an HTTP stream closes its connection
            chunks.put(None)

    @staticmethod
    def _put_chunk(turn: _Turn, chunks: queue.Queue, chunk: str) -> None:
        if "text_first" not in turn.times:  # the stage between responder_first and tts_first
            turn.times["text_first"] = time.perf_counter()
        chunks.put(chunk)

    def _speak(self, turn: _Turn) -> None:
        chunks: queue.Queue = queue.Queue()
        responder = threading.Thread(target=self._respond, args=(turn, chunks), daemon=True)
        responder.start()
        # the next piece is cut short when it would not be made before the audio ahead runs out;
        # once enough audio waits, the rest of the answer waits behind the frames
        pacer = SynthesisPacer(self.tts, lambda: self._answer.ahead_s(turn, self._lead), yield_to_frames,
                               self.config.pacing)  # fmt: skip
        try:
            while not turn.cancel.is_set():
                chunk = chunks.get()
                if chunk is None or turn.cancel.is_set():
                    break
                for piece in pacer.pieces(chunk):
                    with self._tts_lock:
                        if turn.cancel.is_set():
                            break
                        made = list(self.tts.stream_chunks([piece], starts_answer="tts_first" not in turn.times))
                    for pcm, text in made:
                        if "tts_first" not in turn.times:
                            turn.times["tts_first"] = time.perf_counter()
                        turn.spoken.append(((turn.spoken[-1][0] if turn.spoken else 0) + pcm.size, text))
                        self._answer.put(turn, np.ascontiguousarray(pcm, np.float32))
                        pacer.audio_out()
        except Exception as exc:
            log.warning("TTS failed on turn %d: %s", turn.id, exc)
            self._emit_turn(turn, {"type": "error", "turn": turn.id, "message": f"TTS failed: {exc}"})
        finally:
            if turn.started or "tts_first" in turn.times:
                self._answer.put_end(turn)
            elif not turn.cancel.is_set():
                turn.ended = True
                self._emit_turn(turn, {"type": "answer_end", "turn": turn.id, "cut": False, "why": "nothing to say"})
            responder.join(timeout=1.0)

    # -- the frame clock -------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        try:
            self._ticks()
        except Exception as exc:  # the visitor's page shows it; the worker ends the visit
            log.exception("frame clock failed")
            self.emit({"type": "error", "message": f"avatar failed: {exc}"})
            self._stop.set()

    def _ticks(self) -> None:
        """One frame per 1/fps s. Timeline coordinates (``_Timeline``, frame ``index``) run
        on across session resets; the session's own clock restarts at each reset.

        Idle skip: once the session has seen only silence for longer than the encoder's
        receptive field (``settle`` frames), every frame it would draw is the same picture (the
        model's rest pose), so the clock re-sends that picture instead of running the networks
        and renderer; when an answer starts, the session is reset (a fresh stream = silence
        before it) and fed the answer's first frame and the ``lead`` samples after it at once.
        A blink (``_blinks``, by timeline index) is drawn on the settled stream as it stands,
        and the frame after it too (the eyes open again); then the rest picture is re-sent.

        Idle, the clock also wakes when answer audio arrives between ticks: if the idle frame of
        the last tick has not left yet and can still be replaced in time (``retract``: the
        sink takes back its packets), the answer starts at that frame's index and time instead
        of the next tick's, up to a period sooner; timestamps stay one per period. Otherwise the
        next tick's frame is drawn at once and handed over before its tick (``due`` ahead: the
        media clock sends it at its time): the answer's first frame, the slowest to draw (a
        reset session fed the answer's lookahead: 57 ms on the quiet 2-core machine, more than
        the media clock's 50 ms), was drawn only from its tick, and left late with its audio.
        """
        session, spf = self._session, self.spf
        period = 1.0 / self.fps
        chunk = np.zeros(spf, np.float32)
        audio = np.zeros(spf, np.float32)
        enc = self.avatar.encoder_config
        settle = int(enc.past_frames) + int(enc.lookahead_frames) + 4
        lead = self._lead
        ahead = np.zeros(lead, np.float32)
        rest = None  # the rest-pose picture, once settled
        quiet = 0  # frames in a row drawn from silence only
        blinks = self._blinks
        shut = 0.0  # the blink of the last picture drawn
        index = 0
        idle_due: float | None = None  # the last tick sent the rest pose: due then (retractable)
        start_s = 0.025  # moving average: an answer's first frame drawn, from the reset to the sink
        early_audio = self.audio_sink
        t_next = time.perf_counter()
        while not self._stop.is_set():
            retaken = early = False
            delay = t_next - time.perf_counter()
            if delay > 0:
                if idle_due is not None and self.retract is not None:
                    woke = self._wake.wait(delay)
                    self._wake.clear()
                    if self._stop.is_set():
                        break
                    if woke and self._answer.starting():
                        # its audio leaves 6.5 ms before its picture: that is for VP8
                        retaken = self.retract((index - 1) / self.fps, start_s + 0.005)
                        early = not retaken  # too late for that one: the next tick's, drawn now
                    elif woke:
                        continue
                elif self._stop.wait(delay):
                    break
            elif -delay > self.config.max_lag_s:  # overloaded host: slip the clock, never burst
                self.stats["clock_rebases"] += 1
                if self.on_rebase is not None:
                    self.on_rebase(-delay)
                t_next = time.perf_counter()
            if retaken:  # the idle frame of the last tick is redone as the answer's first
                index -= 1
                self._timeline.unpop(spf)
                self.stats["frames"] -= 1
                self.stats["idle_skipped"] -= 1
                self.stats["retaken"] = self.stats.get("retaken", 0) + 1
                due, behind = idle_due, False
            else:
                due = t_next
                t_next += period
                # More than a frame behind (an overloaded host: several visitors answered at
                # once): this frame is not drawn and no picture is sent, only its audio, on
                # time; the browser holds the last picture. Audio that arrives late is
                # concealed, a frame that is missing is not seen.
                behind = delay < -period
                if early:
                    self.stats["drawn_ahead"] = self.stats.get("drawn_ahead", 0) + 1
            idle_due = None
            began = time.perf_counter()
            self._silence_cut()  # cuts before this take: a next answer's audio taken now stays
            got, marks = self._answer.take(spf, chunk)
            turn = self._turn
            if got < spf and turn is not None and turn.started and turn.last_sample is None \
                    and not turn.cancel.is_set() and not any(what == "end" for _, _, what in marks):  # fmt: skip
                # the answer is not over but its audio ran out: the responder or the TTS is
                # slower than speech, and the visitor hears a gap
                self.stats["answer_underruns"] = self.stats.get("answer_underruns", 0) + 1
            blink = blinks.weight(index) if blinks is not None else 0.0
            idle = rest is not None and not got and not marks
            if idle and not blink and not shut:  # settled and idle: same picture
                self._timeline.push(None, spf)
                self._silence_cut()
                self._timeline.pop(spf, audio)
                if early_audio is not None:
                    early_audio(index / self.fps, audio, due)
                self.sink(index, index / self.fps, None if behind else rest, None if early_audio else audio, due,
                          still=True)  # fmt: skip
                index += 1
                self.stats["frames"] += 1
                self.stats["idle_skipped"] = self.stats.get("idle_skipped", 0) + 1
                idle_due = None if behind else due
                continue
            fast: tuple[int, list] | None = None
            # settled, a blink is drawn on the silent stream as it stands; an answer starts
            # from the rest pose with a fresh stream
            if rest is not None and not idle:
                session.reset()  # drops the silent lookahead it held: so does the timeline
                self._timeline.discard()
                # The answer's first frame and its lookahead at once (the TTS has made them):
                # that frame is drawn in this tick instead of after lead/spf ticks (a fresh
                # stream is silence before it, as the rest pose was).
                fast = self._answer.take(lead, ahead) if got else None
                rest = None
            at = self._timeline.pushed  # where this push lands on the timeline
            if got:
                chunk[got:] = 0.0
                session.push_audio(chunk)
                self._timeline.push(chunk, spf)
                quiet = 0
            if fast is not None:  # the rest of the lead, from the answer (silence if it is short)
                ahead[fast[0]:] = 0.0
                session.push_audio(ahead)
                self._timeline.push(ahead, ahead.size)
                marks = marks + [(t, spf + off, what) for t, off, what in fast[1]]
            for turn, offset, what in marks:
                if what == "start":
                    turn.first_sample = at + offset
                else:
                    turn.last_sample = at + offset
            if early_audio is not None:  # the frame's audio leaves now; its picture once drawn
                self._silence_cut()
                self._timeline.peek(spf, audio)
                early_audio(index / self.fps, audio, due)
            before = session.pushed_samples
            session.blink = blink
            if not behind:
                shut = blink
                if blink:
                    self.stats["blink_frames"] = self.stats.get("blink_frames", 0) + 1
            for frame in session.idle_frames(1, draw=not behind):
                silence = session.pushed_samples - before
                if silence:
                    self._timeline.push(None, silence)
                self._silence_cut()
                self._timeline.pop(spf, audio)
                self._on_frame_events(index * spf, (index + 1) * spf, index / self.fps)
                if idle and blink and not behind:  # a blink on the rest picture: shown once
                    self.sink(index, index / self.fps, frame.rgb, None if early_audio else audio, due, transient=True)
                else:
                    self.sink(index, index / self.fps, None if behind else frame.rgb, None if early_audio else audio,
                              due)  # fmt: skip
                if fast is not None:
                    start_s = 0.8 * start_s + 0.2 * (time.perf_counter() - began)
                    self.stats["answer_start_ms"] = round(1000 * start_s, 1)
                    fast = None
                if behind:
                    self.stats["not_drawn"] = self.stats.get("not_drawn", 0) + 1
                index += 1
                self.stats["frames"] += 1
                quiet = 0 if self._timeline.pending_sound(spf) else quiet + 1
                if quiet >= settle and not self.answering and not shut and rest is None:
                    rest = frame.rgb.copy()

    def _silence_cut(self) -> None:
        """On the frame clock, before it takes answer audio and before a frame's audio leaves the
        timeline: the queued audio of turns cut since it last looked is silenced. Done here, not
        in ``_cut`` (another thread): the clock may have taken a cut turn's audio from the answer
        buffer just before the cut and push it just after, where a silencing done at the cut
        missed it (and the turn's ``first_sample``, which says it has audio queued, is only set
        on this thread). A cut seen before the take cannot silence the next answer's audio: that
        is taken after it."""
        while self._cut_turns:
            turn = self._cut_turns.popleft()
            if turn.first_sample is not None:
                self._timeline.zero_from(self._timeline.popped)

    def _on_frame_events(self, start: int, end: int, pts: float) -> None:
        turn = self._turn
        if turn is None or turn.cancel.is_set():
            return
        if turn.first_sample is not None and "first_frame" not in turn.times and end > turn.first_sample:
            turn.times["first_frame"] = time.perf_counter()
            t0 = turn.times["user_end"]
            ms = {k: round(1000 * (v - t0), 1) for k, v in turn.times.items() if k != "user_end"}
            self.emit({"type": "answer_start", "turn": turn.id, "pts": pts, "server_ms": ms})
        if turn.last_sample is not None and not turn.ended and end >= turn.last_sample:
            turn.ended = True
            self._remember(turn, cut=False)
            self.emit({"type": "answer_end", "turn": turn.id, "cut": False, "why": "done"})

    # -- the listener ----------------------------------------------------------------------------
    def _listen_loop(self) -> None:
        try:
            self._listen()
        except Exception as exc:
            log.exception("listener failed")
            self.emit({"type": "error", "message": f"listening failed: {exc}"})

    def _listen(self) -> None:
        det, cfg = self._turns, self.config
        speaking = False
        while not self._stop.is_set():
            try:
                pcm, arrived = self._mic.get(timeout=0.1)
            except queue.Empty:
                continue
            if pcm is None:  # _text_ready
                events = det.poll()
            else:
                self._mic_samples += pcm.size
                self._mic_marks.append((self._mic_samples, arrived))
                events = det.push(pcm)
            if det.speaking != speaking:
                speaking = det.speaking
                self.emit({"type": "user_speaking", "on": speaking})
                if speaking:
                    self.last_activity = time.monotonic()
            for ev in events:
                if ev.kind == "speech":
                    self._take_spec(None)
                    self._speech_started(ev)
                elif ev.kind == "resume":  # the visitor went on: the text heard at the pause is not the question
                    self._take_spec(None)
                elif ev.kind == "pause":
                    self._pause_at = ev.at
                elif ev.kind == "end":
                    self._utterance(ev)
            text = det.speculative_text if cfg.speculate and self.asr is not None and self._spec is None else None
            if text and looks_finished(text):  # the end of the turn is likely: answer it already
                carry = self._carry
                self._speculate(f"{carry[0]} {text}".strip() if carry is not None else text)
            turn = self._turn
            if speaking and det.speech_s >= cfg.barge_in_s and turn is not None and turn.started \
                    and not turn.ended and not turn.cancel.is_set():  # fmt: skip
                self.stats["barge_ins"] += 1
                self.emit({"type": "barge_in", "turn": turn.id})
                self._keep_if_continued(turn, det)
                self._cut(turn, "barge-in")

    def _speech_started(self, ev: TurnEvent) -> None:
        """Confirmed speech: a spoken answer decided but not yet heard is dropped (the visitor
        went on after a pause that looked like the end); its question opens the next one."""
        self.last_activity = time.monotonic()
        turn = self._turn
        if turn is not None and turn.source == "speech" and not turn.started and not turn.ended \
                and not turn.cancel.is_set():  # fmt: skip
            self._keep_if_continued(turn, self._turns)
            self.stats["continued"] = self.stats.get("continued", 0) + 1
            self._cut(turn, "the visitor went on")

    def _keep_if_continued(self, turn: _Turn, det: TurnDetector) -> None:
        start = det.utterance_start
        if turn.source == "speech" and turn.speech_end is not None and start is not None \
                and start - turn.speech_end <= self.config.merge_s * RATE:  # fmt: skip
            self._carry = (turn.question, turn.speech_end)

    def _arrival(self, sample: int) -> float:
        """Wall time at which microphone sample ``sample`` arrived (closest chunk end at or after it)."""
        for count, t in self._mic_marks:
            if count >= sample:
                return t
        return time.perf_counter()

    def _utterance(self, ev: TurnEvent) -> None:
        self.last_activity = time.monotonic()
        text = (ev.text or "").strip()
        if self._carry is not None:  # this speech went on from a question cut before it was answered
            text = f"{self._carry[0]} {text}".strip()
        self._carry = None
        spec = self._take_spec(text if self.asr is not None and text else None)
        user_end = self._arrival(ev.end)
        extra = {"end_of_turn": ev.at}
        if self._pause_at is not None and user_end <= self._pause_at <= ev.at:
            extra["vad_pause"] = self._pause_at  # the first silent window of this end's silence
        if self._turns.asr_done_at is not None:
            extra["asr_final"] = self._turns.asr_done_at
        if self.asr is None:
            self.emit({"type": "heard", "turn": None, "text": "", "source": "speech",
                       "note": "speech heard, but no speech recogniser is configured (--asr-model DIR)"})  # fmt: skip
            return
        log.info("heard %r (%.2f s of speech, %s)", text, (ev.end - ev.start) / RATE, ev.reason)
        if not text:
            self.emit({"type": "heard", "turn": None, "text": "", "source": "speech",
                       "note": "nothing recognisable"})  # fmt: skip
            return
        self._start_turn(text, "speech", user_end, extra, speech_end=ev.end, spec=spec)
