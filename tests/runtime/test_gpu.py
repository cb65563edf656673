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
