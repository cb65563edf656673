"""End to end: Avatar.load(bundle, backend="triton", url=...) renders the frames the local
backend renders (encoder, spatial and deformer on the real server; rendering local)."""

from __future__ import annotations

import numpy as np
import pytest

from huma_rt.bundle import AvatarSource, pack
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.runtime import Avatar


def _gaussians(n: int = 600, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return Gaussians(
        means=(0.5 * d).astype(np.float32), log_scales=np.full((n, 3), np.log(0.04), np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32), opacity_logits=rng.normal(1.0, 0.5, n).astype(np.float32),
        sh=rng.uniform(-0.5, 0.5, (n, 1, 3)).astype(np.float32),
        region=((d[:, 2] < -0.5) & (d[:, 1] > 0.0)).astype(np.uint8),  # the "mouth": dynamic rows
    )  # fmt: skip


@pytest.fixture(scope="module")
def bundle(export_dir, tmp_path_factory):
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 2.0
    cam = Camera(width=48, height=40, fx=50.0, fy=50.0, cx=24.0, cy=20.0, world_to_camera=w2c)
    src = AvatarSource(gaussians=_gaussians(), camera=cam, background=(0.1, 0.2, 0.3), export_dir=export_dir, name="triton-e2e")
    return pack(src, tmp_path_factory.mktemp("bundle") / "avatar")


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
