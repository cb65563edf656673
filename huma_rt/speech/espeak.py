"""The one libespeak-ng binding of huma-rt (ctypes): IPA phonemization and timed synthesis.

``phonemize(text)`` gives the IPA that Piper voices expect (the same phonemes as
``espeak-ng -q --ipa``, optionally with the clause punctuation kept); ``synthesize(text)`` gives
espeak-ng's own speech with exact per-phoneme timestamps, taken from the sample index of the
PHONEME events that ``espeak_SetSynthCallback`` reports (the demo avatar's lip-sync targets).

libespeak-ng keeps global state (one voice, one parameter set, one callback), so every call
holds a module lock. The library is looked up in this order: ``$HUMA_ESPEAK_LIB``, the system
library (Debian ``libespeak-ng1``), the ``espeakng-loader`` wheel (which ships its own data).

Two properties of espeak-ng worth knowing: a stop's event marks its release (the silent closure
before it belongs to the previous phoneme's span), and its output depends on the calls before it
by a few pitch periods per pause (state that neither re-initialising nor srand resets; the same
sequence of calls in a fresh process gives the same samples, and a first call equals the CLI).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import threading
from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

__all__ = ["PhonemeEvent", "Synthesis", "phonemize", "phonemize_clauses", "synthesize",
           "sample_rate", "list_voices", "library_info"]

# espeak_EVENT_TYPE values and option bits from speak_lib.h
_EV_LIST_TERMINATED = 0
_EV_END = 5
_EV_MSG_TERMINATED = 6
_EV_PHONEME = 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # a pause after the last clause, as the espeak-ng CLI adds
_PHONEMES_IPA = 0x02
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4
_EE_OK = 0
_VOICE_CHANGES_SAFE = 8  # queued voice events a synthesis's first event list surely has room for

_TERMINATOR = re.compile(r"([.,?!;:])[\"')\]]*(?:\s+\S?)?\s*$")
RATE_RANGE = (80, 450)  # words per minute, as documented by speak_lib.h
PITCH_RANGE = (0, 100)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceSpec(ctypes.Structure):
    """espeak_VOICE (speak_lib.h)."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme of synthesized speech: [start_s, end_s) in seconds, IPA name (may be '_' etc.)."""

    start_s: float
    end_s: float
    phoneme: str


@dataclass
class Synthesis:
    """Result of ``synthesize``: pcm [S] float32 in [-1, 1] at ``sample_rate``, and its phonemes.

    Iterating gives (pcm, sample_rate, events) so ``pcm, sr, events = synthesize(...)`` works.
    """

    pcm: np.ndarray
    sample_rate: int
    events: list[PhonemeEvent]

    def __iter__(self):
        return iter((self.pcm, self.sample_rate, self.events))


class _Lib:
    """The loaded library, initialised once, and the state its callback writes into."""

    def __init__(self) -> None:
        self.dll, data_path = _load_library()
        self._bind()
        path = data_path.encode() if data_path else None
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        rate = self.dll.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, options)
        if rate <= 0:
            raise MissingDependencyError(
                f"libespeak-ng failed to initialise (returned {rate}; data path {data_path or 'default'}); "
                "install Debian's espeak-ng-data or the espeakng-loader wheel"
            )
        self.sample_rate = int(rate)
        self.chunks: list[np.ndarray] = []
        self.marks: list[tuple[int, str]] = []
        self.total = 0
        self.voice: str | None = None  # the voice last set
        self.voice_changes = 0  # voices set since the last synthesis (each queues an event)
        self._callback = _SynthCallback(self._on_synth)  # kept referenced: C holds the pointer
        self.dll.espeak_SetSynthCallback(self._callback)

    def _bind(self) -> None:
        d = self.dll
        d.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        d.espeak_Initialize.restype = ctypes.c_int
        d.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        d.espeak_SetSynthCallback.restype = None
        d.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        d.espeak_SetVoiceByName.restype = ctypes.c_int
        d.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_VoiceSpec)]
        d.espeak_SetVoiceByProperties.restype = ctypes.c_int
        d.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        d.espeak_SetParameter.restype = ctypes.c_int
        d.espeak_GetParameter.argtypes = [ctypes.c_int, ctypes.c_int]
        d.espeak_GetParameter.restype = ctypes.c_int
        d.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                   ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_uint),
                                   ctypes.c_void_p]
        d.espeak_Synth.restype = ctypes.c_int
        d.espeak_Synchronize.restype = ctypes.c_int
        d.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        d.espeak_TextToPhonemes.restype = ctypes.c_char_p
        d.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        d.espeak_Info.restype = ctypes.c_char_p
        d.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        d.espeak_ListVoices.restype = ctypes.POINTER(ctypes.c_void_p)

    def _on_synth(self, wav, numsamples, events) -> int:
        # Runs inside espeak_Synth on the calling thread (synchronous mode): no locking needed.
        if numsamples > 0 and wav:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EV_PHONEME:
                self.marks.append((int(ev.sample), ev.id.string.decode("utf-8", "replace")))
            elif ev.type in (_EV_END, _EV_MSG_TERMINATED):
                self.marks.append((int(ev.sample), ""))
            i += 1
        self.total += max(numsamples, 0)
        return 0

    def set_voice(self, voice: str) -> None:
        if not isinstance(voice, str) or not voice:
            raise InputError(f"voice must be a non-empty espeak-ng voice name such as 'en-us'; got {voice!r}")
        if voice == self.voice:
            return
        self.voice = None
        self.voice_changes += 1
        if self.dll.espeak_SetVoiceByName(voice.encode()) == _EE_OK:
            self.voice = voice
            return
        # like the espeak-ng CLI: a name that is no voice file is tried as a language ("en-gb")
        spec = _VoiceSpec(languages=voice.encode())
        if self.dll.espeak_SetVoiceByProperties(ctypes.byref(spec)) != _EE_OK:
            raise InputError(
                f"espeak-ng has no voice {voice!r}; expected a name listed by `espeak-ng --voices` "
                "(optionally with a variant, e.g. 'en-us+f3')"
            )
        self.voice = voice

    def drain_voice_changes(self) -> None:
        """Deliver the events that setting voices queued, before a synthesis whose phonemes count.

        Every voice set queues a sample-rate event that only the next synthesis delivers, in the
        event list of its first buffer, which has room for ~25 (libespeak-ng 1.51): after 25
        voices set by phonemize calls in a row, that synthesis lost its first phoneme, word and
        sentence events (20 still fitted). An empty synthesis delivers them (~0.03 ms; what it
        hands the callback is dropped by the caller's reset)."""
        if self.voice_changes > _VOICE_CHANGES_SAFE:
            self.dll.espeak_Synth(b"\x00", 1, 0, 1, 0, _CHARS_UTF8, None, None)
            self.dll.espeak_Synchronize()
        self.voice_changes = 0


def _candidate_libraries() -> list[tuple[str, str | None]]:
    """(library path or soname, data path or None) in lookup order."""
    out: list[tuple[str, str | None]] = []
    env = os.environ.get("HUMA_ESPEAK_LIB")
    if env:
        out.append((env, os.environ.get("HUMA_ESPEAK_DATA")))
    found = ctypes.util.find_library("espeak-ng")
    if found:
        out.append((found, None))
    out.append(("libespeak-ng.so.1", None))
    try:
        import espeakng_loader  # optional wheel with its own library and data

        out.append((str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path())))
    except ImportError:
        pass
    return out


def _load_library() -> tuple[ctypes.CDLL, str | None]:
    errors = []
    for name, data in _candidate_libraries():
        try:
            dll = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
            continue
        log.debug("libespeak-ng loaded from %s (data %s)", name, data or "default")
        return dll, data
    raise MissingDependencyError(
        "speech synthesis/phonemization needs libespeak-ng, which was not found ("
        + "; ".join(errors) + "); install it with `apt-get install espeak-ng` "
        "or `pip install espeakng-loader`"
    )


_lock = threading.RLock()
_lib: _Lib | None = None


def _get() -> _Lib:
    global _lib
    if _lib is None:
        _lib = _Lib()
    return _lib


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InputError(f"text must be a str; got {type(text).__name__}")
    if "\x00" in text:
        raise InputError("text must not contain NUL characters")
    return text


def sample_rate() -> int:
    """Native sample rate of espeak-ng's synthesis (22050 Hz for the standard voices)."""
    with _lock:
        return _get().sample_rate


def library_info() -> str:
    """espeak-ng version string and data path, e.g. '1.51  /usr/lib/.../espeak-ng-data'."""
    with _lock:
        lib = _get()
        path = ctypes.c_char_p()
        version = lib.dll.espeak_Info(ctypes.byref(path))
        return f"{version.decode()}  {(path.value or b'').decode()}"


def phonemize_clauses(text: str, voice: str = "en-us") -> list[tuple[str, str]]:
    """IPA per clause: [(phonemes, terminator)], terminator being the clause's closing
    punctuation ('.', ',', '?', '!', ';', ':' or '' when none).

    Clause splitting is espeak-ng's own (``espeak_TextToPhonemes`` stops at clause punctuation).
    """
    text = _check_text(text)
    out: list[tuple[str, str]] = []
    with _lock:
        lib = _get()
        lib.set_voice(voice)
        data = text.encode("utf-8")
        buf = ctypes.create_string_buffer(data)
        start = ctypes.addressof(buf)
        ptr = ctypes.c_void_p(start)
        while ptr.value:
            before = ptr.value - start
            phon = lib.dll.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
            after = (ptr.value - start) if ptr.value else len(data)
            # espeak reads one character past the clause, so the terminator is the punctuation
            # followed only by whitespace and at most a fragment of the next word
            consumed = data[before:after].decode("utf-8", "replace")
            match = _TERMINATOR.search(consumed)
            term = match.group(1) if match else ""
            ipa = (phon or b"").decode("utf-8", "replace").strip()
            if ipa:
                out.append((ipa, term))
            elif term and out:
                out[-1] = (out[-1][0], term)
    return out


def phonemize(text: str, voice: str = "en-us", punctuation: bool = True) -> str:
    """IPA phonemes of ``text`` as one string (words separated by spaces).

    With ``punctuation`` each clause keeps its terminator ("həlˈoʊ wˈɜːld, haʊ ɑːɹ juː?"), the
    form Piper voices are trained on; without it clauses are joined by a space and the result
    equals ``espeak-ng -q --ipa -v VOICE`` with its line breaks replaced by spaces.
    """
    clauses = phonemize_clauses(text, voice)
    if punctuation:
        return " ".join(ipa + term for ipa, term in clauses)
    return " ".join(ipa for ipa, _ in clauses)


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise InputError(f"{name} must be an integer in {lo}..{hi}; got {value!r}")
    return int(value)


def synthesize(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50,
               pitch_range: int = 50) -> Synthesis:
    """Speak ``text`` with espeak-ng and time every phoneme.

    text: UTF-8 text (SSML is not interpreted). voice: espeak-ng voice name, optionally with a
    variant ('en-us+f3'). rate: words per minute, 80..450. pitch, pitch_range: 0..100 (50 = normal).
    Returns Synthesis(pcm [S] float32 in [-1, 1], sample_rate (22050), events) where events are
    consecutive PhonemeEvents covering the speech, with start/end from the exact sample at which
    espeak-ng began each phoneme. Pauses appear as phoneme '_' events or as gaps.
    """
    text = _check_text(text)
    rate = _check_int("rate", rate, *RATE_RANGE)
    pitch = _check_int("pitch", pitch, *PITCH_RANGE)
    pitch_range = _check_int("pitch_range", pitch_range, *PITCH_RANGE)
    with _lock:
        lib = _get()
        lib.set_voice(voice)
        for param, value in ((_P_RATE, rate), (_P_PITCH, pitch), (_P_RANGE, pitch_range), (_P_VOLUME, 100)):
            lib.dll.espeak_SetParameter(param, value, 0)
        lib.drain_voice_changes()
        lib.chunks, lib.marks, lib.total = [], [], 0
        data = text.encode("utf-8") + b"\x00"
        buf = ctypes.create_string_buffer(data)
        status = lib.dll.espeak_Synth(buf, len(data), 0, 1, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if status != _EE_OK:
            raise InputError(f"espeak-ng refused the text (status {status}): {text[:60]!r}")
        lib.dll.espeak_Synchronize()
        pcm = (np.concatenate(lib.chunks) if lib.chunks else np.zeros(0, np.int16)).astype(np.float32)
        marks, sr = list(lib.marks), lib.sample_rate
        lib.chunks, lib.marks = [], []
    pcm /= 32768.0
    return Synthesis(pcm=pcm, sample_rate=sr, events=_events_from_marks(marks, pcm.size, sr))


def _events_from_marks(marks: list[tuple[int, str]], total: int, sr: int) -> list[PhonemeEvent]:
    """Phoneme marks (sample, name; '' = end of clause) -> events ending where the next begins."""
    events: list[PhonemeEvent] = []
    for k, (sample, name) in enumerate(marks):
        if not name:
            continue
        end = marks[k + 1][0] if k + 1 < len(marks) else total
        end = min(max(end, sample), total)
        if end > sample:
            events.append(PhonemeEvent(sample / sr, end / sr, name))
    return events


def list_voices(language: str = "en") -> list[str]:
    """Identifiers of the espeak-ng voices whose language starts with ``language``."""
    with _lock:
        lib = _get()
        voices = lib.dll.espeak_ListVoices(None)

    out = []
    i = 0
    while voices[i]:
        v = ctypes.cast(voices[i], ctypes.POINTER(_VoiceSpec)).contents
        # languages: a priority byte then a NUL-terminated name, repeated; the first is enough
        lang = (v.languages or b"\x00\x00")[1:].split(b"\x00")[0].decode(errors="replace")
        if lang.startswith(language):
            out.append(lang)
        i += 1
    return sorted(set(out))
