"""Audio in and out of the speech chain: validation, mono downmix, resampling, WAV reading.

Everything downstream of this module sees 16 kHz mono float32 in [-1, 1] with no NaN/Inf, so
the checks live here once. The resampler is a windowed-sinc polyphase FIR (numpy only, the
runtime does not depend on scipy); tests compare it with ``scipy.signal.resample_poly``.
"""

from __future__ import annotations

import functools
import logging
import math
import wave
from pathlib import Path

import numpy as np

from huma_rt.errors import FormatError, InputError

log = logging.getLogger(__name__)

TARGET_RATE = 16000
# Rates we accept from callers; anything else is almost certainly a wrong argument.
MIN_RATE, MAX_RATE = 8000, 192000
_BLOCK = 4096


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


@functools.lru_cache(maxsize=16)
def _polyphase_filter(up: int, down: int, half_taps: int = 16) -> np.ndarray:
    """Kaiser-windowed sinc low-pass for rational resampling, as [up, taps_per_phase] f64.

    Cut-off at the lower Nyquist; ``half_taps`` zero crossings either side (about 95 dB stop
    band with beta 8.6). Phase p holds taps h[p + k*up] so that output n only touches
    taps_per_phase input samples.
    """
    cutoff = 1.0 / max(up, down)
    n_half = half_taps * max(up, down)
    n = np.arange(-n_half, n_half + 1, dtype=np.float64)
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * n_half + 1, 8.6) * up
    per_phase = math.ceil(len(h) / up)
    h = np.concatenate([h, np.zeros(per_phase * up - len(h))])
    return h.reshape(per_phase, up).T.copy()


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int = TARGET_RATE) -> np.ndarray:
    """Resample mono float32 ``pcm`` [S] from ``src_rate`` to ``dst_rate`` -> [ceil(S*dst/src)] f32.

    Zero-phase (the filter's delay is compensated), so output sample n is at time n / dst_rate,
    like ``scipy.signal.resample_poly``.
    """
    src_rate, dst_rate = _check_rate(src_rate), _check_rate(dst_rate)
    x = np.asarray(pcm, dtype=np.float32)
    if src_rate == dst_rate or x.size == 0:
        return x.copy()
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    bank = _polyphase_filter(up, down)
    per_phase = bank.shape[1]
    n_half = 16 * max(up, down)  # centre tap of the filter, matches _polyphase_filter
    n_out = -(-x.size * up // down)
    out = np.empty(n_out, dtype=np.float32)
    k = np.arange(per_phase, dtype=np.int64)
    # Blocks bound the [block, taps] temporaries (a few MB) whatever the clip length.
    for start in range(0, n_out, _BLOCK):
        out_idx = np.arange(start, min(start + _BLOCK, n_out), dtype=np.int64)
        pos = out_idx * down + n_half  # position in the upsampled, filtered signal
        phase = pos % up
        idx = (pos // up)[:, None] - k[None, :]
        valid = (idx >= 0) & (idx < x.size)
        samples = np.where(valid, x[np.clip(idx, 0, x.size - 1)], 0.0)
        out[start : start + len(out_idx)] = np.einsum("ij,ij->i", bank[phase], samples)
    return out


def prepare_input(pcm: np.ndarray, sample_rate: int, *, name: str = "audio") -> np.ndarray:
    """Any accepted PCM (mono/stereo, int/float, 8..192 kHz) -> 16 kHz mono float32 [S]."""
    sample_rate = _check_rate(sample_rate)
    mono = to_mono_float(pcm, name=name)
    if sample_rate != TARGET_RATE:
        log.info("resampling %s from %d Hz to %d Hz", name, sample_rate, TARGET_RATE)
        mono = resample(mono, sample_rate, TARGET_RATE)
    return mono


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file -> (pcm [S] or [S, C] float32, sample_rate).

    Uses soundfile when installed (any subtype, float WAV), else the stdlib ``wave`` module
    (PCM 16/32-bit). Errors name the file and what was expected.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist")
    try:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
        return data, int(rate)
    except ImportError:
        pass
    except RuntimeError as exc:  # soundfile.LibsndfileError derives from RuntimeError
        raise FormatError(f"{path} is not a readable audio file: {exc}") from exc
    try:
        with wave.open(str(path), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise FormatError(f"{path} is not a readable WAV file: {exc}") from exc
    dtype = {2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise FormatError(f"{path}: {8 * width}-bit WAV is not supported; expected 16 or 32-bit PCM")
    data = np.frombuffer(raw, dtype=dtype).reshape(-1, channels)
    return to_mono_float(data if channels > 1 else data[:, 0]), rate


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write mono float32 ``pcm`` [S] as 16-bit PCM WAV (stdlib only)."""
    # Same scale as the readers (1/32768), rounded, so a write/read round trip is exact to 1/2 LSB.
    scaled = np.round(np.asarray(pcm, dtype=np.float64) * 32768.0)
    ints = np.clip(scaled, -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(ints.tobytes())
