"""Caller audio -> 16 kHz mono float32: checks, stereo downmix and a streaming resampler.

Accepted input: a float numpy array (float32 preferred; float64/float16 are converted), 1-D
mono [S], or stereo/multichannel as [S, C] (the soundfile / WAV layout) or [C, S] with C <= 2
and S > C. Integer PCM is refused (scale it to [-1, 1] first), as are NaN/Inf and samples beyond
``MAX_AMPLITUDE`` (huma_rt.audio.features).

``StreamResampler`` is a windowed-sinc polyphase FIR (Kaiser window) whose output depends only
on the input samples, never on how they were split into chunks: sample j of the output is
sum_k x[n_j + k] h_{phase_j}[k] with n_j = floor(j M / L), evaluated in float64 row by row.
"""

from __future__ import annotations

import math

import numpy as np

from huma_rt.audio.features import check_amplitude
from huma_rt.errors import InputError

MIN_RATE, MAX_RATE = 4000, 384000
# Filter phases kept at most. A ratio up/down in lowest terms needs ``up`` phases (160 for
# 44.1 kHz, 640 for 11.025 kHz); a rate coprime with 16000 needs 16000, and at 383999 Hz that
# bank was 98 MB and took 12 s to build. Beyond the cap an output uses the phase below its own,
# off by < 1/MAX_PHASES of an input sample (timing and sample counts stay exact).
MAX_PHASES = 1024
_BLOCK_TAPS = 1 << 20  # output rows x taps per evaluation block: bounds its temporaries (~8 MB each)


def check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or not MIN_RATE <= sample_rate <= MAX_RATE:
        raise InputError(f"sample_rate must be an integer number of Hz in {MIN_RATE}..{MAX_RATE}; got {sample_rate!r}")
    return int(sample_rate)


def to_mono(pcm: np.ndarray) -> np.ndarray:
    """pcm [S] / [S, C] / [C, S] float -> [S] float32 (no copy for contiguous float32 mono)."""
    if not isinstance(pcm, np.ndarray):
        raise InputError(f"audio must be a numpy float32 array; got {type(pcm).__name__}")
    if type(pcm) is not np.ndarray:  # subclasses: np.matrix indexes as 2-D, masked arrays hide data
        if isinstance(pcm, np.ma.MaskedArray):
            raise InputError("audio must be a plain numpy array; got a masked array (use pcm.filled(0.0))")
        pcm = np.asarray(pcm)
    if pcm.dtype.kind != "f":
        raise InputError(
            f"audio must be float32 samples in [-1, 1]; got dtype {pcm.dtype} (for int16 PCM use pcm.astype(np.float32) / 32768)"
        )
    if pcm.ndim in (1, 2):
        # before any conversion: float64 beyond float32's range would overflow with a warning
        check_amplitude(pcm)
    if pcm.ndim == 2:
        s, c = pcm.shape
        if c in (1, 2):
            pcm = pcm.mean(axis=1, dtype=np.float32) if c == 2 else pcm[:, 0]
        elif s in (1, 2) and c > s:
            pcm = pcm.mean(axis=0, dtype=np.float32) if s == 2 else pcm[0]
        else:
            raise InputError(f"audio must be mono [S] or stereo [S, 2] / [2, S]; got shape {pcm.shape}")
    elif pcm.ndim != 1:
        raise InputError(f"audio must be mono [S] or stereo [S, 2] / [2, S]; got shape {pcm.shape}")
    if pcm.dtype != np.float32 or not pcm.flags.c_contiguous:
        pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    return pcm


def _kaiser_sinc_bank(up: int, down: int, half_width: int, beta: float = 8.0) -> tuple[np.ndarray, int]:
    """Polyphase bank [P, 2 K] float64 (P = min(up, MAX_PHASES) phases, K taps each side) and K,
    for rate ratio up/down; row p is the filter for fractional position p / P."""
    cutoff = min(1.0, up / down) * 0.95  # a little below Nyquist of the slower rate
    k = int(math.ceil(half_width / min(1.0, up / down)))
    offsets = np.arange(-k + 1, k + 1, dtype=np.float64)  # input sample offsets from n_j
    p = min(up, MAX_PHASES)
    phases = np.arange(p, dtype=np.float64)[:, None] / p  # fractional position of output
    t = offsets[None, :] - phases  # input time minus output time, in input samples
    r = np.clip(t / k, -1.0, 1.0)
    h = cutoff * np.sinc(cutoff * t) * np.i0(beta * np.sqrt(1.0 - r * r)) / np.i0(beta)
    h *= np.abs(t) < k
    h /= h.sum(axis=1, keepdims=True)  # unit DC gain for every phase
    return h, k


class StreamResampler:
    """src_rate -> dst_rate, chunk by chunk; chunked output == whole-signal output, bit for bit."""

    def __init__(self, src_rate: int, dst_rate: int, *, half_width: int = 16, block: int = 8192) -> None:
        g = math.gcd(check_rate(src_rate), check_rate(dst_rate))
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self.up, self.down = dst_rate // g, src_rate // g
        self._bank, self._k = _kaiser_sinc_bank(self.up, self.down, half_width)
        self._phases = self._bank.shape[0]
        self._offs = np.arange(-self._k + 1, self._k + 1)
        self._block = max(1, min(block, _BLOCK_TAPS // (2 * self._k)))
        # input kept from sample index _start on; samples before 0 are silence
        self._buf = np.zeros(self._k, np.float32)
        self._start = -self._k
        self._seen = 0
        self._next = 0  # next output index
        self._done = False

    def output_length(self, n_in: int) -> int:
        """Output samples for ``n_in`` input samples: ceil(n_in * dst / src)."""
        return -(-n_in * self.up // self.down)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Input [S] float32 -> the output samples that became computable (float32)."""
        if self._done:
            raise InputError("resampler already flushed")
        self._buf = np.concatenate([self._buf, x])
        self._seen += x.size
        # output j needs input up to n_j + K: n_j + K <= seen - 1
        last = ((self._seen - self._k) * self.up - 1) // self.down
        return self._emit(last + 1)

    def flush(self) -> np.ndarray:
        """End of input: the remaining outputs, computed with silence after the last sample."""
        if self._done:
            return np.zeros(0, np.float32)
        self._done = True
        self._buf = np.concatenate([self._buf, np.zeros(self._k + 1, np.float32)])
        return self._emit(self.output_length(self._seen))

    def _emit(self, stop: int) -> np.ndarray:
        if stop <= self._next:
            return np.zeros(0, np.float32)
        out = np.empty(stop - self._next, np.float32)
        for b in range(self._next, stop, self._block):
            j = np.arange(b, min(b + self._block, stop), dtype=np.int64)
            n = j * self.down // self.up
            phase = (j * self.down - n * self.up) * self._phases // self.up  # bank row, floor
            x = self._buf[(n - self._start)[:, None] + self._offs[None, :]].astype(np.float64)
            out[b - self._next : b - self._next + j.size] = (x * self._bank[phase]).sum(axis=1)
        self._next = stop
        keep_from = self._next * self.down // self.up - self._k + 1  # first input the next output needs
        drop = keep_from - self._start
        if drop > 0:
            self._buf = self._buf[drop:].copy()
            self._start = keep_from
        return out
