"""GPU session path (thin; skipped without CUDA): networks on the session's CuPy stream, deltas
and frames through pinned host memory, same clock and frames as the CPU path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from huma_rt.runtime import Avatar


@pytest.mark.gpu
def test_cuda_session_matches_cpu(bundle_dir, avatar):
    gpu = Avatar.load(bundle_dir, device="cuda", precision="fp32", renderer="auto")
    assert gpu.device == "cuda" and gpu.preload_report.device == "cuda"
    assert gpu._spare._renderer._stages.L.graph is not None  # the frame's CUDA graph, at preload
    s1, s2 = gpu.session(), gpu.session()
    for s in (s1, s2):  # each session's renderer launches on that session's stream
        assert s._renderer._stages.L.stream is s._stream
    assert s1._stream is not s2._stream
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 16000 + 123).astype(np.float32)
    g = [(f.index, f.rgb.copy()) for f in gpu.render(audio)]
    c = [(f.index, f.rgb.copy()) for f in avatar.render(audio)]
    assert len(g) == len(c) == math.ceil(audio.size / 16000 * 25)
    for (i, a), (j, b) in zip(g, c, strict=True):
        assert i == j
        assert np.abs(a.astype(int) - b).mean() < 1.0


@pytest.mark.gpu
def test_cuda_blink_matches_cpu(export_dir, tmp_path):
    """A blink on CUDA (the second deformer run and the mask on the session's stream, the
    blink mask measured at preload) draws what the CPU path draws."""
    from _runtime_avatar import small_source

    from huma_rt.bundle import pack
    from huma_rt.runtime.blink import BlinkSchedule

    code = np.random.default_rng(5).normal(0, 1.0, 8).astype(np.float32)
    path = pack(small_source(export_dir, blink_code=code), tmp_path / "b")
    gpu, cpu = Avatar.load(path, device="cuda", precision="fp32"), Avatar.load(path, device="cpu")
    np.testing.assert_allclose(gpu.blink_mask(), cpu.blink_mask(), atol=1e-3)
    audio = np.random.default_rng(1).uniform(-0.3, 0.3, 16000 * 6).astype(np.float32)
    sched = BlinkSchedule(25, seed=2)
    g = [f.rgb.copy() for f in gpu.render(audio, blinks=sched)]
    c = [f.rgb.copy() for f in cpu.render(audio, blinks=sched)]
    assert any(sched.weight(i) > 0 for i in range(len(c)))
    for a, b in zip(g, c, strict=True):
        assert np.abs(a.astype(int) - b).mean() < 1.0
