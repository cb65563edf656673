"""Audio in and out of the speech chain: validation, mono downmix, resampling, WAV reading.

Everything downstream of this module sees 16 kHz mono float32 in [-1, 1] with no NaN/Inf, so
the checks live here once. Resampling and WAV files go through the runtime's resampler and
huma_rt.media's WAV reader/writer (tests compare the resampler with scipy's resample_poly).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from huma_rt.errors import InputError

log = logging.getLogger(__name__)

TARGET_RATE = 16000
# Rates we accept from callers; anything else is almost certainly a wrong argument.
MIN_RATE, MAX_RATE = 8000, 192000


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
        raise InputError(f"sample_rate must be an integer in Hz; got {sample_rate!r}")
    if not MIN_RATE <= int(sample_rate) <= MAX_RATE:
        raise InputError(f"sample_rate must be between {MIN_RATE} and {MAX_RATE} Hz; got {sample_rate}")
    return int(sample_rate)


def to_mono_float(pcm: np.ndarray, *, name: str = "audio") -> np.ndarray:
    """Validate ``pcm`` and return it as contiguous mono float32.

    pcm: [S] or [S, C] (channels last; C <= 8) of float or int16/int32. Integer PCM is scaled
    to [-1, 1]; channels are averaged. NaN or Inf anywhere is an InputError (never silently
    zeroed: a NaN usually means a broken upstream stage).
    """
    arr = np.asarray(pcm)
    if arr.ndim == 2 and arr.shape[1] > 8 and arr.shape[0] <= 8:
        raise InputError(
            f"{name} must be [samples] or [samples, channels]; got shape {arr.shape} "
            "(channels first? transpose it)"
        )
    if arr.ndim not in (1, 2):
        raise InputError(f"{name} must be [samples] or [samples, channels]; got shape {arr.shape}")
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / 32768.0
    elif arr.dtype == np.int32:
        arr = arr.astype(np.float32) / 2147483648.0
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float32, copy=False)
    else:
        raise InputError(f"{name} must be float32/float64/int16/int32 PCM; got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr.mean(axis=1, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        first = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise InputError(f"{name} contains {bad} NaN/Inf samples (first at sample {first}); expected finite PCM")
    return np.ascontiguousarray(arr)


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int = TARGET_RATE) -> np.ndarray:
    """Resample one clip of mono float32 ``pcm`` [S] -> [ceil(S*dst/src)] f32.

    The runtime's streaming windowed-sinc resampler (huma_rt.runtime.audio_input) run over the
    whole clip (push + flush): one resampler in the package, the same filter for TTS output and
    for audio pushed into sessions.
    """
    from huma_rt.runtime.audio_input import StreamResampler

    src_rate, dst_rate = _check_rate(src_rate), _check_rate(dst_rate)
    x = np.ascontiguousarray(pcm, dtype=np.float32)
    if src_rate == dst_rate or x.size == 0:
        return x.copy()
    r = StreamResampler(src_rate, dst_rate)
    return np.concatenate([r.push(x), r.flush()])


def prepare_input(pcm: np.ndarray, sample_rate: int, *, name: str = "audio") -> np.ndarray:
    """Any accepted PCM (mono/stereo, int/float, 8..192 kHz) -> 16 kHz mono float32 [S]."""
    sample_rate = _check_rate(sample_rate)
    mono = to_mono_float(pcm, name=name)
    if sample_rate != TARGET_RATE:
        log.info("resampling %s from %d Hz to %d Hz", name, sample_rate, TARGET_RATE)
        mono = resample(mono, sample_rate, TARGET_RATE)
    return mono


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(pcm [S] or [S, 2] f32, sample_rate) through huma_rt.media's strict WAV reader."""
    from huma_rt.media.wav import read_wav as _read

    return _read(path)


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write mono float32 ``pcm`` [S] as 16-bit PCM WAV (huma_rt.media's writer)."""
    from huma_rt.media.wav import write_wav as _write

    _write(path, np.asarray(pcm, np.float32), int(sample_rate))


def trim_leading_silence(pcm: np.ndarray, sample_rate: int = TARGET_RATE, floor_db: float = -40.0,
                         keep_s: float = 0.005) -> np.ndarray:
    """``pcm`` [S] f32 from ``keep_s`` before its first sample louder than ``floor_db`` under its
    peak (a view; all of it when it starts loud, none when it is all zeros)."""
    a = np.abs(pcm)
    if a.size == 0 or not a.max() > 0:
        return pcm[:0]
    first = int(np.argmax(a > a.max() * 10.0 ** (floor_db / 20.0)))
    return pcm[max(0, first - int(round(keep_s * sample_rate))) :]


class Windower:
    """Audio of any chunk size -> consecutive windows of exactly ``size`` samples; what is left
    over waits for the next push. Models that see fixed windows (silero: 512 samples) give the
    same results however the stream was chunked."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._tail = np.zeros(size, np.float32)
        self.held = 0  # samples waiting for a whole window

    def reset(self) -> None:
        self.held = 0

    def windows(self, x: np.ndarray):
        """Yield the whole windows that ``x`` [S] f32 completes, in order (each a view, valid
        until the next one is yielded)."""
        w, pos = self.size, 0
        if self.held:
            take = min(w - self.held, x.size)
            self._tail[self.held : self.held + take] = x[:take]
            self.held += take
            pos = take
            if self.held == w:
                self.held = 0
                yield self._tail
        while x.size - pos >= w:
            yield x[pos : pos + w]
            pos += w
        rest = x.size - pos
        if rest:
            self._tail[:rest] = x[pos:]
            self.held = rest

    def pad(self) -> np.ndarray | None:
        """End of stream: the samples held, padded with silence to a window (None if none)."""
        if not self.held:
            return None
        self._tail[self.held :] = 0.0
        self.held = 0
        return self._tail
