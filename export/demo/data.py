"""Lip-sync examples made offline: espeak-ng speech at 16 kHz + viseme targets per video frame.

An utterance is synthesized with a voice/rate/pitch, resampled from espeak-ng's 22050 Hz to
16 kHz, padded with silence at both ends (so silence is learned as a closed mouth), optionally
augmented (augment.py); its targets come from the exact phoneme events (visemes.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import signal

from huma_rt.speech import espeak

from . import augment as aug
from .corpus import random_sentence, random_voice
from .visemes import frame_targets

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS


@dataclass
class Utterance:
    """audio [S] float32 at 16 kHz (S a multiple of 640), targets [S/640, 4] (jaw, round, spread,
    closure), speech [S/640] bool (frames inside the phoneme events), plus what made it."""

    audio: np.ndarray
    targets: np.ndarray
    speech: np.ndarray
    text: str
    voice: str
    rate: int
    pitch: int


def resample(x: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of x [S] float32 from sr to target Hz."""
    if sr == target:
        return x.astype(np.float32)
    g = np.gcd(int(sr), int(target))
    return signal.resample_poly(x.astype(np.float64), target // g, sr // g).astype(np.float32)


def speech_mask(events, num_frames: int) -> np.ndarray:
    """[num_frames] bool: frames whose centre lies inside a non-pause phoneme event."""
    centres = (np.arange(num_frames) + 0.5) / FPS
    mask = np.zeros(num_frames, bool)
    for ev in events:
        if ev.phoneme.startswith("_"):
            continue
        mask |= (centres >= ev.start_s) & (centres < ev.end_s)
    return mask


def make_utterance(text: str, voice: str, rate: int, pitch: int, pitch_range: int = 50,
                   lead_s: float = 0.3, tail_s: float = 0.4) -> Utterance:
    """Synthesize ``text`` and build its 16 kHz audio and per-frame targets (no augmentation)."""
    syn = espeak.synthesize(text, voice=voice, rate=rate, pitch=pitch, pitch_range=pitch_range)
    pcm = resample(syn.pcm, syn.sample_rate)
    lead = int(lead_s * SAMPLE_RATE)
    total = lead + pcm.size + int(tail_s * SAMPLE_RATE)
    total = -(-total // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
    audio = np.zeros(total, np.float32)
    audio[lead:lead + pcm.size] = pcm
    shift = lead / SAMPLE_RATE
    events = [espeak.PhonemeEvent(e.start_s + shift, e.end_s + shift, e.phoneme) for e in syn.events]
    frames = total // SAMPLES_PER_FRAME
    return Utterance(audio, frame_targets(events, frames, FPS).astype(np.float32),
                     speech_mask(events, frames), text, voice, rate, pitch)


def random_utterance(rng: np.random.Generator, text: str | None = None, voice: str | None = None) -> Utterance:
    """A training utterance: random text (unless given), voice, rate, pitch and silence padding."""
    return make_utterance(
        text or random_sentence(rng), voice or random_voice(rng),
        rate=int(rng.integers(120, 261)), pitch=int(rng.integers(20, 81)),
        pitch_range=int(rng.integers(25, 86)),
        lead_s=float(rng.uniform(0.05, 0.8)), tail_s=float(rng.uniform(0.1, 0.8)),
    )


def augmented(u: Utterance, rng: np.random.Generator, strength: float = 1.0) -> Utterance:
    """A copy of ``u`` whose audio went through a random recording-condition chain."""
    return Utterance(aug.augment(u.audio, SAMPLE_RATE, rng, strength), u.targets, u.speech,
                     u.text, u.voice, u.rate, u.pitch)
