"""A server that goes away in the middle of a stream: the client errors clearly, never hangs.

Uses its own server instance (not the shared session one), stopped while a gRPC and an HTTP
client are both streaming frames (stateless encoder request + sequence step per frame).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from huma_rt.errors import BackendError
from huma_rt.model_config import EncoderConfig
from huma_rt.triton.runner import EncoderStream, TritonRunner

TIMEOUT_S = 2.0


def test_server_stopped_mid_stream(fresh_server, export_dir):
    enc = EncoderConfig.load(export_dir / "encoder.json")
    srv = fresh_server
    mel = np.random.default_rng(2).standard_normal((1, enc.receptive_mels, 80)).astype(np.float32)
    urls = {"grpc": srv.grpc_url, "http": srv.http_url}
    errors: dict[str, list[BaseException]] = {p: [] for p in urls}
    frames = dict.fromkeys(urls, 0)
    streams: dict[str, EncoderStream] = {}

    def client(protocol: str) -> None:
        runner = None
        try:
            # HTTP clients are per thread: open them in the thread that uses them
            runner = TritonRunner("encoder", url=urls[protocol], protocol=protocol, timeout_s=TIMEOUT_S, retries=1)
            stream = streams[protocol] = EncoderStream(urls[protocol], protocol=protocol, timeout_s=TIMEOUT_S)
            runner.bind(inputs={"mel": mel}, outputs={"code": np.zeros((1, 1, enc.code_dim), np.float32)})
            assert stream.push(mel[0]).shape == (1, enc.code_dim)
            for _ in range(100_000):
                runner.run()
                stream.push(mel[0, : enc.mels_per_frame])
                frames[protocol] += 1
        except BaseException as exc:  # noqa: BLE001 (inspected below)
            errors[protocol].append(exc)
        finally:
            if runner is not None:
                runner.close()

    threads = [threading.Thread(target=client, args=(p,)) for p in urls]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while min(frames.values()) < 3 and all(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert min(frames.values()) >= 3, (frames, errors)
    stopped_at = time.monotonic()
    srv.stop(timeout_s=1.0)  # SIGTERM, SIGKILL after 1 s: in-flight requests die with it
    # worst case: a run's budget (1 s) or a sequence push's (1 s), far below these bounds
    for t in threads:
        t.join(timeout=2 * TIMEOUT_S + 5)
    assert not any(t.is_alive() for t in threads), "a client hung after the server stopped"
    assert srv.running is False
    assert list(Path("/dev/shm").glob(f"{srv._shm_prefix}*")) == []  # even after SIGKILL
    assert time.monotonic() - stopped_at < 2 * TIMEOUT_S + 5
    for protocol, url in urls.items():
        errs = errors[protocol]
        assert len(errs) == 1 and isinstance(errs[0], BackendError), (protocol, errs)
        assert f"Triton server at {url} ({protocol})" in str(errs[0])
        if "inference of 'encoder'" in str(errs[0]):  # stateless: a refused or reset connection is
            # retried once (retries=1); a server hanging in its shutdown ends in a deadline, not retried
            assert "failed after 2 requests" in str(errs[0]) or "not retried" in str(errs[0]), str(errs[0])
        if "sequence" in str(errs[0]):  # the session is over: no silent resend of its state
            try:
                streams[protocol].push(mel[0, : enc.mels_per_frame])
                raise AssertionError("push after a failed sequence request must fail")
            except BackendError as exc:
                assert "has ended" in str(exc)
        streams[protocol].close()
