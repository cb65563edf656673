"""The server's admission rules without a browser or a loaded worker: malformed offers are a
clear 400, a missing token a 401, binding off loopback needs a token."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from huma_rt.bench._browser import REPO, Server

from huma_rt.errors import InputError
from huma_rt.serve.server import ServerConfig, check_offer, is_loopback

pytest.importorskip("aiohttp")
pytest.importorskip("aiortc")

TOKEN = "s3cret-token-0123456789"
GOOD_SDP = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendrecv",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=mid:1", "a=recvonly",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=rtcp-mux",
    "a=rtpmap:96 VP8/90000", "",
])  # fmt: skip


@pytest.fixture(scope="module")
def server():
    # --warm 0: no worker is loaded, so every answer here comes from the admission checks
    srv = Server("--warm", "0", "--token", TOKEN, "--no-asr", ready_workers=0)
    yield srv
    srv.close()


def _auth():
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("body, message", [
    (b"not json", "the offer must be JSON"),
    (b"[1, 2]", "the offer must be a JSON object"),
    (json.dumps({"type": "answer", "sdp": "v=0"}).encode(), "'type' must be \"offer\""),
    (json.dumps({"type": "offer", "sdp": ""}).encode(), "'sdp' must be a non-empty string"),
    (json.dumps({"type": "offer", "sdp": "hello"}).encode(), "malformed SDP: the first line must be 'v=0'"),
    (json.dumps({"type": "offer", "sdp": "v=0\nm=audio 9 RTP/AVP 0\n"}).encode(), "needs an audio and a video"),
    (json.dumps({"type": "offer", "sdp": GOOD_SDP.replace("a=fingerprint", "a=x")}).encode(), "no a=fingerprint"),
])  # fmt: skip
def test_malformed_offer_is_a_clear_400(server, body, message):
    status, reply = server.post("offer", body, _auth())
    assert status == 400, reply
    assert message in reply["error"], reply
    assert server.health()["visitors"] == 0


def test_offer_needs_the_token(server):
    body = json.dumps({"type": "offer", "sdp": GOOD_SDP}).encode()
    status, reply = server.post("offer", body)
    assert status == 401 and "token" in reply["error"]
    status, reply = server.post("offer", body, {"Authorization": "Bearer wrong-token-000000000"})
    assert status == 401


def test_page_and_script_are_served(server):
    import urllib.request

    with urllib.request.urlopen(server.url) as r:
        html = r.read().decode()
    assert 'id="start"' in html and 'src="app.js"' in html and 'id="question"' in html
    with urllib.request.urlopen(server.url + "app.js") as r:
        assert "requestVideoFrameCallback" in r.read().decode()


def test_check_offer_accepts_a_well_formed_offer():
    assert check_offer({"type": "offer", "sdp": GOOD_SDP})[1] == "offer"


def test_binding_off_loopback_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(InputError, match="needs an access token"):
        ServerConfig(host="0.0.0.0").validate()
    with pytest.raises(InputError, match="at least 16 characters"):
        ServerConfig(host="0.0.0.0", token="short").validate()
    ServerConfig(host="0.0.0.0", token=TOKEN).validate()
    with pytest.raises(InputError, match="--public-media .* needs an access token"):
        ServerConfig(public_media=True).validate()
    with pytest.raises(InputError, match="warm must be"):
        ServerConfig(max_visitors=1, warm=2).validate()


def test_cli_refuses_a_public_bind_without_token():
    r = subprocess.run([sys.executable, "-m", "huma_rt", "serve", "--host", "0.0.0.0", "--port", "0"],
                       capture_output=True, text=True, timeout=60, cwd=REPO, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("error: binding to 0.0.0.0 (not loopback) needs an access token"), r.stderr
