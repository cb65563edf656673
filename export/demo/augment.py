"""Recording-condition augmentation for the lip-sync data: level, EQ, reverb, noise.

Each function takes audio [S] float32 at ``sr`` and a numpy Generator and returns new audio of the
same length; ``augment`` chains them with random settings so the encoder learns to ignore how a
voice was recorded (the silence between words keeps its noise, so silence-with-noise maps to a
closed mouth).
"""

from __future__ import annotations

import numpy as np
from scipy import signal


def level(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random overall gain (-32..0 dB below full scale) with a slow random gain drift (+-4 dB)."""
    peak = float(np.abs(x).max()) or 1.0
    gain_db = rng.uniform(-32.0, -1.0) + np.interp(
        np.arange(x.size), np.linspace(0, x.size, 4), rng.uniform(-4.0, 4.0, 4))
    return (x / peak * 10 ** (gain_db / 20)).astype(np.float32)


def eq(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Random high-pass, low-pass and a peaking band (telephone-ish to bright)."""
    y = x.astype(np.float64)
    if rng.random() < 0.5:
        sos = signal.butter(2, rng.uniform(60, 350), "highpass", fs=sr, output="sos")
        y = signal.sosfilt(sos, y)
    if rng.random() < 0.5:
        sos = signal.butter(4, rng.uniform(2800, 0.45 * sr), "lowpass", fs=sr, output="sos")
        y = signal.sosfilt(sos, y)
    if rng.random() < 0.5:
        f0, q, gain = rng.uniform(300, 4000), rng.uniform(0.7, 3.0), rng.uniform(-10, 10)
        b, a = _peaking(f0, q, gain, sr)
        y = signal.lfilter(b, a, y)
    return y.astype(np.float32)


def _peaking(f0: float, q: float, gain_db: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    # RBJ audio-EQ-cookbook peaking filter
    a_ = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / sr
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a_, -2 * np.cos(w), 1 - alpha * a_])
    a = np.array([1 + alpha / a_, -2 * np.cos(w), 1 - alpha / a_])
    return b / a[0], a / a[0]


def reverb(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room response: direct path + exponentially decaying noise tail
    (RT60 0.1..0.8 s), mixed at a random direct-to-reverberant ratio."""
    rt60 = rng.uniform(0.1, 0.8)
    n = int(rt60 * sr)
    t = np.arange(n) / sr
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60)
    tail[: int(0.003 * sr)] = 0.0  # first reflections arrive after a few ms
    tail /= np.sqrt(np.sum(tail**2)) + 1e-12
    ir = np.zeros(n)
    ir[0] = 1.0
    ir += tail * rng.uniform(0.2, 1.2)
    y = signal.fftconvolve(x.astype(np.float64), ir)[: x.size]
    return (y * (np.abs(x).max() / (np.abs(y).max() + 1e-12))).astype(np.float32)


def noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add white, pink or brown noise at an SNR of 0..40 dB relative to the speech level."""
    kind = rng.integers(3)
    n = rng.normal(size=x.size)
    if kind > 0:
        spec = np.fft.rfft(n)
        f = np.arange(spec.size) + 1.0
        spec /= f ** (0.5 * kind)  # pink: 1/sqrt(f) amplitude, brown: 1/f
        n = np.fft.irfft(spec, n=x.size)
    speech_rms = np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9
    snr = rng.uniform(0.0, 40.0)
    n *= speech_rms / (np.sqrt(np.mean(n**2)) + 1e-12) / 10 ** (snr / 20)
    return (x + n).astype(np.float32)


def augment(x: np.ndarray, sr: int, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Random chain: EQ (p 0.7), reverb (p 0.4), noise (p 0.7), level (always), clipped to [-1, 1]."""
    y = x
    if rng.random() < 0.7 * strength:
        y = eq(y, sr, rng)
    if rng.random() < 0.4 * strength:
        y = reverb(y, sr, rng)
    if rng.random() < 0.7 * strength:
        y = noise(y, rng)
    y = level(y, rng)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
