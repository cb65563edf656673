"""Input audio handling: validation, downmix, resampling against scipy (reference twin)."""

from __future__ import annotations

import numpy as np
import pytest

from huma_rt.errors import FormatError, InputError
from huma_rt.speech.audio import prepare_input, read_wav, resample, to_mono_float, write_wav


def _tone(rate: int, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("src", [8000, 22050, 44100, 48000])
def test_resample_matches_analytic_sine(src):
    y = resample(_tone(src), src, 16000)
    assert y.dtype == np.float32 and y.size == -(-_tone(src).size * 16000 // src)
    ref = _tone(16000)[: y.size]
    # Interior only: both ends see the filter run into implicit zeros.
    inner = slice(400, y.size - 400)
    np.testing.assert_allclose(y[inner], ref[inner], atol=2e-3)


@pytest.mark.parametrize("src", [22050, 48000])
def test_resample_matches_scipy_resample_poly(src):
    signal = pytest.importorskip("scipy.signal")
    # Random tones well inside both filters' pass bands (< 6 kHz): their transition bands differ.
    rng = np.random.default_rng(0)
    t = np.arange(src // 2) / src
    x = sum(0.05 * np.sin(2 * np.pi * f * t + p) for f, p in zip(rng.uniform(50, 6000, 8), rng.uniform(0, 6, 8), strict=False))
    x = x.astype(np.float32)
    g = np.gcd(src, 16000)
    ref = signal.resample_poly(x.astype(np.float64), 16000 // g, src // g)
    y = resample(x, src, 16000)
    assert y.size == ref.size
    inner = slice(200, y.size - 200)  # edges: the two filters differ in length
    np.testing.assert_allclose(y[inner], ref[inner], atol=2e-3)


def test_stereo_int16_is_downmixed_and_scaled():
    left = (np.full(100, 16384)).astype(np.int16)
    right = np.zeros(100, np.int16)
    out = to_mono_float(np.stack([left, right], axis=1))
    assert out.shape == (100,) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.25)


def test_nan_is_a_clear_error():
    x = np.zeros(1000, np.float32)
    x[123] = np.nan
    with pytest.raises(InputError, match="NaN/Inf samples \\(first at sample 123\\)"):
        prepare_input(x, 16000)


@pytest.mark.parametrize("rate", [0, 4000, 1_000_000, 16000.5])
def test_bad_sample_rate(rate):
    with pytest.raises(InputError, match="sample_rate"):
        prepare_input(np.zeros(10, np.float32), rate)


def test_channels_first_is_refused():
    with pytest.raises(InputError, match="channels first"):
        to_mono_float(np.zeros((2, 16000), np.float32))


def test_wav_roundtrip_and_garbage(tmp_path):
    x = _tone(8000)
    write_wav(tmp_path / "a.wav", x, 8000)
    y, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000
    np.testing.assert_allclose(y, x, atol=0.5 / 32768 + 1e-9)
    (tmp_path / "junk.wav").write_bytes(b"\xff\xfe not a wav at all" * 10)
    with pytest.raises(FormatError, match="junk.wav"):
        read_wav(tmp_path / "junk.wav")
    with pytest.raises(FormatError, match="does not exist"):
        read_wav(tmp_path / "missing.wav")
