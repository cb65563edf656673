"""Responders; the OpenAI-compatible one against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from huma_rt.errors import InputError
from huma_rt.speech.responder import (
    EchoResponder,
    OpenAIConfig,
    OpenAIResponder,
    ResponderError,
    ScriptedResponder,
    make_responder,
)

WORDS = ["Hello", " there", ", friend", "."]


def _event(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "500":
            msg = b'{"error": "model overloaded"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        if mode == "slow_start":
            time.sleep(1.5)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(b": keep-alive\n\n")
        for i, word in enumerate(WORDS):
            self._chunk(_event(word))
            if mode == "drop" and i == 1:
                self.wfile.write(b"40\r\ndata: {\"choi")  # half a chunk, then the socket dies
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if mode == "stall" and i == 1:
                time.sleep(1.5)
        if mode == "garbage":
            self._chunk(b"data: {not json\n\n")
        self._chunk(_event(None, "stop"))
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.mode = "ok"  # type: ignore[attr-defined]
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    _Handler.seen.clear()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def _responder(srv, **kw) -> OpenAIResponder:
    host, port = srv.server_address
    return OpenAIResponder(OpenAIConfig(base_url=f"http://{host}:{port}/v1", **kw))


def test_streams_deltas_with_key_from_env(server, monkeypatch):
    monkeypatch.setenv("HUMA_TEST_KEY", "sk-test-123")
    r = _responder(server, api_key_env="HUMA_TEST_KEY", model="tiny")
    assert list(r.respond("hi there")) == WORDS
    req = _Handler.seen[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test-123"
    assert req["body"]["stream"] is True and req["body"]["model"] == "tiny"
    assert req["body"]["messages"][-1] == {"role": "user", "content": "hi there"}


def test_the_conversation_so_far_goes_to_the_endpoint(server):
    history = [("What is the capital of France?", "Paris."), ("And Germany?", "Berlin …")]
    assert "".join(_responder(server).respond("Which is bigger?", history)) == "Hello there, friend."
    assert _Handler.seen[-1]["body"]["messages"][1:] == [
        {"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Germany?"}, {"role": "assistant", "content": "Berlin …"},
        {"role": "user", "content": "Which is bigger?"}]


def test_responders_with_and_without_history_are_called_alike():
    from huma_rt.speech.responder import respond_in_context, takes_history

    class Plain:
        def respond(self, text, *, loud=False):
            yield text.upper() if loud else text

    assert not takes_history(Plain()) and takes_history(EchoResponder()) and takes_history(ScriptedResponder(["a"]))
    assert list(respond_in_context(Plain(), "hi", [("a", "b")])) == ["hi"]
    assert list(respond_in_context(EchoResponder(), "hi", [("a", "b")])) == ["You said: hi"]


def test_no_key_no_header(server, monkeypatch):
    monkeypatch.delenv("HUMA_UNSET_KEY", raising=False)
    assert "".join(_responder(server, api_key_env="HUMA_UNSET_KEY").respond("x")) == "Hello there, friend."
    assert _Handler.seen[-1]["auth"] is None


def test_http_500_is_a_clear_error(server):
    server.mode = "500"
    with pytest.raises(ResponderError, match="HTTP 500.*model overloaded"):
        list(_responder(server).respond("x"))


def test_slow_server_times_out(server):
    server.mode = "slow_start"
    t0 = time.monotonic()
    with pytest.raises(ResponderError, match="did not answer within 0.3 s"):
        list(_responder(server, timeout_s=0.3).respond("x"))
    assert time.monotonic() - t0 < 1.4  # gave up before the server answered


def test_stall_mid_stream_times_out(server):
    server.mode = "stall"
    got = []
    with pytest.raises(ResponderError, match="stalled for more than 0.3 s"):
        for chunk in _responder(server, timeout_s=0.3).respond("x"):
            got.append(chunk)
    assert got == WORDS[:2]  # what arrived before the stall was delivered


def test_dropped_connection(server):
    server.mode = "drop"
    got = []
    with pytest.raises(ResponderError, match="dropped the connection|closed the stream"):
        for chunk in _responder(server).respond("x"):
            got.append(chunk)
    assert got == WORDS[:2]


def test_malformed_event(server):
    server.mode = "garbage"
    with pytest.raises(ResponderError, match="malformed event"):
        list(_responder(server).respond("x"))


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = OpenAIResponder(OpenAIConfig(base_url=f"http://127.0.0.1:{port}/v1", timeout_s=2))
    with pytest.raises(ResponderError, match=f"cannot reach responder http://127.0.0.1:{port}/v1/chat"):
        list(r.respond("x"))


def test_bad_configs():
    with pytest.raises(InputError, match="base_url"):
        OpenAIResponder(OpenAIConfig(base_url="ftp://x"))
    with pytest.raises(InputError, match="timeouts"):
        OpenAIResponder(OpenAIConfig(timeout_s=0))
    with pytest.raises(InputError, match="'echo', 'scripted' or 'openai'"):
        make_responder("gpt")
    with pytest.raises(InputError, match="non-empty reply"):
        ScriptedResponder([])


def test_offline_responders():
    assert "".join(EchoResponder().respond(" hello ")) == "You said: hello"
    s = ScriptedResponder(["One two.", "Three."])
    assert list(s.respond("a")) == ["One ", "two."]
    assert "".join(s.respond("b")) == "Three."
    assert "".join(s.respond("c")) == "One two."
