"""A server that goes away in the middle of a stream: the client errors clearly, never hangs.

Uses its own server instance (not the shared session one), stopped halfway through.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from huma_rt.errors import BackendError
from huma_rt.model_config import EncoderConfig
from huma_rt.triton.runner import EncoderStream, TritonRunner

TIMEOUT_S = 2.0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_stopped_mid_stream(fresh_server, export_dir, protocol):
    enc = EncoderConfig.load(export_dir / "encoder.json")
    srv = fresh_server
    try:
        url = srv.grpc_url if protocol == "grpc" else srv.http_url
        mel = np.random.default_rng(2).standard_normal((1, enc.receptive_mels, 80)).astype(np.float32)
        code = np.zeros((1, 1, enc.code_dim), np.float32)
        runner = TritonRunner("encoder", url=url, protocol=protocol, timeout_s=TIMEOUT_S, retries=1)
        stream = EncoderStream(url, protocol=protocol, timeout_s=TIMEOUT_S)
        runner.bind(inputs={"mel": mel}, outputs={"code": code})
        first = stream.push(mel[0])
        assert first.shape == (1, enc.code_dim)
        errors: list[BaseException] = []
        frames = [0]

        def stream_frames():
            try:
                for _ in range(100_000):
                    runner.run()
                    stream.push(mel[0, : enc.mels_per_frame])
                    frames[0] += 1
            except BaseException as exc:  # noqa: BLE001 (inspected below)
                errors.append(exc)

        t = threading.Thread(target=stream_frames)
        t.start()
        while frames[0] < 3 and t.is_alive():
            time.sleep(0.01)
        stopped_at = time.monotonic()
        srv.stop(timeout_s=1.0)  # SIGTERM, SIGKILL after 1 s: in-flight requests die with it
        # worst case: the runner's first try + 1 retry, each bounded by the timeout, + backoff
        t.join(timeout=2 * TIMEOUT_S + 5)
        assert not t.is_alive(), "the client hung after the server stopped"
        elapsed = time.monotonic() - stopped_at
        assert frames[0] >= 3, errors
        assert len(errors) == 1 and isinstance(errors[0], BackendError), errors
        assert f"Triton server at {url}" in str(errors[0])
        assert elapsed < 2 * TIMEOUT_S + 5
        # the session is over: the stream refuses further pushes instead of resending state
        if "sequence" in str(errors[0]):
            with pytest.raises(BackendError, match="has ended"):
                stream.push(mel[0, : enc.mels_per_frame])
        stream.close()
        runner.close()
    finally:
        srv.stop()
