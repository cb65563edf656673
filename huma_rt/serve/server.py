"""The HTTP side of ``huma-rt serve`` (aiohttp): the page, and one SDP offer -> answer per visitor.

Routes: ``GET /`` the page, ``GET /app.js``, ``GET /health`` (visitors, warm workers),
``POST /offer`` ``{"sdp", "type": "offer"}`` -> the worker's answer. The offer is checked here,
before a worker is touched: a malformed body or SDP is a 400 that says what is wrong, a missing
or wrong token a 401, all visitor slots taken a 503 "busy" with Retry-After.

The media never passes through this process: the worker that answers the offer owns the peer
connection, so this process only does admission and signalling.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import signal
from dataclasses import dataclass
from importlib import resources

from huma_rt.errors import InputError
from huma_rt.serve.pool import BusyError, WorkerError, WorkerPool

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024


@dataclass
class ServerConfig:
    """host/port: where to listen (127.0.0.1 by default). token: required on /offer (as
    ``Authorization: Bearer TOKEN`` or ``?token=``) - mandatory when host is not loopback.
    max_visitors: concurrent visits (beyond it: 503 busy). warm: loaded spare workers kept
    ready. offer_timeout_s: how long a worker may take to answer an offer. public_media: workers
    offer WebRTC media on every interface, not only loopback (a reverse-proxy set-up) - which
    also needs a token, since visitors then come from elsewhere."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_visitors: int = 4
    warm: int = 1
    offer_timeout_s: float = 30.0
    public_media: bool = False

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InputError(f"port must be in 0..65535; got {self.port}")
        if self.max_visitors < 1:
            raise InputError(f"max_visitors must be >= 1; got {self.max_visitors}")
        if not 0 <= self.warm <= self.max_visitors:
            raise InputError(f"warm must be in 0..max_visitors ({self.max_visitors}); got {self.warm}")
        if not is_loopback(self.host) and not self.token:
            raise InputError(
                f"binding to {self.host} (not loopback) needs an access token: pass --token TOKEN "
                "(or set HUMA_SERVE_TOKEN); the page is then opened as http://HOST:PORT/?token=TOKEN"
            )
        if self.public_media and not self.token:
            raise InputError("--public-media (visitors from other machines) needs an access token: pass --token "
                             "TOKEN (or set HUMA_SERVE_TOKEN)")  # fmt: skip
        if self.token is not None and len(self.token) < 16:
            raise InputError(f"the access token must be at least 16 characters; got {len(self.token)}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_offer(body: object) -> tuple[str, str]:
    """The POST /offer body -> (sdp, type); InputError naming what is malformed."""
    if not isinstance(body, dict):
        raise InputError(f"the offer must be a JSON object {{\"sdp\": ..., \"type\": \"offer\"}}; got {type(body).__name__}")
    sdp, kind = body.get("sdp"), body.get("type")
    if kind != "offer":
        raise InputError(f"'type' must be \"offer\"; got {kind!r}")
    if not isinstance(sdp, str) or not sdp.strip():
        raise InputError("'sdp' must be a non-empty string (the browser's offer SDP)")
    lines = [ln.strip() for ln in sdp.strip().splitlines()]
    if lines[0] != "v=0":
        raise InputError(f"malformed SDP: the first line must be 'v=0'; got {lines[0][:40]!r}")
    media = [ln.split()[0][2:] for ln in lines if ln.startswith("m=") and ln.split()]
    if "audio" not in media or "video" not in media:
        raise InputError(f"the offer needs an audio and a video section (m=audio, m=video); got {media}")
    if not any(ln.startswith("a=fingerprint:") for ln in lines):
        raise InputError("malformed SDP: no a=fingerprint line (DTLS is required)")
    if not any(ln.startswith("a=ice-ufrag:") for ln in lines):
        raise InputError("malformed SDP: no a=ice-ufrag line (ICE credentials are required)")
    try:
        from aiortc.sdp import SessionDescription

        SessionDescription.parse(sdp)
    except ImportError:
        pass
    except Exception as exc:  # the parser's own words, whatever they are
        raise InputError(f"malformed SDP: {type(exc).__name__}: {exc}") from exc
    return sdp, kind


def _web(name: str) -> bytes:
    return resources.files("huma_rt.serve").joinpath("web", name).read_bytes()


def make_app(config: ServerConfig, pool: WorkerPool):
    """The aiohttp application (the pool is started and closed with it)."""
    from aiohttp import web

    page, script = _web("index.html"), _web("app.js")

    def error(status: int, message: str, **headers):
        return web.json_response({"error": message}, status=status, headers=headers)

    async def index(request):
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    async def app_js(request):
        return web.Response(body=script, content_type="application/javascript", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    async def favicon(request):
        return web.Response(status=204)

    async def health(request):
        return web.json_response(pool.status())

    def authorized(request) -> bool:
        if not config.token:
            return True
        given = request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), config.token.encode())

    async def offer(request):
        if not authorized(request):
            return error(401, "missing or wrong access token (open the page as /?token=TOKEN)")
        if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
            return error(413, f"the offer is larger than {MAX_OFFER_BYTES} bytes")
        raw = await request.content.read(MAX_OFFER_BYTES + 1)
        if len(raw) > MAX_OFFER_BYTES:
            return error(413, f"the offer is larger than {MAX_OFFER_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return error(400, f"the offer must be JSON: {exc}")
        try:
            sdp, kind = check_offer(body)
        except InputError as exc:
            return error(400, str(exc))
        try:
            worker = await pool.take()
        except BusyError as exc:
            return error(503, str(exc), **{"Retry-After": "10"})
        except WorkerError as exc:
            return error(503, str(exc), **{"Retry-After": "10"})
        try:
            reply = await worker.offer(sdp, kind, config.offer_timeout_s)
        except WorkerError as exc:
            pool.release(worker)
            return error(504, str(exc))
        if reply.get("event") != "answer":
            pool.release(worker)
            return error(400, f"the offer was refused: {reply.get('message')}")
        log.info("visitor %s -> worker %d", request.remote, worker.pid)
        return web.json_response({"sdp": reply["sdp"], "type": reply["type"], "worker": worker.pid})

    async def on_startup(app):
        await pool.start()

    async def on_cleanup(app):
        await pool.close()

    app = web.Application(client_max_size=MAX_OFFER_BYTES)
    app.add_routes([web.get("/", index), web.get("/app.js", app_js), web.get("/health", health),
                    web.get("/favicon.ico", favicon),
                    web.post("/offer", offer)])  # fmt: skip
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve(config: ServerConfig, pool: WorkerPool, announce=print) -> None:
    """Run until SIGINT/SIGTERM; workers are stopped on the way out."""
    from aiohttp import web

    config.validate()
    runner = web.AppRunner(make_app(config, pool), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else config.port
    host = config.host if ":" not in config.host else f"[{config.host}]"
    query = "/?token=TOKEN" if config.token else "/"
    announce(f"serving http://{host}:{port}{query} (at most {config.max_visitors} visitors; Ctrl-C stops)")
    stop = asyncio.Event()
    failure: list[BaseException] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def first_worker() -> None:  # a worker that cannot load ends the server, loudly
        try:
            msg = await pool.first_ready()
            announce(f"a visitor's worker is ready (loaded in {msg.get('load_s', 0):.1f} s)")
        except WorkerError as exc:
            failure.append(exc)
            stop.set()

    watch = asyncio.ensure_future(first_worker()) if pool.warm else None
    try:
        await stop.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await runner.cleanup()
    if failure:
        raise failure[0]
