"""A server that stops answering (SIGSTOP) or dies (SIGKILL) in the middle of a stream.

Frozen: one run() fails with a BackendError within its budget after ONE request (a deadline is
not retried), an encoder sequence is over after its failed push, and after SIGCONT the same
runner and a new sequence work again with correct numbers. Killed: the connection is refused,
the runner retries (fast failures) and gives up well within its budget with a clear message.
The servers are this module's own; a stopped one is always continued, then stopped.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import numpy as np
import onnxruntime as ort
import pytest

from huma_rt.errors import BackendError
from huma_rt.model_config import EncoderConfig
from huma_rt.triton.runner import DEFAULT_BUDGET_S, EncoderStream, TritonRunner

SLACK_S = 0.5  # scheduling on a loaded 2-core host; far below the 10 s per try before issue 16


@contextmanager
def sigstopped(srv):
    """The server process frozen (its TCP sockets stay open, nothing answers); always continued."""
    os.kill(srv.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(srv.pid, signal.SIGCONT)


def _offline_codes(export_dir, mel):
    sess = ort.InferenceSession(str(export_dir / "encoder.fp32.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["code"], {"mel": mel[None]})[0][0]


def _timed_failure(fn) -> tuple[float, BackendError]:
    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        fn()
    return time.monotonic() - t0, info.value


@pytest.mark.parametrize(("protocol", "budget_s"), [("grpc", None), ("http", 0.5)])
def test_frozen_server_fails_within_the_budget_without_retrying_and_recovers(module_server, export_dir, protocol, budget_s):
    enc = EncoderConfig.load(export_dir / "encoder.json")
    r, k = enc.receptive_mels, enc.mels_per_frame
    mel = np.random.default_rng(4).standard_normal((r + 8 * k, 80)).astype(np.float32)
    url = module_server.grpc_url if protocol == "grpc" else module_server.http_url
    budget = DEFAULT_BUDGET_S if budget_s is None else budget_s  # gRPC: the defaults, as a session gets them
    opts = {} if budget_s is None else {"budget_s": budget_s}
    code = np.zeros((1, 1, enc.code_dim), np.float32)
    with TritonRunner("encoder", url=url, protocol=protocol, **opts) as runner, EncoderStream(url, protocol=protocol, **opts) as stream:
        runner.bind(inputs={"mel": mel[None, :r]}, outputs={"code": code})
        want = code.copy()
        assert stream.push(mel[:r]).shape == (1, enc.code_dim)
        for _ in range(3):  # mid-stream
            runner.run()
            stream.push(mel[r : r + k])
        with sigstopped(module_server):
            sent = runner.requests
            elapsed, err = _timed_failure(runner.run)
            assert elapsed < budget + SLACK_S, (elapsed, str(err))
            assert runner.requests == sent + 1, "a deadline was retried"
            msg = str(err)
            assert f"Triton server at {url} ({protocol})" in msg and "'encoder'" in msg, msg
            assert f"budget of {budget:.3g} s" in msg and "not retried" in msg, msg

            # one bound for a frame: a deadline shared by the frame's runners ends the run first
            runner.deadline = time.monotonic() + 0.3
            elapsed, err = _timed_failure(runner.run)
            assert elapsed < 0.3 + SLACK_S and runner.requests == sent + 2, (elapsed, str(err))
            runner.deadline = None

            # a sequence request is never retried; after it the stream is over (its state on
            # the server is unknown: the frozen server may still run the request when continued)
            elapsed, err = _timed_failure(lambda: stream.push(mel[r + k : r + 2 * k]))
            assert elapsed < budget + SLACK_S, (elapsed, str(err))
            assert f"sequence {stream.sequence_id}" in str(err) and "not retried" in str(err), str(err)
        with pytest.raises(BackendError, match="has ended"):
            stream.push(mel[r + k : r + 2 * k])

        # continued: the same runner answers again (the stale requests are dropped or answered
        # to nobody), with the same numbers
        code[...] = 0.0
        runner.run()
        np.testing.assert_array_equal(code, want)
    with EncoderStream(url, protocol=protocol, **opts) as fresh:  # a new session's sequence
        got = np.concatenate([fresh.push(mel[:r])] + [fresh.push(mel[r + i * k : r + (i + 1) * k]) for i in range(8)])
    assert np.abs(got - _offline_codes(export_dir, mel)).max() <= 1e-5


def test_killed_server_is_retried_and_fails_fast(fresh_server, export_dir):
    enc = EncoderConfig.load(export_dir / "encoder.json")
    urls = {"grpc": fresh_server.grpc_url, "http": fresh_server.http_url}
    runners = {p: TritonRunner("encoder", url=url, protocol=p) for p, url in urls.items()}
    try:
        for r in runners.values():
            r.bind(inputs={"mel": np.zeros((1, enc.receptive_mels, 80), np.float32)}, outputs={"code": np.zeros((1, 1, enc.code_dim), np.float32)})
        os.killpg(fresh_server.pid, signal.SIGKILL)
        fresh_server.stop()  # reap it; nothing listens on the ports any more
        for protocol, r in runners.items():
            sent = r.requests
            elapsed, err = _timed_failure(r.run)
            msg = str(err)
            # refused connections fail at once: three tries (retries=2), two pauses (50 + 100 ms)
            assert r.requests == sent + 3, msg
            assert 0.15 <= elapsed < DEFAULT_BUDGET_S, (elapsed, msg)
            assert f"Triton server at {urls[protocol]} ({protocol}): inference of 'encoder' failed after 3 requests" in msg, msg
            assert "unavailable" in msg.lower() or "refused" in msg.lower(), msg
    finally:
        for r in runners.values():
            r.close()


def test_failure_kinds():
    """What is retried: fast transport failures; never a deadline; never the server's answer."""
    from geventhttpclient.response import HTTPConnectionClosed
    from tritonclient.utils import InferenceServerException as Err

    from huma_rt.triton.runner import _failure_kind

    assert _failure_kind(Err("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")) == "deadline"
    assert _failure_kind(TimeoutError("timed out")) == "deadline"  # HTTP: socket.timeout, a socket operation's bound
    assert _failure_kind(Err("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")) == "transport"
    assert _failure_kind(ConnectionRefusedError(111, "Connection refused")) == "transport"
    assert _failure_kind(HTTPConnectionClosed("connection closed.")) == "transport"
    assert _failure_kind(Err("unexpected shape for input 'mel'", status="StatusCode.INVALID_ARGUMENT")) == "final"
    assert _failure_kind(Err("[400] unexpected shape", status="400")) == "final"


def test_a_session_frame_has_one_bound_over_its_runs(module_server, bundle):
    """A session's frame sets one deadline on its encoder and deformer runners: a frozen server
    fails the frame within frame_budget_s (not within each runner's own budget), and the
    default bound is the runners' budget_s."""
    from huma_rt.runtime import Avatar

    avatar = Avatar.load(bundle, device="cpu", backend="triton", url=module_server.grpc_url)
    assert avatar.session().frame_budget_s == DEFAULT_BUDGET_S
    s = avatar.session(frame_budget_s=0.3)
    assert s.frame_budget_s == 0.3
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    s.push_audio(audio[:8000])
    assert len(list(s.frames())) > 0  # answered while the server runs
    s.push_audio(audio[8000:])
    with sigstopped(module_server):
        elapsed, err = _timed_failure(lambda: list(s.frames()))
    assert elapsed < 0.3 + SLACK_S, (elapsed, str(err))
    assert "deadline" in str(err) or "budget" in str(err), str(err)
    s.close()
