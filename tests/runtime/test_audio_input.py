"""Caller audio -> 16 kHz mono: the amplitude check and the streaming resampler's bounds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from huma_rt.audio.features import MAX_AMPLITUDE
from huma_rt.errors import InputError
from huma_rt.runtime.audio_input import MAX_PHASES, StreamResampler, to_mono


def _resample(sr: int, x: np.ndarray, chunks=None) -> np.ndarray:
    r = StreamResampler(sr, 16000)
    if chunks is None:
        return np.concatenate([r.push(x), r.flush()])
    out, i = [], 0
    for k in chunks:
        out.append(r.push(x[i : i + k]))
        i += k
    return np.concatenate([*out, r.flush()])


@pytest.mark.parametrize("sr", [44100, 11025, 24001, 383999])
def test_resampler_any_rate_is_exact_in_time_and_chunking(sr):
    """Rates coprime with 16000 once built a 16000-phase bank (98 MB and 12 s at 383999 Hz);
    beyond MAX_PHASES the phase is rounded down, which a 440 Hz tone does not notice."""
    n = sr // 4
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
    t0 = time.perf_counter()
    r = StreamResampler(sr, 16000)
    assert r._bank.shape[0] == min(r.up, MAX_PHASES)
    assert r._bank.nbytes < 8e6 and time.perf_counter() - t0 < 5.0
    whole = _resample(sr, x)
    assert whole.size == -(-n * 16000 // sr)
    chunked = _resample(sr, x, np.random.default_rng(sr).integers(1, 3000, n).tolist())
    np.testing.assert_array_equal(chunked, whole)
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(whole.size) / 16000)
    assert np.abs(whole - tone)[100:-100].max() < 2e-4


def test_amplitude_bound_and_messages():
    assert to_mono(np.full(8, MAX_AMPLITUDE, np.float32)).dtype == np.float32
    with pytest.raises(InputError, match=r"sample 3 is 30000.0 .*divide int16"):
        to_mono(np.array([0, 0, 0, 3e4], np.float32))
    with pytest.raises(InputError, match=r"finite; element \(1, 0\) is nan"):
        to_mono(np.array([[0.0, 0.0], [np.nan, 0.0]]))
    with pytest.raises(InputError, match="sample 0 is 1e"):
        to_mono(np.array([1e300, 0.0]))  # float64 beyond float32: refused before any cast


def test_array_subclasses():
    """np.matrix indexes as 2-D (its row 0 is still [1, S]): it is read as a plain array; a
    masked array is refused rather than its hidden samples played."""
    with pytest.warns(PendingDeprecationWarning):
        rows, cols = np.asmatrix(np.zeros((1, 50), np.float32)), np.asmatrix(np.zeros((50, 2)))
    for m in (rows, cols):
        got = to_mono(m)
        assert type(got) is np.ndarray and got.shape == (50,) and got.dtype == np.float32
    with pytest.raises(InputError, match="masked array"):
        to_mono(np.ma.masked_array(np.zeros(50, np.float32), mask=True))
