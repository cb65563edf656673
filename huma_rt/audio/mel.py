"""The log-mel front end, defined once.

The matrices built here (window, real DFT basis, mel filterbank) are the single definition of
the front end: the runtime computes features with them in numpy, and the PyTorch AudioEncoder
(export/) registers the very same arrays as buffers, so the two agree to float rounding.
"""

from __future__ import annotations

import functools

import numpy as np

from huma_rt.model_config import MelConfig


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def _matrices(cfg_key: tuple) -> tuple[np.ndarray, np.ndarray]:
    sr, n_fft, _hop, n_mels, fmin, fmax, _floor = cfg_key
    n_bins = n_fft // 2 + 1
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)  # periodic Hann
    k = np.arange(n_bins)
    angle = 2 * np.pi * np.outer(n, k) / n_fft
    # [n_fft, 2*n_bins]: windowed cos | sin, so power = (x@C)^2 + (x@S)^2
    basis = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) * window[:, None]
    freqs = np.linspace(0, sr / 2, n_bins)
    mel_pts = np.linspace(_hz_to_mel(np.float64(fmin)), _hz_to_mel(np.float64(fmax)), n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)
    fb = np.zeros((n_bins, n_mels))
    for i in range(n_mels):
        lo, ce, hi = hz_pts[i], hz_pts[i + 1], hz_pts[i + 2]
        up = (freqs - lo) / (ce - lo)
        down = (hi - freqs) / (hi - ce)
        fb[:, i] = np.maximum(0.0, np.minimum(up, down))
    return basis.astype(np.float32), fb.astype(np.float32)


def _key(cfg: MelConfig) -> tuple:
    return (cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.fmin, cfg.fmax, cfg.log_floor)


def dft_basis(cfg: MelConfig) -> np.ndarray:
    """Windowed real-DFT basis [n_fft, 2*(n_fft//2+1)] float32 (cos columns, then -sin)."""
    return _matrices(_key(cfg))[0]


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """HTK triangular mel filterbank [n_fft//2+1, n_mels] float32."""
    return _matrices(_key(cfg))[1]


def num_frames(num_samples: int, cfg: MelConfig) -> int:
    """Mel frames whose whole window lies inside ``num_samples`` samples (no padding)."""
    if num_samples < cfg.n_fft:
        return 0
    return 1 + (num_samples - cfg.n_fft) // cfg.hop


def log_mel(samples: np.ndarray, cfg: MelConfig, out: np.ndarray | None = None) -> np.ndarray:
    """Log-mel of every full window in ``samples`` [S] float32 -> [T, n_mels] float32.

    Frame m is the window samples[m*hop : m*hop + n_fft]; no padding is added here (callers
    that need the model's alignment prepend ``cfg.left_pad`` samples of silence).
    ``out`` ([T, n_mels] float32), when given, receives the result.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    t = num_frames(samples.shape[0], cfg)
    frames = np.lib.stride_tricks.as_strided(
        samples, shape=(t, cfg.n_fft), strides=(samples.strides[0] * cfg.hop, samples.strides[0])
    )
    spec = frames @ dft_basis(cfg)
    nb = cfg.n_fft // 2 + 1
    power = spec[:, :nb] ** 2 + spec[:, nb:] ** 2
    mel = power @ mel_filterbank(cfg)
    if out is None:
        out = np.empty((t, cfg.n_mels), dtype=np.float32)
    np.log(mel + np.float32(cfg.log_floor), out=out)
    return out
