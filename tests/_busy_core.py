"""The real Piper voice on a busy core, made deterministic: each call sleeps ``per_phoneme``
seconds per phoneme before it synthesizes (a loaded 2-core host runs Piper 2-3x slower than a
quiet one; how much varies run to run, and the pacing tests need a fixed slowness)."""

from __future__ import annotations

import time

# A short first chunk, then a sentence a busy core makes in more time than that chunk's audio lasts
LATE_REPLY = ("Of course, the weather in Paris is sunny and warm today with a light wind from the west "
              "and a few small clouds over the river.")  # fmt: skip


def busy_piper(cache_dir=None, per_phoneme: float = 0.006):
    """The packaged Piper voice (1 thread) on a busy core (``BusyCore``)."""
    from huma_rt.speech.tts import PiperTTS

    tts = PiperTTS.load(cache_dir=cache_dir, num_threads=1)
    tts._tts = BusyCore(tts._tts, per_phoneme)
    return tts


class BusyCore:
    """Wraps ``PiperTTS._tts`` (the sherpa-onnx voice): ``tts._tts = BusyCore(tts._tts, 0.006)``."""

    def __init__(self, voice, per_phoneme: float) -> None:
        self.voice, self.per_phoneme = voice, per_phoneme

    def generate(self, text, gen):
        time.sleep(self.per_phoneme * len(gen.phoneme_codepoints[0]))
        return self.voice.generate(text, gen)


class Unpaced:
    """The same TTS without its cost estimate (``chars_within``): the pacer cannot cut, chunks
    are made whole (as before the pacing)."""

    def __init__(self, tts) -> None:
        self.tts = tts
        self.stats = tts.stats

    def stream_chunks(self, chunks, **kw):
        return self.tts.stream_chunks(chunks, **kw)
