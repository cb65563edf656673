"""Pieces of the reference scenario that run fast here: clocks, audio, rows, PSNR."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.bench import reference

from huma_rt._optional import has_cuda
from huma_rt.errors import DeviceError


@pytest.mark.skipif(has_cuda(), reason="checks the refusal on a machine without a GPU")
def test_cuda_timing_refuses_host_clocks_without_a_gpu():
    with pytest.raises(DeviceError, match="refusing to report GPU numbers timed with host clocks"):
        reference.FrameClock("cuda")
    with pytest.raises(DeviceError, match="device must be 'cpu' or 'cuda'; got 'gpu'"):
        reference.FrameClock("gpu")


def test_cpu_clock_times_the_call():
    out, seconds = reference.FrameClock("cpu").time(lambda: sum(range(100_000)))
    assert out == sum(range(100_000)) and 0 < seconds < 10


def test_speech_audio_has_the_asked_length_and_sound():
    pcm, desc = reference.speech_audio(1.5)
    assert pcm.dtype == np.float32 and pcm.shape == (24_000,)
    assert np.sqrt(np.mean(pcm**2)) > 0.01 and np.abs(pcm).max() <= 1.0
    assert desc


def test_rows_and_ratios():
    row = reference._row("frame", [0.010, 0.012, 0.011], [0.100, 0.120, 0.110])
    assert row["huma_p50_ms"] == pytest.approx(11.0) and row["torch_p50_ms"] == pytest.approx(110.0)
    assert row["torch_over_huma"] == pytest.approx(10.0)
    assert "torch_over_huma" not in reference._row("encode", None, [0.1])


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert reference.psnr(a, b) == float("inf")
    b[0, 0, 0] = 255
    assert reference.psnr(a, b) == pytest.approx(10 * np.log10(48), abs=1e-9)
