"""The log-mel front end, defined once.

The matrices built here (window, real DFT basis, mel filterbank) are the single definition of
the front end: the runtime computes features with them in numpy, and the PyTorch AudioEncoder
(export/) registers the very same arrays as buffers, so the two agree to float rounding.

Bit-exact numpy: BLAS rounds a row of a matrix product differently depending on how many rows the
product has (OpenBLAS picks kernels and blocking by shape; measured: up to 2e-5 on the DFT, 2e-4
after the log), so ``MelBlock`` multiplies a fixed number of rows every time. Streaming
(huma_rt/audio/features.py) and ``log_mel`` both go through it with blocks aligned to mel
frame 0, so a mel frame's value never depends on how the audio arrived.
"""

from __future__ import annotations

import functools

import numpy as np

from huma_rt.errors import InputError
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


class MelBlock:
    """Log-mel of exactly ``rows`` windows per call, on buffers allocated once.

    ``__call__(frames [rows, n_fft] f32, out [rows, n_mels] f32)``: no allocation, and the same
    shapes on every call, so BLAS runs the same kernels with the same blocking each time.
    """

    def __init__(self, cfg: MelConfig, rows: int) -> None:
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise InputError(f"rows must be a positive integer; got {rows!r}")
        self.rows = rows
        nb = cfg.n_fft // 2 + 1
        basis = dft_basis(cfg)
        # separate contiguous cos / sin halves: ufuncs on column slices of one product buffer
        # go through numpy's buffered iterator, which allocates
        self._basis_re = np.ascontiguousarray(basis[:, :nb])
        self._basis_im = np.ascontiguousarray(basis[:, nb:])
        self._fb = mel_filterbank(cfg)
        self._floor = np.float32(cfg.log_floor)
        self._re = np.empty((rows, nb), np.float32)
        self._im = np.empty((rows, nb), np.float32)

    def __call__(self, frames: np.ndarray, out: np.ndarray) -> None:
        re, im = self._re, self._im
        np.matmul(frames, self._basis_re, out=re)
        np.matmul(frames, self._basis_im, out=im)
        np.multiply(re, re, out=re)
        np.multiply(im, im, out=im)
        np.add(re, im, out=re)  # power spectrum
        np.matmul(re, self._fb, out=out)
        np.add(out, self._floor, out=out)
        np.log(out, out=out)


def log_mel(samples: np.ndarray, cfg: MelConfig, out: np.ndarray | None = None, *,
            block: int = 4) -> np.ndarray:  # fmt: skip
    """Log-mel of every full window in ``samples`` [S] float32 -> [T, n_mels] float32.

    Frame m is the window samples[m*hop : m*hop + n_fft]; no padding is added here (callers
    that need the model's alignment prepend ``cfg.left_pad`` samples of silence).
    ``out`` ([T, n_mels] float32), when given, receives the result. ``block``: mel frames per
    matrix product (a trailing partial block is zero-padded); streaming uses the encoder's
    mels_per_frame (4 at 25 fps), and equal blocks give bit-equal frames.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    t = num_frames(samples.shape[0], cfg)
    if out is None:
        out = np.empty((t, cfg.n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.as_strided(
        samples, shape=(t, cfg.n_fft), strides=(samples.strides[0] * cfg.hop, samples.strides[0])
    )
    mb = MelBlock(cfg, block)
    buf = np.zeros((block, cfg.n_fft), np.float32)
    mel = np.empty((block, cfg.n_mels), np.float32)
    for i in range(0, t, block):
        k = min(block, t - i)
        buf[:k] = frames[i : i + k]
        buf[k:] = 0.0
        mb(buf, mel)
        out[i : i + k] = mel[:k]
    return out
