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


def _executions(server, model):
    import tritonclient.grpc as g

    c = g.InferenceServerClient(server.grpc_url)
    try:
        return int(c.get_inference_statistics(model, as_json=True)["model_stats"][0].get("inference_count", 0))
    finally:
        c.close()


def test_baked_features_frames_equal_local_and_skip_feat(server, bundle):
    t = np.arange(16000 // 2) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    local = Avatar.load(bundle, device="cpu", backend="onnxruntime", threads=1)
    before = (_executions(server, "avatar_deformer"), _executions(server, "deformer"))
    remote = Avatar.load(bundle, device="cpu", backend="triton", url=server.grpc_url, baked_features=True)
    got = [f.rgb.copy() for f in remote.render(audio)]
    after = (_executions(server, "avatar_deformer"), _executions(server, "deformer"))
    want = [f.rgb.copy() for f in local.render(audio)]
    assert after[0] - before[0] >= len(got) and after[1] == before[1]  # every frame went the baked way
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(a, b), f"frame {i}: {np.count_nonzero(a != b)} bytes differ"


def test_baked_features_refuse_another_avatars_feat(server, export_dir):
    from huma_rt.errors import InputError
    from huma_rt.model_config import DeformerConfig, EncoderConfig
    from huma_rt.triton.runner import TritonRunner

    hidden = DeformerConfig.load(export_dir / "deformer.json").hidden
    code_dim = EncoderConfig.load(export_dir / "encoder.json").code_dim
    with TritonRunner("deformer", url=server.grpc_url, baked_features=True) as r:
        assert r.served_model == "avatar_deformer"
        n = r._baked and int(r._baked["gaussians"])
        outs = {k: np.zeros((1, n, d), np.float32) for k, d in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
        with pytest.raises(InputError, match="differs from the features baked into avatar_deformer"):
            r.bind(inputs={"feat": np.ones((n, hidden), np.float32), "code": np.zeros((1, code_dim), np.float32)}, outputs=outs)
