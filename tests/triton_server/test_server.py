"""Against a REAL tritonserver (bundled by nvidia-pytriton) on the --target cpu repository."""

from __future__ import annotations

import itertools
import json
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from huma_rt.backends import open_runner
from huma_rt.errors import BackendError, InputError
from huma_rt.model_config import EncoderConfig
from huma_rt.triton.runner import EncoderStream, TritonRunner

PROTOCOLS = {"grpc": grpcclient, "http": httpclient}


def _client(server, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    return PROTOCOLS[protocol].InferenceServerClient(url)


def _infer(server, protocol, model, feeds, outputs, **kw):
    mod = PROTOCOLS[protocol]
    inputs = []
    for name, arr in feeds.items():
        i = mod.InferInput(name, list(arr.shape), "FP32")
        i.set_data_from_numpy(arr)
        inputs.append(i)
    client = _client(server, protocol)
    try:
        result = client.infer(model, inputs, outputs=[mod.InferRequestedOutput(o) for o in outputs], **kw)
        return {o: result.as_numpy(o) for o in outputs}
    finally:
        client.close()


def _ort(export_dir, net, feeds):
    sess = ort.InferenceSession(str(export_dir / f"{net}.fp32.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds), strict=True))


@pytest.fixture(scope="module")
def enc(export_dir) -> EncoderConfig:
    return EncoderConfig.load(export_dir / "encoder.json")


@pytest.fixture(scope="module")
def hidden(export_dir) -> int:
    return json.loads((export_dir / "deformer.json").read_text())["hidden"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_metadata_matches_the_onnx_signatures(server, protocol):
    c = _client(server, protocol)
    try:
        assert c.is_server_ready()
        kw = {"as_json": True} if protocol == "grpc" else {}
        meta = c.get_model_metadata("deformer", **kw)
        assert [i["name"] for i in meta["inputs"]] == ["feat", "code"]
        assert [o["name"] for o in meta["outputs"]] == ["dmu", "dquat", "dscale"]
        assert [int(s) for s in meta["outputs"][1]["shape"]] == [-1, -1, 4]
        enc_meta = c.get_model_metadata("encoder", **kw)
        # batched model: the batch dim shows as -1 in front of the config dims
        assert [int(s) for s in enc_meta["inputs"][0]["shape"]] == [-1, -1, 80]
        assert enc_meta["inputs"][0]["datatype"] == "FP32"
    finally:
        c.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_outputs_equal_local_onnxruntime(server, export_dir, enc, hidden, protocol):
    rng = np.random.default_rng(11)
    mel = rng.standard_normal((2, enc.receptive_mels + 8, 80)).astype(np.float32)
    got = _infer(server, protocol, "encoder", {"mel": mel}, ["code"])
    want = _ort(export_dir, "encoder", {"mel": mel})
    assert got["code"].shape == want["code"].shape == (2, 3, enc.code_dim)
    assert np.abs(got["code"] - want["code"]).max() <= 1e-5

    means = rng.uniform(-1, 1, (257, 3)).astype(np.float32)
    got = _infer(server, protocol, "spatial", {"means": means}, ["feat"])
    want = _ort(export_dir, "spatial", {"means": means})
    assert np.abs(got["feat"] - want["feat"]).max() <= 1e-5

    feeds = {"feat": want["feat"], "code": rng.standard_normal((3, enc.code_dim)).astype(np.float32)}
    got = _infer(server, protocol, "deformer", feeds, ["dmu", "dquat", "dscale"])
    want = _ort(export_dir, "deformer", feeds)
    for k in ("dmu", "dquat", "dscale"):
        assert got[k].shape == want[k].shape
        assert np.abs(got[k] - want[k]).max() <= 1e-5, k
        assert np.abs(want[k]).max() > 0  # a real signal, not all zeros (the numpy 2 stub trap)


def test_ensemble_chains_encoder_and_deformer(server, export_dir, enc, hidden):
    rng = np.random.default_rng(5)
    mel = rng.standard_normal((1, enc.receptive_mels, 80)).astype(np.float32)
    feat = rng.standard_normal((100, hidden)).astype(np.float32)
    got = _infer(server, "grpc", "avatar_frame", {"mel": mel, "feat": feat}, ["dmu", "dquat", "dscale"])
    code = _ort(export_dir, "encoder", {"mel": mel})["code"]
    want = _ort(export_dir, "deformer", {"feat": feat, "code": code[:, 0]})
    for k in want:
        assert got[k].shape == want[k].shape == (1, 100, got[k].shape[2])
        assert np.abs(got[k] - want[k]).max() <= 1e-5


def _offline_codes(export_dir, rows):
    return _ort(export_dir, "encoder", {"mel": rows[None]})["code"][0]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequence_keeps_context_and_isolates_sessions(server, export_dir, enc, protocol):
    rng = np.random.default_rng(7)
    r, k = enc.receptive_mels, enc.mels_per_frame
    a = rng.standard_normal((r + 6 * k, 80)).astype(np.float32)
    b = rng.standard_normal((r + 6 * k, 80)).astype(np.float32)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    sa = EncoderStream(url, protocol=protocol)
    sb = EncoderStream(url, protocol=protocol)
    try:
        assert sa.sequence_id != sb.sequence_id
        # interleave the two sessions, with different chunkings (empty, 1 frame, several frames)
        chunks_a = [(0, r - k), (r - k, r), (r, r + k), (r + k, r + k), (r + k, r + 3 * k), (r + 3 * k, r + 6 * k)]
        chunks_b = [(0, r), (r, r + 4 * k), (r + 4 * k, r + 5 * k), (r + 5 * k, r + 6 * k)]
        got_a, got_b = [], []
        for ca, cb in itertools.zip_longest(chunks_a, chunks_b):
            if ca:
                got_a.append(sa.push(a[ca[0] : ca[1]]))
            if cb:
                got_b.append(sb.push(b[cb[0] : cb[1]]))
        assert got_a[0].shape == (0, enc.code_dim)  # not yet a full window: no code
        assert got_b[0].shape == (1, enc.code_dim) and got_b[1].shape == (4, enc.code_dim)
        code_a, code_b = np.concatenate(got_a), np.concatenate(got_b)
    finally:
        sa.close()
        sb.close()
    want_a, want_b = _offline_codes(export_dir, a), _offline_codes(export_dir, b)
    assert code_a.shape == want_a.shape == (7, enc.code_dim)
    assert np.abs(code_a - want_a).max() <= 1e-5
    assert np.abs(code_b - want_b).max() <= 1e-5
    assert np.abs(code_a - code_b).max() > 1e-3  # different audio, different codes


def test_sequence_without_start_is_rejected(server, enc):
    import tritonclient.grpc as g

    i = g.InferInput("mel", [1, enc.mels_per_frame, 80], "FP32")
    i.set_data_from_numpy(np.zeros((1, enc.mels_per_frame, 80), np.float32))
    c = g.InferenceServerClient(server.grpc_url)
    try:
        with pytest.raises(Exception, match="must specify the START flag"):
            c.infer("encoder_stream", [i], sequence_id=987654321, sequence_start=False)
    finally:
        c.close()


def test_eight_concurrent_clients(server, export_dir, enc, hidden):
    rng = np.random.default_rng(9)
    mels = [rng.standard_normal((1, enc.receptive_mels, 80)).astype(np.float32) for _ in range(8)]
    feat = rng.standard_normal((64, hidden)).astype(np.float32)
    results: dict[int, object] = {}

    def worker(i):
        try:
            with TritonRunner("encoder", url=server.grpc_url) as enc_r, TritonRunner("deformer", url=server.grpc_url) as dfm_r:
                code = np.zeros((1, 1, enc.code_dim), np.float32)
                outs = {k: np.zeros((1, 64, d), np.float32) for k, d in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
                enc_r.bind(inputs={"mel": mels[i]}, outputs={"code": code})
                dfm_r.bind(inputs={"feat": feat, "code": code[0]}, outputs=outs)
                for _ in range(5):
                    enc_r.run()
                    dfm_r.run()
                results[i] = (code.copy(), outs["dmu"].copy())
        except Exception as exc:  # noqa: BLE001 (reported by the main thread)
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    for i in range(8):
        assert not isinstance(results[i], Exception), results[i]
        code, dmu = results[i]
        want_code = _ort(export_dir, "encoder", {"mel": mels[i]})["code"]
        want_dmu = _ort(export_dir, "deformer", {"feat": feat, "code": want_code[:, 0]})["dmu"]
        assert np.abs(code - want_code).max() <= 1e-5
        assert np.abs(dmu - want_dmu).max() <= 1e-5


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_open_runner_triton_equals_onnxruntime_runner(server, export_dir, enc, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    mel = np.random.default_rng(1).standard_normal((1, enc.receptive_mels, 80)).astype(np.float32)
    remote, local = np.zeros((1, 1, enc.code_dim), np.float32), np.zeros((1, 1, enc.code_dim), np.float32)
    with open_runner(export_dir / "encoder.fp32.onnx", backend="triton", url=url, protocol=protocol) as r:
        assert r.model_name == "encoder" and r.backend == "triton"
        r.bind(inputs={"mel": mel}, outputs={"code": remote})
        r.run()
    with open_runner(export_dir / "encoder.fp32.onnx", backend="onnxruntime") as r:
        r.bind(inputs={"mel": mel}, outputs={"code": local})
        r.run()
    assert np.abs(remote - local).max() <= 1e-5 and np.abs(local).max() > 0


def test_runner_reports_missing_model_and_version(server):
    with pytest.raises(BackendError, match=r"no ready model 'decoder'.*serves \['avatar_deformer', 'avatar_frame'"):
        TritonRunner("decoder", url=server.grpc_url)
    with pytest.raises(BackendError, match=r"version\(s\) \['1'\], not version '7' \(version mismatch\)"):
        TritonRunner("encoder", url=server.grpc_url, model_version="7")
    with pytest.raises(BackendError, match="no ready model 'decoder'"):
        TritonRunner("decoder", url=server.http_url, protocol="http")


def test_runner_reports_a_server_built_from_another_export(server, tmp_path, export_dir):
    other = tmp_path / "encoder.fp32.onnx"
    data = bytearray((export_dir / "encoder.fp32.onnx").read_bytes())
    data[-1] ^= 1  # same name, different bytes: a stale or foreign repository
    other.write_bytes(bytes(data))
    with pytest.raises(BackendError, match="version mismatch: model 'encoder'.*different export"):
        TritonRunner(other, url=server.grpc_url)


def test_runner_rejects_bad_bindings_and_options(server, enc):
    with TritonRunner("encoder", url=server.grpc_url) as r:
        with pytest.raises(InputError, match="'mel' must be float32"):
            r.bind(inputs={"mel": np.zeros((1, enc.receptive_mels, 80), np.float64)}, outputs={"code": np.zeros((1, 1, enc.code_dim), np.float32)})
        with pytest.raises(InputError, match="do not fit the served model"):
            r.bind(inputs={"mel": np.zeros((1, enc.receptive_mels, 80), np.float32)}, outputs={"code": np.zeros((1, 2, enc.code_dim), np.float32)})
        with pytest.raises(BackendError, match="before run"):
            r.run()
    with pytest.raises(InputError, match="stateful"):
        TritonRunner("encoder_stream", url=server.grpc_url)
    with pytest.raises(InputError, match="ensemble over the stateful model 'encoder_stream'"):
        TritonRunner("avatar_stream", url=server.grpc_url)  # no correlation id, retries: unsafe
    with pytest.raises(InputError, match="protocol must be one of"):
        TritonRunner("encoder", url=server.grpc_url, protocol="udp")
    with pytest.raises(InputError, match="timeout_s must be a positive"):
        TritonRunner("encoder", url=server.grpc_url, timeout_s=0)
    with pytest.raises(InputError, match="budget_s must be a positive"):
        TritonRunner("encoder", url=server.grpc_url, budget_s=-1)
    with pytest.raises(InputError, match="budget_s must be a positive"):
        EncoderStream(server.grpc_url, budget_s=0)
    with pytest.raises(InputError, match="mel must be"):
        with EncoderStream(server.grpc_url) as s:
            s.push(np.zeros((3, 80), np.float32))


def test_frame_deadline_bounds_runs_but_not_bind(server, enc):
    """A frame deadline that has passed: bind (cold, under timeout_s) still works, a run is not
    even sent. (Deadlines that expire in flight: test_server_frozen.)"""
    mel = np.zeros((1, enc.receptive_mels, 80), np.float32)
    with TritonRunner("encoder", url=server.grpc_url) as r:
        r.deadline = time.monotonic() - 0.5
        r.bind(inputs={"mel": mel}, outputs={"code": np.zeros((1, 1, enc.code_dim), np.float32)})
        sent = r.requests
        with pytest.raises(BackendError, match=r"inference of 'encoder' not sent: the frame's deadline passed 0.5\d* s ago"):
            r.run()
        assert r.requests == sent
        r.deadline = time.monotonic() + 5.0
        r.run()


def test_unreachable_server_fails_fast_with_a_clear_error():
    from huma_rt.triton.server import free_port

    url = f"127.0.0.1:{free_port()}"
    with pytest.raises(BackendError, match=rf"Triton server at {url} \(grpc\) is not ready after 0.5 s"):
        TritonRunner("encoder", url=url, timeout_s=0.5)


def test_stream_close_ends_the_sequence_on_the_server(server, enc):
    import tritonclient.grpc as g

    rows = np.zeros((1, enc.mels_per_frame, 80), np.float32)
    i = g.InferInput("mel", list(rows.shape), "FP32")
    i.set_data_from_numpy(rows)
    c = g.InferenceServerClient(server.grpc_url)
    try:
        s = EncoderStream(server.grpc_url, sequence_id=424242)
        s.push(np.zeros((enc.receptive_mels, 80), np.float32))
        c.infer("encoder_stream", [i], sequence_id=424242)  # still open: a continuation is accepted
        s.close()  # sends END with no rows
        with pytest.raises(Exception, match="must specify the START flag"):
            c.infer("encoder_stream", [i], sequence_id=424242)
    finally:
        c.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shared_memory_transport_equals_onnxruntime_and_cleans_up(server, export_dir, enc, hidden, protocol):
    import glob
    import os

    url = server.grpc_url if protocol == "grpc" else server.http_url
    rng = np.random.default_rng(4)
    feat = rng.standard_normal((300, hidden)).astype(np.float32)
    code = rng.standard_normal((1, enc.code_dim)).astype(np.float32)
    outs = {k: np.zeros((1, 300, d), np.float32) for k, d in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    with TritonRunner("deformer", url=url, protocol=protocol, shared_memory=True) as r:
        r.bind(inputs={"feat": feat, "code": code}, outputs=outs)
        assert len(glob.glob(f"/dev/shm/huma_{os.getpid()}_*")) == 5
        for _ in range(2):  # new inputs each run reach the server
            code[:] = rng.standard_normal(code.shape)
            r.run()
            want = _ort(export_dir, "deformer", {"feat": feat, "code": code})
            for k in want:
                assert np.abs(outs[k] - want[k]).max() <= 1e-5, k
    assert glob.glob(f"/dev/shm/huma_{os.getpid()}_*") == []


def test_streaming_ensemble_returns_the_deltas_of_new_frames(server, export_dir, enc, hidden):
    rng = np.random.default_rng(8)
    r, k = enc.receptive_mels, enc.mels_per_frame
    mel = rng.standard_normal((r + 3 * k, 80)).astype(np.float32)
    feat = rng.standard_normal((40, hidden)).astype(np.float32)
    chunks = [(0, r - k), (r - k, r), (r, r + 3 * k)]
    got = []
    for n, (a, b) in enumerate(chunks):
        out = _infer(server, "grpc", "avatar_stream", {"mel": np.ascontiguousarray(mel[None, a:b]), "feat": feat}, ["dmu", "dquat", "dscale"],
                     sequence_id=5150, sequence_start=n == 0, sequence_end=n == len(chunks) - 1)  # fmt: skip
        got.append(out)
    assert [g["dmu"].shape[0] for g in got] == [0, 1, 3]
    code = _offline_codes(export_dir, mel)
    want = _ort(export_dir, "deformer", {"feat": feat, "code": code})
    for key in want:
        assert np.abs(np.concatenate([g[key] for g in got]) - want[key]).max() <= 1e-5, key


def test_shared_memory_regions_go_with_an_unclosed_runner(server, hidden, enc):
    import gc
    import glob
    import os

    r = TritonRunner("deformer", url=server.grpc_url, shared_memory=True)
    outs = {k: np.zeros((1, 10, d), np.float32) for k, d in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    r.bind(inputs={"feat": np.ones((10, hidden), np.float32), "code": np.ones((1, enc.code_dim), np.float32)}, outputs=outs)
    assert glob.glob(f"/dev/shm/huma_{os.getpid()}_{id(r):x}_*")
    tag = f"/dev/shm/huma_{os.getpid()}_{id(r):x}_*"
    del r
    gc.collect()
    assert glob.glob(tag) == []


def test_avatar_deformer_has_the_features_baked_in_and_batches(server, bundle, export_dir, enc):
    from huma_rt.bundle import open_bundle

    g = open_bundle(bundle).gaussians()
    means = np.ascontiguousarray(np.asarray(g.means)[np.asarray(g.region) != 0], np.float32)
    feat = _ort(export_dir, "spatial", {"means": means})["feat"]
    rng = np.random.default_rng(12)
    codes = [rng.standard_normal((b, enc.code_dim)).astype(np.float32) for b in (1, 3, 1, 2, 1, 1, 2, 1)]
    results: dict[int, object] = {}

    def worker(i):  # concurrent requests: the dynamic batcher merges them into one run
        try:
            results[i] = _infer(server, "grpc", "avatar_deformer", {"code": codes[i]}, ["dmu", "dquat", "dscale"])
        except Exception as exc:  # noqa: BLE001 (reported below)
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(codes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, code in enumerate(codes):
        assert not isinstance(results[i], Exception), results[i]
        want = _ort(export_dir, "deformer", {"feat": feat, "code": code})
        for k in want:
            assert results[i][k].shape == want[k].shape == (code.shape[0], means.shape[0], want[k].shape[2])
            assert np.abs(results[i][k] - want[k]).max() <= 1e-5, k
