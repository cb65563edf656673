"""StreamingFeatures against the one-shot path and the timing contract (numpy only)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from huma_rt.audio.features import StreamingFeatures, num_video_frames, offline_windows
from huma_rt.audio.mel import MelBlock, log_mel
from huma_rt.errors import InputError
from huma_rt.model_config import EncoderConfig, MelConfig


def _speechlike(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a slow random envelope and silent gaps: exercises loud and near-floor bins."""
    env = np.repeat(rng.random(n // 800 + 1), 800)[:n] * (rng.random(n // 1600 + 1).repeat(1600)[:n] > 0.2)
    return (0.3 * env * rng.standard_normal(n)).astype(np.float32)


def _stream(sf: StreamingFeatures, audio: np.ndarray, sizes) -> np.ndarray:
    out = np.empty(sf.window_shape, np.float32)
    got, i, expect_t = [], 0, 0
    for n in sizes:
        if i >= audio.shape[0]:
            break
        sf.push(audio[i : i + n])
        i += n
        while sf.ready_frames():
            assert sf.next_window(out) == expect_t
            expect_t += 1
            got.append(out.copy())
    assert i >= audio.shape[0]
    sf.finish()
    while sf.ready_frames():
        assert sf.next_window(out) == expect_t
        expect_t += 1
        got.append(out.copy())
    return np.stack(got) if got else np.zeros((0, *sf.window_shape), np.float32)


def _chunk_sizes(kind: str, rng: np.random.Generator, total: int):
    if kind == "one":
        return [1] * total
    if kind == "huge":
        return [total + 12345]
    if kind == "frame":
        return [640] * (total // 640 + 1)
    if kind == "mixed":  # 1 sample .. 1 s, log-uniform
        return [int(x) for x in np.exp(rng.uniform(0, np.log(16000), total))]
    raise AssertionError(kind)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["one", "frame", "mixed", "huge"])
def test_streaming_equals_offline(seed, kind):
    rng = np.random.default_rng(seed)
    cfg = EncoderConfig()
    audio = _speechlike(rng, int(rng.integers(1, 3 * 16000 // (4 if kind == "one" else 1))))
    # a small ring forces growth when a huge chunk arrives before any frame is read
    sf = StreamingFeatures(cfg, buffer_seconds=0.05)
    got = _stream(sf, audio, _chunk_sizes(kind, rng, audio.shape[0]))
    want = offline_windows(audio, cfg)
    assert got.shape == want.shape == (num_video_frames(audio.shape[0], cfg), cfg.receptive_mels, 80)
    # bit for bit: both multiply blocks of mels_per_frame rows aligned to mel frame 0
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("past,look", [(8, 2), (3, 0), (0, 1)])
def test_window_follows_timing_contract(past, look):
    """An impulse at sample s lights exactly the mel rows whose window [160m-120, 160m+280) holds s."""
    cfg = EncoderConfig(past_frames=past, lookahead_frames=look)
    s = 5 * 640 + 333
    audio = np.zeros(12 * 640, np.float32)
    audio[s] = 1.0
    windows = offline_windows(audio, cfg)
    silent = np.float32(np.log(cfg.mel.log_floor))
    for t in range(windows.shape[0]):
        for j in range(cfg.receptive_mels):
            m = 4 * (t - past) + j
            covers = 160 * m - 120 <= s < 160 * m + 280
            lit = bool(np.any(windows[t, j] > silent + 1.0))
            # the periodic Hann window is exactly 0 at its first sample
            assert lit == (covers and s != 160 * m - 120), (t, j, m)


@pytest.mark.parametrize("n", [0, 1, 639, 640, 641, 1280, 16000, 16001])
def test_frame_count_is_ceil(n):
    cfg = EncoderConfig()
    sf = StreamingFeatures(cfg)
    audio = np.full(n, 0.01, np.float32)
    got = _stream(sf, audio, [max(n, 1)])
    assert got.shape[0] == -(-n // 640) == sf.total_frames
    assert sf.pushed_samples == n


def test_ready_frames_needs_lookahead_audio():
    cfg = EncoderConfig()
    sf = StreamingFeatures(cfg)
    sf.push(np.zeros(640 + cfg.lookahead_samples - 1, np.float32))
    assert sf.ready_frames() == 0
    sf.push(np.zeros(1, np.float32))
    assert sf.ready_frames() == 1


def test_reset_and_push_after_finish():
    cfg = EncoderConfig()
    rng = np.random.default_rng(5)
    audio = _speechlike(rng, 5000)
    sf = StreamingFeatures(cfg)
    first = _stream(sf, audio, [777] * 10)
    with pytest.raises(InputError, match="after finish"):
        sf.push(audio)
    sf.reset()
    second = _stream(sf, audio, [5000])
    np.testing.assert_array_equal(first, second)


def test_steady_state_allocates_nothing():
    cfg = EncoderConfig()
    audio = _speechlike(np.random.default_rng(3), 16000 * 6)
    sf = StreamingFeatures(cfg)
    out = np.empty(sf.window_shape, np.float32)

    def run(lo, hi, n):
        for i in range(lo, hi, n):
            sf.push(audio[i : i + n])
            while sf.ready_frames():
                sf.next_window(out)

    run(0, 16000, 640)  # warm-up: first calls create numpy's cached objects
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        run(16000, 16000 * 4, 640)  # 75 frames
        run(16000 * 4, 16000 * 6, 37)  # odd chunks straddling windows
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # one mel block of temporaries would be 4 x 201 x 4 B = 3216 B; a window copy 14 kB
    assert peak - base < 3000, f"peak {peak - base} B above baseline"
    assert cur - base < 1024, f"{cur - base} B retained"


def test_bad_inputs_raise_input_error():
    sf = StreamingFeatures(EncoderConfig())
    with pytest.raises(InputError, match="1-D float32"):
        sf.push(np.zeros(10, np.int16))
    with pytest.raises(InputError, match="1-D float32"):
        sf.push(np.zeros((10, 2), np.float32))
    with pytest.raises(InputError, match="1-D float32"):
        sf.push([0.0, 1.0])
    with pytest.raises(InputError, match="finite"):
        sf.push(np.array([0.0, np.nan], np.float32))
    with pytest.raises(InputError, match="no frame ready"):
        sf.next_window(np.empty(sf.window_shape, np.float32))
    sf.push(np.zeros(5000, np.float32))
    with pytest.raises(InputError, match=r"shape \(44, 80\)"):
        sf.next_window(np.empty((40, 80), np.float32))
    with pytest.raises(InputError, match="float32"):
        sf.next_window(np.empty(sf.window_shape, np.float64))
    with pytest.raises(InputError, match="rows must be a positive integer"):
        MelBlock(MelConfig(), 0)


def test_log_mel_rows_do_not_depend_on_the_clip_length():
    """Issue 16's root cause: a product's row count followed the input (the chunking), and BLAS
    rounds a row differently for different row counts. Fixed blocks make every prefix exact."""
    cfg = MelConfig()
    audio = _speechlike(np.random.default_rng(11), 400 + 160 * 40)
    whole = log_mel(audio, cfg)
    for k in range(1, whole.shape[0] + 1):
        np.testing.assert_array_equal(log_mel(audio[: 400 + 160 * (k - 1)], cfg), whole[:k], err_msg=f"{k} rows")


@pytest.mark.parametrize("fps", [20, 50])
def test_streaming_is_bit_exact_at_other_frame_rates(fps):
    """Blocks are mels_per_frame rows (5 at 20 fps, 2 at 50 fps): still exact, still on time."""
    cfg = EncoderConfig(fps=fps)
    rng = np.random.default_rng(fps)
    audio = _speechlike(rng, 16000 + 77)
    got = _stream(StreamingFeatures(cfg), audio, [int(x) for x in rng.integers(1, 2000, 400)])
    np.testing.assert_array_equal(got, offline_windows(audio, cfg))
    sf = StreamingFeatures(cfg)
    sf.push(np.zeros(cfg.samples_per_frame + cfg.lookahead_samples - 1, np.float32))
    assert sf.ready_frames() == 0
    sf.push(np.zeros(1, np.float32))
    assert sf.ready_frames() == 1
