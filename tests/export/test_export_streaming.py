"""Streaming equals offline, end to end: StreamingFeatures + ONNX encoder (onnxruntime) in random
chunkings against torch ``encode_audio`` on the whole clip."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from huma_rt.export.models import AudioEncoder
from huma_rt.export.onnx_export import GraphSpec, export_onnx

from huma_rt.audio.features import StreamingFeatures
from huma_rt.model_config import EncoderConfig

ATOL = 1e-5  # the bound on |streamed code - whole-clip code|


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _encoder_session(encoder: AudioEncoder, tmp_path) -> ort.InferenceSession:
    cfg = encoder.cfg
    mel = np.zeros((1, cfg.receptive_mels, 80), np.float32)
    spec = GraphSpec("encoder", encoder, {"mel": mel}, ["code"], {"mel": {0: "B", 1: "T"}, "code": {0: "B", 1: "F"}})
    path = tmp_path / "encoder.fp32.onnx"
    export_onnx(spec, path)
    return _session(path)


def _chunks(rng, kind: str, total: int) -> list[int]:
    if kind == "one":
        return [1] * total
    if kind == "huge":
        return [total, 5]
    if kind == "uniform":
        return list(rng.integers(1, 4000, total // 1 + 2))
    return [int(x) for x in np.exp(rng.uniform(0, np.log(40000), total + 2))]  # log-uniform


def _stream_codes(sess, cfg, audio, sizes) -> np.ndarray:
    sf = StreamingFeatures(cfg, buffer_seconds=0.1)
    window = np.empty((1, *sf.window_shape), np.float32)
    codes, i = [], 0

    def drain():
        while sf.ready_frames():
            t = sf.next_window(window[0])
            assert t == len(codes)
            codes.append(sess.run(["code"], {"mel": window})[0][0, 0])

    for n in sizes:
        if i >= audio.shape[0]:
            break
        sf.push(audio[i : i + n])
        i += n
        drain()
    sf.finish()
    drain()
    return np.stack(codes)


@pytest.mark.parametrize(
    "seed,kind,past,look",
    [(0, "one", 8, 2), (1, "uniform", 8, 2), (2, "loguniform", 8, 2), (3, "huge", 8, 2),
     (4, "loguniform", 3, 0), (5, "uniform", 0, 3), (6, "one", 2, 1)],
)  # fmt: skip
def test_streamed_codes_equal_whole_clip(tmp_path, seed, kind, past, look):
    torch.manual_seed(seed)
    cfg = EncoderConfig(past_frames=past, lookahead_frames=look)
    encoder = AudioEncoder(cfg).eval()
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2000, 6000 if kind == "one" else 40000))
    envelope = np.repeat(rng.random(n // 400 + 1), 400)[:n]
    audio = (0.3 * envelope * rng.standard_normal(n)).astype(np.float32)
    with torch.no_grad():
        whole = encoder.encode_audio(torch.from_numpy(audio)[None])[0].numpy()
    streamed = _stream_codes(_encoder_session(encoder, tmp_path), cfg, audio, _chunks(rng, kind, n))
    assert streamed.shape == whole.shape == (-(-n // 640), 32)
    assert np.abs(whole).max() > 1e-2  # the codes carry signal, the comparison is not vacuous
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=ATOL)
