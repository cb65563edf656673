"""End to end: Avatar.load(bundle, backend="triton", url=...) renders the frames the local
backend renders (encoder, spatial and deformer on the real server; rendering local)."""

from __future__ import annotations

import numpy as np
import pytest

from huma_rt.runtime import Avatar


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_frames_through_triton_equal_local_frames(server, bundle, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    t = np.arange(16000 // 2) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    local = Avatar.load(bundle, device="cpu", backend="onnxruntime", threads=1)
    remote = Avatar.load(bundle, device="cpu", backend="triton", url=url, protocol=protocol)
    assert all(v.startswith("triton") for v in remote.preload_report.backends.values()), remote.preload_report.backends
    want = [f.rgb.copy() for f in local.render(audio)]
    got = [f.rgb.copy() for f in remote.render(audio)]
    assert len(got) == len(want) == 13
    moving = sum(int(np.any(a != b)) for a, b in zip(want[:-1], want[1:], strict=True))
    assert moving > 0  # the audio moves the mouth: the comparison is not between static frames
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(a, b), f"frame {i}: {np.count_nonzero(a != b)} bytes differ"
