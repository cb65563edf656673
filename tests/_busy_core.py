"""The real Piper voice on a busy core, made deterministic: each call sleeps ``per_phoneme``
seconds per phoneme before it synthesizes (a loaded 2-core host runs Piper 2-3x slower than a
quiet one; how much varies run to run, and the pacing tests need a fixed slowness)."""

from __future__ import annotations

import time


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
