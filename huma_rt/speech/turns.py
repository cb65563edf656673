"""End of turn: when has the person finished speaking?

A fixed silence (the VAD closes a segment after 0.3 s without speech) is the usual answer, and
it was most of a spoken turn's latency. Here the decision also uses what was said:

- every 32 ms window gets the silero speech probability (:class:`SpeechProbability`, the
  packaged model in onnxruntime; hysteresis between ``threshold`` and ``off_threshold``);
- at the first silent window (``asr_after_s``), the utterance so far (with ``pre_roll_s`` of
  audio before it) is transcribed while the silence goes on (speculative ASR; on its own thread
  with ``background=True``, so the stream keeps being read; a decode not yet started when
  speech comes back is dropped, so dips between words queue no work);
- the turn ends after ``question_silence_s`` of silence when that text is a question (ends with
  "?": the recogniser punctuates), after ``short_silence_s`` when it otherwise looks finished
  (:func:`looks_finished`), and after ``long_silence_s`` whatever it says;
- speech that comes back before then continues the utterance (the speculative text is dropped);
- with ``early_asr_db`` (on by default), that speculative ASR starts sooner: once
  ``early_asr_windows`` windows in a row fell that far under the utterance's loudest one while
  silero still calls them speech (silero lags the audible end by 2-3 windows), on the audio up to
  there. Its text stands if every window up to silero's pause stayed that quiet; a louder one
  drops it;
- with ``energy_drop_db``, the silence is counted from where the windows' energy fell that far
  under the utterance's loudest window, when silero still called them speech (it lags the
  audible end by 2-3 windows): only the clock moves; the ASR still gets all the audio up to
  silero's end.

``push(pcm)`` returns :class:`TurnEvent`\\ s: ``speech`` (speech confirmed: ``min_speech_s`` of
it; barge-in counts from here), ``pause`` (the first silent window), ``resume`` (speech again
before the end) and ``end`` (the turn is over: its audio and text). Without a ``transcribe``
function every pause waits ``long_silence_s``.
Measured trade-off (latency against cutting in on a speaker who only paused): bench/turns.py.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import InputError
from huma_rt.model_config import _JsonConfig  # to_dict/from_dict/save/load
from huma_rt.speech.audio import TARGET_RATE, Windower, to_mono_float
from huma_rt.speech.vad import check_silero_model, packaged_model

log = logging.getLogger(__name__)

WINDOW = 512  # samples per silero call at 16 kHz (32 ms)
_CONTEXT = 64  # silero v5+ sees the last 64 samples of the previous window in front of each one
# Below this (-90 dBFS: under one step of 16-bit audio) a window is digital silence, as a muted
# microphone sends: speech probability 0 without running the model (6-11 % of an idle worker).
DIGITAL_SILENCE = 3e-5
# The silence clock starts at most this far before silero's first silent window (energy_drop_db):
# silero lags the audible end by 2-3 windows; a longer quiet run that it still calls speech (a
# murmur, noise) is not silence the turn rules should already have counted.
MAX_EARLY_S = 0.128

# A turn whose last word is one of these is not over: the speaker is in the middle of a phrase.
CONTINUATIONS = frozenset(
    """a an the and or but so because if when while that which who whose whom than then to of
    in on at by for from with about into like as is are was were be been am do does did have has
    had will would can could should shall may might must my your his her its our their this these
    those some any no not very really just also um uh er erm hmm well i we you he she they it me
    him them us what where how why whether until unless although though since after before""".split()
)
_WORD = re.compile(r"[a-z']+")


def looks_finished(text: str) -> bool:
    """True when ``text`` reads like a finished turn: some words, not ending on a word that
    leads into more (``and``, ``the``, ``because``, a filler) or on a comma, dash or ellipsis."""
    t = text.strip()
    if not t or t.endswith((",", "-", "...", "\u2026", ";", ":")):
        return False
    words = _WORD.findall(t.lower())
    return bool(words) and words[-1].strip("'") not in CONTINUATIONS


class SpeechProbability:
    """The silero VAD model, one 512-sample window at a time -> speech probability in [0, 1].

    Runs the packaged ``silero_vad.onnx`` (or ``model``) in onnxruntime with its recurrent state
    and the 64-sample context it expects in front of each window; buffers are made once.
    """

    def __init__(self, model: str | Path | None = None, num_threads: int = 1) -> None:
        path = check_silero_model(model or packaged_model())
        ort = require("onnxruntime", "voice activity detection")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._x = np.zeros((1, _CONTEXT + WINDOW), np.float32)
        self._state = np.zeros((2, 1, 128), np.float32)
        self._sr = np.array(TARGET_RATE, np.int64)

    def reset(self) -> None:
        self._x[:] = 0.0
        self._state[:] = 0.0

    def __call__(self, window: np.ndarray) -> float:
        """window: [512] f32 at 16 kHz, the next one of the stream."""
        if not np.any(np.abs(window) > DIGITAL_SILENCE):  # a muted microphone: no model run
            self._x[0, :_CONTEXT] = window[-_CONTEXT:]
            return 0.0
        self._x[0, _CONTEXT:] = window
        out, state = self._sess.run(None, {"input": self._x, "state": self._state, "sr": self._sr})
        self._state[...] = state
        self._x[0, :_CONTEXT] = self._x[0, -_CONTEXT:]
        return float(out[0, 0])

    def skip(self, window: np.ndarray) -> None:
        """Pass over a window without running the model (it is taken as no speech): the state
        is kept and the window's tail becomes the next window's context, as for digital silence."""
        self._x[0, :_CONTEXT] = window[-_CONTEXT:]


@dataclass
class TurnConfig(_JsonConfig):
    """Turn-taking (seconds unless noted).

    threshold / off_threshold: speech probability that starts / keeps up speech (hysteresis).
    min_speech_s: speech that opens an utterance (shorter blips are ignored).
    question_silence_s: silence that ends a turn whose text is a finished question.
    short_silence_s: silence that ends a turn whose text otherwise looks finished.
    long_silence_s: silence that ends a turn whatever its text (and every turn without ASR).
    max_speech_s: an utterance this long ends at once. pre_roll_s: audio before the speech
    handed to the ASR with it (Moonshine drops the first word less often with it).
    asr_after_s: silence after which the utterance so far is transcribed.
    quiet_gate_rms / quiet_gate_s: while no utterance is open, once windows quieter than
    ``quiet_gate_rms`` (RMS, full scale 1: 1e-3 is -60 dBFS, some 30 dB under quiet speech) have
    come for ``quiet_gate_s`` in a row, the model is not run on such windows (no speech). A muted
    or silent microphone decodes to low noise, not digital zeros, and silero on it was a fifth
    of an idle worker's CPU. Never inside an utterance: its end is silero's to find, as before;
    only after 2 s, so that a visitor's next question soon after an answer, and bench/turns.py's
    prompts (0.5 s of lead), find silero as it was (after 0.5 s the bench's cut-ins moved by a
    prompt or five each way: bench/results/serve-idle-2026-12-06).
    Silero keeps its state over the windows passed over, as over digital zeros (so streams with
    digital silence are decided exactly as before); its recurrent state drifts on noise and
    never settles, so after noise a boundary may move by a window (32 ms). 0 turns it off.
    energy_drop_db: inside an utterance, windows quieter than its loudest window by this many
    dB (energy) start the silence clock when silero then calls the silence (it goes on calling
    the 2-3 windows after the audible end speech): the silence rules count from the first of
    them, at most ``MAX_EARLY_S`` back, instead of from silero's first silent window. Only the
    clock moves: the transcribed audio still reaches silero's end (cutting it at the energy drop
    doubled the WER). Relative to the speaker's own level, so that soft endings and fricatives
    (10-30 dB under the vowels) stay speech. 0 (the default) turns it off: on bench/turns.py's
    real recordings, with the rules at 0.1 / 0.3 / 0.7 s, 30 / 35 / 40 / 45 dB moved the clock
    96 / 64 / 64 / 32 ms (p50) and the statements' decision 80 / 60 / 50 / 40 ms, but false
    cut-ins went 4.7 % -> 10.2 / 7.9 / 6.7 / 6.3 % (WER 0.097 -> 0.108 / 0.101 / 0.100 / 0.101):
    no better than a shorter statement silence alone (0.25 s: 6.3 % 60 ms sooner). The quiet
    windows silero still calls speech inside a turn (breaths between clauses) are where the
    speaker goes on. A question's end waits for its text, not its silence (served bench:
    asr_final = end_of_turn), so it gains nothing there.
    early_asr_db / early_asr_windows: the speculative ASR starts once this many windows in a
    row of an utterance were quieter than its loudest window by this many dB (while silero
    still calls them speech), on the audio up to there, instead of at silero's first silent
    window; the text is used if no louder window came before silero's pause, else dropped (the
    ASR runs again at the next quiet run or at the pause). Only the ASR moves: the silence
    rules still count from silero's end. A question's end waits for its text (its 0.1 s of
    silence is shorter than the ASR), so it is decided that much sooner. 0 dB turns it off.
    On bench/turns.py's real recordings (bench/results/turns-2026-12-07): 35 dB x 2 windows
    starts it 32 ms sooner (p50) with the WER unchanged (0.095) and 3.6 decodes per prompt
    (2.0 at silero's pause: a speaker's quiet gaps start decodes that the next word drops);
    x 1 window, 64 ms sooner but 5.7 decodes and WER 0.11; x 3, about no sooner.
    model: silero ONNX path; None = the packaged one.
    """

    threshold: float = 0.5
    off_threshold: float = 0.35
    min_speech_s: float = 0.25
    question_silence_s: float = 0.1
    short_silence_s: float = 0.3
    long_silence_s: float = 0.7
    max_speech_s: float = 20.0
    pre_roll_s: float = 0.1
    asr_after_s: float = 0.032
    quiet_gate_rms: float = 1e-3
    quiet_gate_s: float = 2.0
    energy_drop_db: float = 0.0
    early_asr_db: float = 35.0
    early_asr_windows: int = 2
    model: str | None = None
    num_threads: int = 1

    def validate(self) -> None:
        if not 0.0 < self.off_threshold <= self.threshold < 1.0:
            raise InputError(
                f"speech thresholds must satisfy 0 < off_threshold <= threshold < 1; got "
                f"off_threshold={self.off_threshold}, threshold={self.threshold}"
            )
        for name in ("min_speech_s", "question_silence_s", "short_silence_s", "long_silence_s", "max_speech_s"):
            if not getattr(self, name) > 0:
                raise InputError(f"turn {name} must be > 0 seconds; got {getattr(self, name)}")
        if not self.question_silence_s <= self.short_silence_s <= self.long_silence_s:
            raise InputError(
                f"turn silences must satisfy question_silence_s ({self.question_silence_s}) <= "
                f"short_silence_s ({self.short_silence_s}) <= long_silence_s ({self.long_silence_s})"
            )
        if not (self.quiet_gate_rms >= 0 and self.quiet_gate_s >= 0):
            raise InputError(f"quiet_gate_rms and quiet_gate_s must be >= 0; got {self.quiet_gate_rms}, "
                             f"{self.quiet_gate_s}")  # fmt: skip
        if not 0.0 < self.asr_after_s <= self.question_silence_s:
            raise InputError(
                f"asr_after_s must be in (0, question_silence_s={self.question_silence_s}]; got {self.asr_after_s}"
            )
        if isinstance(self.early_asr_windows, bool) or not isinstance(self.early_asr_windows, int) \
                or self.early_asr_windows < 1:  # fmt: skip
            raise InputError(f"early_asr_windows must be an integer >= 1; got {self.early_asr_windows!r}")
        for name in ("energy_drop_db", "early_asr_db"):
            db = getattr(self, name)
            if not (db == 0 or 10.0 <= db <= 80.0):
                raise InputError(f"{name} must be 0 (off) or in [10, 80] dB; got {db}")
        if not 0.0 <= self.pre_roll_s <= 1.0:
            raise InputError(f"pre_roll_s must be in [0, 1] seconds; got {self.pre_roll_s}")


@dataclass(frozen=True)
class TurnEvent:
    """kind: 'speech' | 'pause' | 'resume' | 'end'. start / end: stream samples (16 kHz) of the
    utterance's speech (end: where its last speech window ends). samples and text: for 'pause'
    (the speculative text) and 'end'. at: time.perf_counter() when it was decided. reason ('end'):
    'finished' (a short silence after a finished text), 'silence' (long silence) or 'max_speech'.
    silence_start ('pause', 'end'): stream sample where the silence clock started: ``end``, or
    before it where ``energy_drop_db`` dated it from the energy drop."""

    kind: str
    start: int
    end: int
    at: float
    samples: np.ndarray | None = None
    text: str | None = None
    reason: str = ""
    silence_start: int = 0


class TurnDetector:
    """Streaming end-of-turn detection over 16 kHz mono audio (see the module's docstring).

    transcribe: ``pcm [S] f32 -> text`` (the ASR), run at each pause; None: decide on silence
    alone. background: run it on a thread of its own (a live stream: the windows behind it keep
    being read; the decision waits for the text only as long as the silence rules need it);
    False: inline (deterministic, for files and measurements). ``asr_done_at``: when the last
    speculative text was ready (time.perf_counter()). on_text: called (on the ASR thread) when a
    background text is ready, so that the reader can ``poll()`` at once instead of deciding at
    its next ``push`` (a live stream's next packet: up to 20 ms later).
    """

    def __init__(self, config: TurnConfig | None = None,
                 transcribe: Callable[[np.ndarray], str] | None = None,
                 probability: SpeechProbability | None = None, background: bool = False,
                 on_text: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.config = config or TurnConfig()
        self.config.validate()
        c = self.config
        self.transcribe = transcribe
        self.on_text = on_text
        self.prob = probability or SpeechProbability(c.model, c.num_threads)
        self._min_speech = int(c.min_speech_s * TARGET_RATE)
        self._question = int(c.question_silence_s * TARGET_RATE)
        self._short = int(c.short_silence_s * TARGET_RATE)
        self._long = int(c.long_silence_s * TARGET_RATE)
        self._asr_after = max(1, round(c.asr_after_s * TARGET_RATE / WINDOW)) * WINDOW
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="huma-asr") if background and transcribe else None
        self._max = int(c.max_speech_s * TARGET_RATE)
        self._pre = -(-int(c.pre_roll_s * TARGET_RATE) // WINDOW)  # windows
        self._windower = Windower(WINDOW)
        self._gate2 = c.quiet_gate_rms**2 * WINDOW  # sum of squares of a window at the gate
        self._gate_after = round(c.quiet_gate_s * TARGET_RATE / WINDOW)  # windows
        self._drop = 10.0 ** (-c.energy_drop_db / 10.0) if c.energy_drop_db > 0 else 0.0  # energy ratio
        self._early_drop = 10.0 ** (-c.early_asr_db / 10.0) if c.early_asr_db > 0 and transcribe else 0.0
        self.early_asr_runs = 0  # speculative ASRs started at an energy drop
        self._max_early = round(MAX_EARLY_S * TARGET_RATE / WINDOW) * WINDOW
        self.gated = 0  # windows passed over without the model
        self._history: deque = deque(maxlen=self._pre + -(-self._min_speech // WINDOW) + 1)
        self.busy_s = 0.0  # time in the VAD model and the ASR, for the real-time factor
        self.asr_runs = 0
        self.asr_done_at: float | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the stream (the model's state, any open utterance)."""
        self.prob.reset()
        self._pushed = 0  # samples seen, in whole windows
        self._windower.reset()
        self._history.clear()
        self._candidate = 0  # speech windows in a row before an utterance opens
        self._quiet = 0  # windows in a row under the quiet gate
        self._open = False
        self._windows: list[np.ndarray] = []  # the open utterance's audio, window by window
        self._start = 0  # stream sample where the utterance's speech starts
        self._speech_end = 0  # stream sample where its last speech window ends
        self._kept = 0  # windows of the utterance up to there (what the ASR gets)
        self._silence = 0  # samples on the silence clock (from _silence_start)
        self._silent = 0  # windows silero called silent since _speech_end
        self._silence_start = 0  # stream sample where the silence clock started
        self._peak = 0.0  # energy (sum of squares) of the utterance's loudest speech window
        self._quiet_from: int | None = None  # start of the run of speech windows under the drop
        self._text: str | None = None  # speculative text of the audio up to _speech_end
        self._pending: Future | None = None  # that text, being made on the ASR thread
        self._early = False  # _text / _pending is of the audio up to an energy drop (early_asr_db)
        self._quiet_run = 0  # speech windows in a row under early_asr_db

    @property
    def speaking(self) -> bool:
        """True while an utterance is open and its last window was speech."""
        return self._open and self._silence == 0

    @property
    def speech_s(self) -> float:
        """Seconds since the open utterance's speech started (0 when none is open)."""
        return (self._pushed - self._start) / TARGET_RATE if self._open else 0.0

    @property
    def utterance_start(self) -> int | None:
        """Stream sample where the open utterance's speech started (None when none is open)."""
        return self._start if self._open else None

    @property
    def speculative_text(self) -> str | None:
        """What the open utterance said up to its pause, once its speculative ASR is done and the
        silence goes on (None otherwise): the end of the turn will carry this text unless the
        speaker goes on."""
        if not self._open or not self._silence:
            return None
        if self._text is not None:
            return self._text
        pending = self._pending
        if pending is not None and pending.done() and not pending.cancelled() and pending.exception() is None:
            return pending.result()
        return None

    @property
    def pushed_samples(self) -> int:
        return self._pushed + self._windower.held

    def push(self, pcm: np.ndarray) -> list[TurnEvent]:
        """Feed 16 kHz mono audio of any length; returns the events it caused, in order."""
        x = to_mono_float(pcm, name="turn detector input")
        if x.ndim != 1:
            raise InputError(f"turn detector input must be mono; got shape {x.shape}")
        events: list[TurnEvent] = []
        for w in self._windower.windows(x):
            self._window(w.copy(), events)  # kept: the utterance's audio
        events.extend(self.poll())
        return events

    def poll(self) -> list[TurnEvent]:
        """The end of the open turn, if a speculative text that became ready since the last
        window now decides it (a question's text after its silence is already long enough)."""
        events: list[TurnEvent] = []
        if self._open and self._silence and self._pending is not None:  # text ready between windows
            self._decide(events)
        return events

    def close(self) -> None:
        """Stop the ASR thread (a decode in flight finishes on its own)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def flush(self) -> list[TurnEvent]:
        """End of stream: the open utterance (if any) ends now."""
        events: list[TurnEvent] = []
        if self._open:
            if self._text is None and self._silence == 0:
                self._speech_end = self._pushed
            events.append(self._end("silence"))
        self.reset()
        return events

    # -- per window ----------------------------------------------------------------------------
    def _window(self, w: np.ndarray, events: list[TurnEvent]) -> None:
        c = self.config
        t0 = time.perf_counter()
        energy = float(np.dot(w, w))
        quiet = energy < self._gate2
        self._quiet = self._quiet + 1 if quiet else 0
        if quiet and self._quiet > self._gate_after and not self._open and not self._candidate:
            self.prob.skip(w)
            self.gated += 1
            p = 0.0
        else:
            p = self.prob(w)
        self.busy_s += time.perf_counter() - t0
        self._pushed += WINDOW
        if not self._open:
            self._history.append(w)
            if p >= c.threshold or (self._candidate and p >= c.off_threshold):
                self._candidate += 1
            else:
                self._candidate = 0
            if self._candidate * WINDOW >= self._min_speech:
                self._open = True
                self._windows = list(self._history)
                self._kept = len(self._windows)
                self._peak = max(float(np.dot(x, x)) for x in self._windows[-self._candidate :])
                self._quiet_from = None
                self._start = self._pushed - self._candidate * WINDOW
                self._speech_end = self._pushed
                self._silence, self._silent, self._text, self._candidate, self._early = 0, 0, None, 0, False
                self._quiet_run = 0
                self._history.clear()
                events.append(TurnEvent("speech", self._start, self._speech_end, time.perf_counter()))
            return
        self._windows.append(w)
        if p >= c.off_threshold:
            if self._drop or self._early_drop:
                self._peak = max(self._peak, energy)
            # silero's speech, but maybe already the audible end (quiet under early_asr_db)
            quiet = bool(self._early_drop) and energy < self._peak * self._early_drop
            if self._silence or not quiet:  # speech again, or still loud: what was said goes on
                if self._silence:
                    events.append(TurnEvent("resume", self._start, self._pushed, time.perf_counter()))
                self._drop_pending()
                self._text, self._early, self._quiet_run = None, False, 0
            self._quiet_run += quiet
            self._silence, self._silent = 0, 0
            self._speech_end = self._pushed
            self._kept = len(self._windows)
            if self._quiet_run == c.early_asr_windows and not self._early and self.transcribe is not None:
                self._early = True  # quiet long enough: transcribe what was said up to here now
                self.early_asr_runs += 1
                self._speculate()
            if self._drop:  # the silence clock's own energy drop (energy_drop_db)
                if energy >= self._peak * self._drop:
                    self._quiet_from = None
                elif self._quiet_from is None:
                    self._quiet_from = self._pushed - WINDOW
            if self._pushed - self._start >= self._max:
                events.append(self._end("max_speech"))
            return
        self._silent += 1
        if self._silent == 1:
            self._silence_start = self._speech_end
            if self._quiet_from is not None:
                self._silence_start -= min(self._speech_end - self._quiet_from, self._max_early)
                self._quiet_from = None
            self._silence = self._speech_end - self._silence_start
            events.append(TurnEvent("pause", self._start, self._speech_end, time.perf_counter(),
                                    silence_start=self._silence_start))  # fmt: skip
        self._silence += WINDOW
        if self._silent * WINDOW == self._asr_after and self.transcribe is not None and not self._early:
            self._speculate()  # what was said so far (an early text of the quiet end stands instead)
        self._decide(events)

    def _speculate(self) -> None:
        """Transcribe the utterance up to its last speech window (on the ASR thread when
        ``background``, else now) as the speculative text."""
        if self._pool is not None:
            self._drop_pending()
            self._pending = self._pool.submit(self._transcribe, self._audio())
            if self.on_text is not None:  # after the result is set (not from _transcribe)
                self._pending.add_done_callback(lambda _f: self.on_text())
        else:
            self._text = self._transcribe(self._audio())

    def _drop_pending(self) -> None:
        """A speculative text no longer wanted (speech came back): not started, it never runs."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _decide(self, events: list[TurnEvent]) -> None:
        if self._pending is not None and self._pending.done():
            self._text, self._pending = self._pending.result(), None
        need = self._long
        if self._text is not None and looks_finished(self._text):
            need = self._question if self._text.rstrip().endswith("?") else self._short
        if self._silence >= need:
            events.append(self._end("finished" if need < self._long else "silence"))

    def _transcribe(self, pcm: np.ndarray) -> str:
        t0 = time.perf_counter()
        text = self.transcribe(pcm)
        self.asr_done_at = time.perf_counter()
        self.busy_s += self.asr_done_at - t0
        self.asr_runs += 1
        return text

    def _audio(self) -> np.ndarray:
        """The utterance up to its last speech window, with the pre-roll in front."""
        keep = self._kept
        return np.concatenate(self._windows[:keep]) if keep > 0 else np.zeros(0, np.float32)

    def _end(self, reason: str) -> TurnEvent:
        samples = self._audio()
        text = self._text
        if text is None and self._pending is not None:  # the long silence is up: wait for the text
            text = self._pending.result()
        elif text is None and self.transcribe is not None:
            text = self._transcribe(samples)
        event = TurnEvent("end", self._start, self._speech_end, time.perf_counter(), samples, text, reason,
                          self._silence_start if self._silent else self._speech_end)
        self._open, self._windows, self._silence, self._text, self._pending = False, [], 0, None, None
        self._silent, self._quiet_from, self._early = 0, None, False
        self._history.clear()
        return event
