"""Session guarantees: frame count, streaming == one-shot, no drift, idle frames, input checks,
no allocation on the hot path. Uses the small avatar of conftest.py (real networks, real renderer)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from huma_rt.errors import DeviceError, InputError
from huma_rt.runtime import Avatar, Frame


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))  # syllable-rate envelope: codes change over time
    return (env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=t.size))).astype(np.float32)


def collect(frames) -> list[tuple[Frame, np.ndarray]]:
    return [(f, f.rgb.copy()) for f in frames]


def stream(avatar: Avatar, audio: np.ndarray, chunks, sr: int = 16000, **kw):
    s = avatar.session(**kw)
    out, i = [], 0
    for k in chunks:
        s.push_audio(audio[i : i + k], sr)
        out += collect(s.frames())
        i += k
        if i >= audio.shape[0]:
            break
    s.finish()
    out += collect(s.frames())
    s.close()
    return out


@pytest.mark.parametrize("samples", [0, 1, 639, 640, 641, 16000, 16001, 23456])
def test_frame_count_is_ceil_duration_times_fps(avatar, samples):
    audio = speech_like(samples / 16000)[:samples]
    frames = collect(avatar.render(audio))
    assert len(frames) == math.ceil(samples / 16000 * avatar.fps)
    for i, (f, _) in enumerate(frames):
        assert (f.index, f.sample_start, f.sample_end) == (i, 640 * i, 640 * (i + 1))
        assert f.pts == i / avatar.fps
        assert f.rgb.shape == (avatar.size[1], avatar.size[0], 3) and f.rgb.dtype == np.uint8
        assert not f.rgb.flags.writeable


def test_streaming_random_chunks_equals_one_shot(avatar):
    audio = speech_like(2.3, seed=1)
    whole = collect(avatar.render(audio))
    assert len({rgb.tobytes() for _, rgb in whole}) > len(whole) // 2, "frames should depend on the audio"
    rng = np.random.default_rng(7)
    for trial in range(3):
        chunks = rng.integers(1, 3000, size=audio.size).tolist() if trial else [1] * 50 + [37] * 5000
        got = stream(avatar, audio, chunks)
        assert [f.index for f, _ in got] == [f.index for f, _ in whole]
        for (_, a), (_, b) in zip(got, whole, strict=True):
            np.testing.assert_array_equal(a, b)


def test_frames_wait_for_lookahead(avatar):
    s = avatar.session()
    s.push_audio(np.zeros(640 + avatar.lookahead_samples - 1, np.float32))
    assert list(s.frames()) == []
    s.push_audio(np.zeros(1, np.float32))
    assert [f.index for f in s.frames()] == [0]
    s.close()


def test_two_sessions_share_the_avatar_and_interleave(avatar):
    a, b = speech_like(1.0, seed=2), speech_like(1.0, seed=3)
    ref_a, ref_b = collect(avatar.render(a)), collect(avatar.render(b))
    s1, s2 = avatar.session(), avatar.session()
    got1, got2 = [], []
    for i in range(0, a.size, 800):
        s1.push_audio(a[i : i + 800])
        got1 += collect(s1.frames())
        s2.push_audio(b[i : i + 800])
        got2 += collect(s2.frames())
    for s, got in ((s1, got1), (s2, got2)):
        s.finish()
        got += collect(s.frames())
    for got, ref in ((got1, ref_a), (got2, ref_b)):
        assert len(got) == len(ref)
        for (_, x), (_, y) in zip(got, ref, strict=True):
            np.testing.assert_array_equal(x, y)


def test_dry_run_clock_matches_the_real_session(avatar):
    """The dry-run clock releases the same frames at the same pushes as the full session."""
    audio = speech_like(3.0, seed=11)
    rng = np.random.default_rng(12)
    chunks = rng.integers(1, 2500, 200).tolist()
    real, dry = avatar.session(), avatar.session(dry_run=True)
    i = 0
    for k in chunks:
        for s in (real, dry):
            s.push_audio(audio[i : i + k])
        assert [f.index for f in real.frames()] == [f.index for f in dry.frames()]
        i += k
        if i >= audio.size:
            break
    for s in (real, dry):
        s.finish()
    assert [f.index for f in real.frames()] == [f.index for f in dry.frames()]
    real.close()


def test_no_drift_over_ten_minutes(avatar):
    """10 min of audio in random chunks through the session clock (dry_run: no rendering)."""
    rng = np.random.default_rng(3)
    total = 10 * 60 * 16000 + 123
    block = rng.uniform(-0.1, 0.1, 48000).astype(np.float32)
    s = avatar.session(dry_run=True)
    pushed, n = 0, 0
    while pushed < total:
        k = min(int(rng.integers(100, 48000)), total - pushed)
        s.push_audio(block[:k])
        pushed += k
        for f in s.frames():
            assert f.index == n and f.sample_start == 640 * n and f.pts == n / 25
            n += 1
        assert 640 * n + 640 + avatar.lookahead_samples > pushed  # no frame held back
    s.finish()
    for f in s.frames():
        assert f.index == n
        n += 1
    assert n == math.ceil(total / 16000 * 25) == 15001
    assert f.sample_end == 640 * 15001 and f.pts == 600.0


def test_resampled_input_counts_and_matches_16k(avatar):
    sr = 44100
    t = np.arange(int(1.5 * sr)) / sr
    audio44 = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32)
    one = collect(avatar.render(audio44, sample_rate=sr))
    assert len(one) == math.ceil(audio44.size / sr * 25)
    rng = np.random.default_rng(5)
    chunked = stream(avatar, audio44, rng.integers(1, 5000, 1000).tolist(), sr=sr)
    for (_, a), (_, b) in zip(one, chunked, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="strict"):
        avatar.render(audio44, sample_rate=sr, strict=True)


def test_stereo_is_downmixed_both_layouts(avatar):
    mono = speech_like(0.5, seed=4)
    ref = collect(avatar.render(mono))
    st = np.stack([mono * 0.5, mono * 1.5], axis=1)  # mean == mono
    for x in (st, st.T.copy()):
        got = collect(avatar.render(x))
        for (_, a), (_, b) in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("pcm", "rate", "match"),
    [
        (np.zeros(100, np.int16), 16000, "int16"),
        (np.array([0.0, np.nan], np.float32), 16000, "finite"),
        (np.array([0.0, np.inf], np.float32), 16000, "finite"),
        (np.zeros((3, 100), np.float32), 16000, r"\(3, 100\)"),
        (np.zeros((2, 2, 2), np.float32), 16000, "mono"),
        ([0.0, 0.1], 16000, "list"),
        (np.zeros(100, np.float32), 0, "sample_rate"),
        (np.zeros(100, np.float32), 16000.0, "sample_rate"),
        (np.full(100, 3e4, np.float32), 16000, "divide int16"),
        (np.array([[0.0, 1e300]]), 16000, r"element \(0, 1\)"),
        (np.full(100, 2e17, np.float32), 44100, r"\[-1, 1\]"),
    ],
)
def test_bad_input_is_an_input_error(avatar, pcm, rate, match):
    s = avatar.session()
    with pytest.raises(InputError, match=match):
        s.push_audio(pcm, rate)
    with pytest.raises(InputError, match=match):
        avatar.render(pcm, rate)
    s.close()


def test_loud_audio_accepted_once_is_never_refused_later(avatar):
    """Resampling overshoots the input's peak (Gibbs ringing): a square wave at the amplitude
    bound comes out above it, and the session must still take it, at push and at finish."""
    from huma_rt.audio.features import MAX_AMPLITUDE

    square = np.where(np.arange(4410) % 40 < 20, MAX_AMPLITUDE, -MAX_AMPLITUDE).astype(np.float32)
    s = avatar.session()
    for i in range(0, square.size, 1000):
        s.push_audio(square[i : i + 1000], 44100)
    s.finish()
    assert len(collect(s.frames())) == math.ceil(square.size / 44100 * 25)
    s.close()
    with pytest.raises(InputError, match="divide int16"):
        avatar.render(square * 1.01, 44100)


def test_protocol_errors(avatar):
    s = avatar.session()
    s.push_audio(np.zeros(10, np.float32), 22050)
    with pytest.raises(InputError, match="stay 22050"):
        s.push_audio(np.zeros(10, np.float32), 16000)
    s.finish()
    with pytest.raises(InputError, match="after finish"):
        s.push_audio(np.zeros(10, np.float32))
    with pytest.raises(InputError, match="live"):
        list(s.idle_frames(1))
    s.reset()
    s.push_audio(np.zeros(10, np.float32))  # a new stream after reset
    s.close()


def test_idle_frames_live(avatar):
    s = avatar.session(live=True)
    idle = collect(s.idle_frames(5))
    assert [f.index for f, _ in idle] == [0, 1, 2, 3, 4]
    assert s.pushed_samples == s.silence_samples >= 5 * 640
    # silence frames == what the model renders for silence: the rest pose, all alike
    ref = collect(avatar.render(np.zeros(640 * 12, np.float32)))
    for (_, a), (_, b) in zip(idle, ref[:5], strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(np.array_equal(idle[0][1], rgb) for _, rgb in idle)
    # speech after idle continues the same clock: its first sample is at pushed_samples
    start = s.pushed_samples
    s.push_audio(speech_like(0.4))
    s.finish()
    rest = collect(s.frames())
    assert [f.index for f, _ in rest] == list(range(5, math.ceil((start + 6400) / 640)))
    s.close()
    with pytest.raises(InputError, match="non-negative"):
        list(avatar.session(live=True).idle_frames(-1))


def test_device_cuda_without_gpu_is_a_device_error(bundle_dir):
    from huma_rt._optional import has_cuda

    if has_cuda():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="CUDA"):
        Avatar.load(bundle_dir, device="cuda")


def test_preload_report(avatar):
    r = avatar.preload_report
    assert list(r.phases) == ["manifest", "map", "networks", "spatial", "renderer", "session", "warmup"]
    assert all(v >= 0 for v in r.phases.values()) and r.total_s > 0
    assert r.device == "cpu" and r.precision == "fp32" and r.dynamic > 0
    assert "onnxruntime" in r.backends["encoder"]
    assert set(r.to_dict()["phases_ms"]) == set(r.phases)


def test_no_allocation_on_the_hot_path(avatar):
    """1000 frames after warm-up: no net tracemalloc growth, and no numpy buffer allocated."""
    s = avatar.session()
    chunk = speech_like(0.04 * 50, seed=9)  # 50 frames of audio, reused
    spf = 640

    def run(frames: int) -> int:
        n = 0
        while n < frames:
            for i in range(0, chunk.size, spf):
                s.push_audio(chunk[i : i + spf])
                for _ in s.frames():
                    n += 1
        return n

    run(60)  # warm-up
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        tracemalloc.reset_peak()
        cur0, _ = tracemalloc.get_traced_memory()
        assert run(1000) >= 1000
        cur1, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    domain = np.lib.tracemalloc_domain
    grown = [st for st in after.compare_to(before, "lineno") if st.size_diff > 0]
    assert cur1 - cur0 < 8 * 1024, f"net growth {cur1 - cur0} B: {grown[:5]}"
    # numpy data buffers are traced in their own domain: none may appear during the run
    flt = [tracemalloc.DomainFilter(True, domain)]
    new_np = after.filter_traces(flt).compare_to(before.filter_traces(flt), "lineno")
    assert not [st for st in new_np if st.count_diff > 0], new_np[:5]
    frame_bytes = avatar.size[0] * avatar.size[1] * 3
    assert peak - cur0 < frame_bytes, f"transient peak {peak - cur0} B >= one frame ({frame_bytes} B)"
    s.close()


def test_whole_frame_adapter_matches_the_frame_renderer(avatar, bundle_dir):
    """The fallback adapter (full re-render per frame) gives the FrameRenderer's frames."""
    from functools import partial

    from huma_rt.runtime.whole_frame import WholeFrameRenderer

    assert "FrameRenderer" in avatar.preload_report.renderer
    whole = Avatar.load(bundle_dir, device="cpu", renderer=partial(WholeFrameRenderer, threads=1), threads=1)
    audio = speech_like(0.6, seed=5)
    for (fa, a), (fb, b) in zip(collect(avatar.render(audio)), collect(whole.render(audio)), strict=True):
        assert fa.index == fb.index
        assert np.abs(a.astype(int) - b).max() <= 1


def test_frame_budget_applies_to_remote_runners_only(avatar):
    s = avatar.session(frame_budget_s=0.5)  # local onnxruntime runners take no frame deadline
    assert s.frame_budget_s is None
    for bad in (0, -1.0, float("nan"), "1", True, 1e9):
        with pytest.raises(InputError, match="frame_budget_s"):
            s.frame_budget_s = bad
    s.close()


def test_live_frames_not_drawn_leave_the_next_drawn_frame_unchanged(avatar):
    """A live caller behind its clock advances frames without drawing them; the frames it does
    draw are exactly those of a session that drew every frame."""
    speech = speech_like(1.2, seed=3)
    sessions = [avatar.session(live=True) for _ in range(2)]
    drawn: list[list[np.ndarray]] = [[], []]
    for i in range(0, speech.size, 640):
        for k, s in enumerate(sessions):
            s.push_audio(speech[i : i + 640])
            draw = k == 0 or (i // 640) % 3 == 2  # the second one skips two frames in three
            (frame,) = s.idle_frames(1, draw=draw)
            drawn[k].append(frame.rgb.copy() if draw else None)
    moved = 0
    for full, sparse in zip(drawn[0], drawn[1], strict=True):
        if sparse is not None:
            np.testing.assert_array_equal(sparse, full)
            moved += int(not np.array_equal(full, drawn[0][0]))
    assert moved >= 3, "the test must compare frames that differ from the rest pose"
    # a frame not drawn keeps the last picture and costs no network or render time
    s = sessions[0]
    s.push_audio(speech[:640])
    (frame,) = s.idle_frames(1, draw=False)
    np.testing.assert_array_equal(frame.rgb, drawn[0][-1])
    assert s.stage_times["encode"] == s.stage_times["render"] == 0.0
    for s in sessions:
        s.close()
