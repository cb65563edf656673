"""One visitor's process: ``python -m huma_rt.serve.worker CONFIG_JSON``.

It loads everything heavy first (avatar, voice, VAD, ASR) and says ``ready``; the server hands
it one visitor's SDP offer; it answers, runs the peer connection and the conversation, and
exits when the visit ends (the page closed, its media stopped arriving, idle timeout, the
server said stop, or the server went away). Nothing is shared with other visitors but the
read-only bundle files.

Protocol with the server: JSON lines. In (stdin): ``{"op": "offer", "sdp", "type"}``,
``{"op": "stop"}``; end of stdin = stop. Out (a private pipe; stdout itself is pointed at stderr
so that a library printing cannot corrupt it): ``{"event": "ready", "load_s"}``,
``{"event": "answer", "sdp", "type"}``, ``{"event": "offer_error", "message"}``,
``{"event": "ended", "reason", "stats"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field

from huma_rt.errors import HumaError, InputError

log = logging.getLogger(__name__)

CONNECT_GRACE_S = 10.0  # a visit's first media may take this long (ICE, DTLS) before "gone" counts
# What _Models.warm speaks: one sentence as long as an answer's usual ones (ChunkAssembler cuts
# chunks at 60 characters first, then at sentence ends up to 200). Piper's onnxruntime arena grows
# to the longest chunk spoken so far and keeps it (measured: ~1 MiB per character, +90 MiB for
# 100); a longer chunk in a visit still grows it then.
WARM_TEXT = ("Thank you for waiting, I am here now and glad to help with whatever you would like to ask "
             "me about today.")  # fmt: skip
WARM_FRAMES = 3  # talking frames drawn and encoded by the warm-up
MEDIA_SLACK_S = 0.05  # a frame's picture leaves this long after its tick (drawn and encoded by then)
AUDIO_SLACK_S = 0.015  # ... and its audio this long (handed over before the frame is drawn)


@dataclass
class WorkerConfig:
    """What a visitor's process loads and how its visit is bounded (seconds unless noted).

    bundle: avatar bundle path. responder: 'echo' | 'scripted' | 'openai' with
    responder_options for make_responder. asr: AsrConfig fields, or None (no speech
    recognition). voice/speed/tts_threads: the Piper voice. threads: avatar threads (None:
    defaults). turns: TurnConfig fields (end of turn; {} = its defaults). barge_in_s: speech
    that cuts an answer. speculate: answer the text heard at the pause during the turn's silence
    (ConversationConfig.speculate). history_turns: the visit's earlier exchanges the responder
    is given (ConversationConfig.history_turns). blink: the avatar blinks (ConversationConfig.blink).
    idle_timeout_s: a visit with no speech and no text this long ends. gone_after_s: a visit
    whose microphone packets stop this long ends (the page vanished). loopback: offer only
    127.0.0.1 ICE candidates (the server is bound to loopback). media: 'packets' (the worker
    encodes VP8 and Opus itself and hands aiortc packets: an unchanged picture is not
    re-encoded; huma_rt.serve.encode) or 'frames' (aiortc encodes every frame, as before: kept
    for A/B measurements); 'packets' falls back to 'frames' when the browser's answer codec is
    not VP8. warm_up: run one thrown-away answer at load (``_Models.warm``; False: for A/B
    measurements of the first answer). audio_slack_s: how long after its tick a frame's audio
    leaves (its picture leaves ``MEDIA_SLACK_S`` after, the time to draw and encode it; the audio
    is handed over before the frame is drawn); None: with its picture, as before.
    """

    bundle: str
    responder: str = "echo"
    responder_options: dict = field(default_factory=dict)
    asr: dict | None = None
    voice: str | None = None
    speed: float = 1.0
    tts_threads: int = 1
    threads: int | None = None
    turns: dict = field(default_factory=dict)
    barge_in_s: float = 0.3
    max_answer_chars: int = 2000
    speculate: bool = True
    history_turns: int = 16
    blink: bool = True
    idle_timeout_s: float = 300.0
    gone_after_s: float = 5.0
    loopback: bool = True
    media: str = "packets"
    warm_up: bool = True
    audio_slack_s: float | None = AUDIO_SLACK_S
    log_level: int = logging.WARNING

    def __post_init__(self) -> None:
        if self.media not in ("packets", "frames"):
            raise InputError(f"media must be 'packets' or 'frames'; got {self.media!r}")
        if self.audio_slack_s is not None and not 0.0 <= self.audio_slack_s <= MEDIA_SLACK_S:
            raise InputError(f"audio_slack_s must be in [0, {MEDIA_SLACK_S}] seconds (the picture's slack) "
                             f"or None; got {self.audio_slack_s}")  # fmt: skip
        if not isinstance(self.history_turns, int) or isinstance(self.history_turns, bool) or self.history_turns < 0:
            raise InputError(f"history_turns (--history) must be an integer >= 0; got {self.history_turns!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class _Models:
    """Everything a visit needs, loaded before the visitor arrives."""

    def __init__(self, cfg: WorkerConfig) -> None:
        import numpy as np

        from huma_rt.runtime import Avatar
        from huma_rt.speech.responder import make_responder
        from huma_rt.speech.tts import PiperTTS
        from huma_rt.speech.turns import SpeechProbability, TurnConfig

        self.responder = make_responder(cfg.responder, **cfg.responder_options)
        self.avatar = Avatar.load(cfg.bundle, threads=cfg.threads)
        self.moving_box = moving_box(self.avatar.bundle, self.avatar.blink_mask())
        self.tts = PiperTTS.load(cfg.voice, num_threads=cfg.tts_threads, speed=cfg.speed)
        self.asr = None
        if cfg.asr is not None:
            from huma_rt.speech.asr import AsrConfig, Recognizer

            self.asr = Recognizer(AsrConfig(**cfg.asr))
        from huma_rt.serve.conversation import ConversationConfig

        self.conversation = ConversationConfig(
            turns=TurnConfig(**cfg.turns), barge_in_s=cfg.barge_in_s,
            max_answer_chars=cfg.max_answer_chars, speculate=cfg.speculate,
            history_turns=cfg.history_turns, blink=cfg.blink)  # fmt: skip
        self.conversation.validate()
        SpeechProbability(self.conversation.turns.model)  # the VAD model loads (and is checked) now
        if self.asr is not None:  # the first decode of a process is slow (allocations): not on a visitor's turn
            self.asr.transcribe(np.zeros(8000, np.float32))
        if cfg.warm_up:
            self.warm()

    def warm(self) -> None:
        """One answer's path run once and thrown away, so that a visitor's first answer does not
        pay its one-time allocations: Piper speaks WARM_TEXT (its onnxruntime arena grows to it:
        most of the cost), the avatar's spare session draws a few talking frames of it, VP8 and
        Opus encoders (thrown away: a visit makes its own) encode them. Nothing is sent; the
        session goes back to the avatar reset, as its spare; the TTS's counters restart.

        Measured (tests/serve/test_worker_warm.py, a typed question, 2-core machine at load 3):
        the first answer grew the worker 109-152 MiB without it, 23-34 MiB with it (later
        answers +1..10 either way); load_s +0.9 s (median 6.9 -> 7.7 s), RSS at ready +107 MiB.
        It does not move the first answer's server times (tts_first, first_frame): the arena
        grows on the answer's long chunk, spoken while the short first one plays. (A visit's
        first answer started 70-220 ms later than its next ones with and without it; in-process,
        without a peer connection, it did not: that is elsewhere in the visit's media path.)"""
        import numpy as np

        from huma_rt.serve.encode import OpusStream, Vp8Config, Vp8Stream, to_s16
        from huma_rt.speech.tts import TtsStats

        t0 = time.perf_counter()
        pcm = np.concatenate([p for p, _ in self.tts.stream_chunks([WARM_TEXT])])
        self.tts.stats = TtsStats()
        spf = int(self.avatar.encoder_config.samples_per_frame)
        talk = pcm[pcm.size // 2 :][: WARM_FRAMES * spf]  # mid-sentence: the mouth moves
        vp8 = Vp8Stream(Vp8Config(settle_frames=1))  # settle 1: its display-only frame is made too
        # avatar.render takes the avatar's spare session and gives it back reset (its spare again)
        for i, frame in enumerate(self.avatar.render(talk)):
            vp8.encode(frame.rgb, i / self.avatar.fps)
        for i in (1, 2):  # the last picture again: the second time it is held (display-only)
            vp8.encode(frame.rgb, (WARM_FRAMES + i) / self.avatar.fps, same=True)
        opus = OpusStream()
        s16 = to_s16(pcm[: 25 * opus.frame])
        for i in range(0, s16.size, opus.frame):
            opus.encode(s16[i : i + opus.frame], i)
        log.info("warmed an answer's path in %.2f s", time.perf_counter() - t0)


def moving_box(bundle, blink_mask=None, margin: float = 0.04) -> list[float]:
    """Where the avatar moves when it talks, for the page's frame-motion meter: [x0, y0, x1, y1]
    as fractions of the frame, the box of the dynamic Gaussians' centres at rest widened by
    ``margin`` of the frame (their splats reach past the centres) and clipped to it; the whole
    frame when none lies in front of the camera. A small face in a large frame (a trained avatar)
    moves few pixels of the whole picture: measured on this box, its mouth's first movement is
    seen. blink_mask [Nd] (Avatar.blink_mask): the box starts below the Gaussians a blink moves,
    where that leaves the mouth, so a blink is not taken for the answer's first movement."""
    import numpy as np

    cam = bundle.camera
    means = np.asarray(bundle.arrays["means"], np.float64)[np.asarray(bundle.arrays["region"]) != 0]
    w2c = np.asarray(cam.world_to_camera, np.float64)
    p = means @ w2c[:3, :3].T + w2c[:3, 3]
    front = p[:, 2] > 1e-6
    p = p[front]
    if p.shape[0] == 0:
        return [0.0, 0.0, 1.0, 1.0]
    x = (cam.fx * p[:, 0] / p[:, 2] + cam.cx) / cam.width
    y = (cam.fy * p[:, 1] / p[:, 2] + cam.cy) / cam.height
    box = np.clip([x.min() - margin, y.min() - margin, x.max() + margin, y.max() + margin], 0.0, 1.0)
    if blink_mask is not None:
        eyes = np.asarray(blink_mask)[front] > 0
        if eyes.any() and (~eyes).any():
            # the lowest Gaussian a blink moves, its splat's reach and the lid's travel (the
            # demo's shut lids draw to 0.3184 of the frame, its lowest centre + margin is 0.3189)
            below = y[eyes].max() + 2 * margin
            if below < box[3] - 0.1:  # leaves room for the mouth
                box[1] = max(box[1], below)
    if box[2] - box[0] < 0.05 or box[3] - box[1] < 0.05:  # off screen, or a degenerate sliver
        return [0.0, 0.0, 1.0, 1.0]
    return [round(float(v), 4) for v in box]


class _Channel:
    """Events for the page over the data channel; sent from any thread, kept (bounded) until open.
    ``hello``: more of what the 'open' event tells the page (where the avatar moves)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, hello: dict | None = None) -> None:
        self.loop = loop
        self.hello = dict(hello or {})
        self.dc = None
        self.pending: list[str] = []
        self.events: list[dict] = []  # the last few, for the 'ended' report

    def emit(self, event: dict) -> None:
        event.setdefault("t", round(time.time() * 1000))
        text = json.dumps(event)
        try:
            self.loop.call_soon_threadsafe(self._send, text)
        except RuntimeError:
            pass

    def _send(self, text: str) -> None:
        if self.dc is not None and self.dc.readyState == "open":
            for old in self.pending:
                self.dc.send(old)
            self.pending.clear()
            self.dc.send(text)
        elif len(self.pending) < 200:
            self.pending.append(text)

    def attach(self, dc) -> None:
        self.dc = dc
        hello = json.dumps({"type": "open", **self.hello})
        if dc.readyState == "open":  # a channel the page made is open when aiortc announces it
            self._send(hello)
            return

        @dc.on("open")
        def _open() -> None:
            self._send(hello)


def _loopback_candidates_only() -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; a server bound to loopback offers
    exactly that address (the media never leaves the machine, and Chrome, run with
    --allow-loopback-in-peer-connection, reaches it)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


class _Visit:
    def __init__(self, cfg: WorkerConfig, models: _Models, send) -> None:
        self.cfg, self.models, self.send = cfg, models, send
        self.done = asyncio.Event()
        self.reason = ""
        self.last_media = time.monotonic()
        self.pc = self.conversation = self.media = None
        self.tasks: list[asyncio.Task] = []

    def end(self, reason: str) -> None:
        if not self.done.is_set():
            self.reason = reason
            self.done.set()

    async def answer(self, offer: dict) -> dict:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from huma_rt.serve.conversation import Conversation
        from huma_rt.serve.peer import AvatarMedia, MediaClock, quicken_microphone, read_microphone

        loop = asyncio.get_running_loop()
        self.channel = _Channel(loop, {"moving_box": self.models.moving_box})
        pc = self.pc = RTCPeerConnection()
        m = self.models
        # the media object is made once the codecs are negotiated; the frame clock starts after
        self.conversation = Conversation(m.avatar, m.tts, m.responder, m.asr, lambda *a, **k: self.media.push(*a, **k),
                                         self.channel.emit, m.conversation)  # fmt: skip
        self.conversation.on_rebase = lambda dt: loop.call_soon_threadsafe(self.media.clock.slip, dt)
        self.conversation.on_cut = lambda: loop.call_soon_threadsafe(self.media.silence_queued)

        @pc.on("datachannel")
        def _on_dc(dc) -> None:
            self.channel.attach(dc)

            @dc.on("message")
            def _on_message(message) -> None:
                self._page_message(message)

        @pc.on("track")
        def _on_track(track) -> None:
            if track.kind == "audio":
                self.tasks.append(asyncio.ensure_future(
                    read_microphone(track, self.conversation.push_mic, self._media_seen)))  # fmt: skip

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            log.info("peer connection %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self.end(f"peer connection {pc.connectionState}")

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        kinds = {t.kind for t in pc.getTransceivers()}
        if "video" not in kinds or "audio" not in kinds:
            raise InputError(f"the offer must have an audio and a video section; got {sorted(kinds)}")
        quicken_microphone(pc)
        video = next(t for t in pc.getTransceivers() if t.kind == "video")
        codecs = getattr(video, "_codecs", None) or []  # what setRemoteDescription negotiated
        encode = self.cfg.media == "packets" and bool(codecs) and codecs[0].mimeType.lower() == "video/vp8"
        if self.cfg.media == "packets" and not encode:
            log.warning("the browser's video codec is %s, not VP8: aiortc encodes every frame",
                        codecs[0].mimeType if codecs else "unknown")  # fmt: skip
        clock = MediaClock(MEDIA_SLACK_S, self.cfg.audio_slack_s)
        self.media = AvatarMedia(loop, fps=int(self.models.avatar.fps), clock=clock, encode=encode)
        if self.cfg.audio_slack_s is not None:
            self.conversation.audio_sink = self.media.push_audio
        pc.addTrack(self.media.audio)  # attaches to the offer's audio section (the microphone's)
        self.media.bind(pc.addTrack(self.media.video))
        self.conversation.retract = self.media.retract  # an answer may take over an unsent idle frame
        await pc.setLocalDescription(await pc.createAnswer())
        self.conversation.start()
        self.tasks.append(asyncio.ensure_future(self._watch()))
        return {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}

    def _media_seen(self) -> None:
        self.last_media = time.monotonic()

    def _page_message(self, message) -> None:
        try:
            msg = json.loads(message)
        except (TypeError, ValueError):
            self.channel.emit({"type": "error", "message": "messages must be JSON objects"})
            return
        if isinstance(msg, dict) and msg.get("type") == "text":
            try:
                self.conversation.ask(str(msg.get("text", "")))
            except InputError as exc:
                self.channel.emit({"type": "error", "message": str(exc)})
        elif isinstance(msg, dict) and msg.get("type") == "leave":  # the page is closing
            self.end("the page left")
        elif isinstance(msg, dict) and msg.get("type") == "ping":
            self.channel.emit({"type": "pong", "id": msg.get("id"), "server_t": time.time() * 1000})

    async def _watch(self) -> None:
        """End the visit when the page's media stops or nobody speaks for idle_timeout_s."""
        cfg = self.cfg
        started = time.monotonic()
        while not self.done.is_set():
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now - self.last_media > cfg.gone_after_s and now - started > cfg.gone_after_s + CONNECT_GRACE_S:
                self.end(f"no media from the page for {cfg.gone_after_s:.0f} s")
            elif now - self.conversation.last_activity > cfg.idle_timeout_s:
                self.channel.emit({"type": "bye", "reason": f"idle for {cfg.idle_timeout_s:.0f} s"})
                await asyncio.sleep(0.2)
                self.end("idle timeout")
            elif self.conversation.stopped:
                self.end("the avatar stopped")

    async def close(self) -> dict:
        stats = {}
        if self.conversation is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.conversation.stop)
            stats = dict(self.conversation.stats)
        if self.media is not None:
            self.media.close()
            stats["dropped"] = self.media.dropped
            stats["video"] = self.media.video_stats
        for t in self.tasks:
            t.cancel()
        if self.pc is not None:
            await self.pc.close()
        return stats


async def _serve(cfg: WorkerConfig, models: _Models, send) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    visit = _Visit(cfg, models, send)

    async def commands() -> None:
        while True:
            line = await reader.readline()
            if not line:
                visit.end("server gone")
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("op") == "stop":
                visit.end("stopped by the server")
                return
            if msg.get("op") == "offer" and visit.pc is None:
                try:
                    send({"event": "answer", **await visit.answer(msg)})
                except Exception as exc:  # a bad offer ends this worker; the server says 400
                    send({"event": "offer_error", "message": f"{type(exc).__name__}: {exc}"})
                    visit.end("bad offer")
                    return

    task = asyncio.ensure_future(commands())
    await visit.done.wait()
    task.cancel()
    stats = await visit.close()
    send({"event": "ended", "reason": visit.reason, "stats": stats})


def _few_malloc_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` glibc malloc arenas in this process (mallopt M_ARENA_MAX), set before
    any thread starts. glibc gives threads their own arenas (up to 8 per core); each answer runs
    on new threads (the turn, the responder), whose first large allocations (Piper's onnxruntime
    arena, frame buffers) then landed in memory the warm-up had not touched. Measured
    (tests/serve/test_worker_warm.py, warmed worker): a first answer grew the worker 22-35 MiB
    with glibc's default (7 runs; once 68 in CI), 14-50, median 18, with 2 arenas (7 runs: a
    spike of ~30 MiB in 2 of them is left, cause not found); RSS at ready unchanged; unwarmed
    +109. A no-op where the C library is not glibc."""
    import ctypes

    m_arena_max = -8
    try:
        ctypes.CDLL("libc.so.6").mallopt(m_arena_max, arenas)
    except (OSError, AttributeError):
        log.debug("no glibc mallopt here; malloc arenas left as they are")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _few_malloc_arenas()
    out = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's own copy of stdout
    os.dup2(2, 1)  # anything else printed goes to stderr

    def send(event: dict) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    try:
        cfg = WorkerConfig(**json.loads(argv[0]))
        logging.basicConfig(level=cfg.log_level, format=f"%(levelname)s worker {os.getpid()} %(name)s: %(message)s")
        t0 = time.perf_counter()
        models = _Models(cfg)
        if cfg.loopback:
            _loopback_candidates_only()
        send({"event": "ready", "pid": os.getpid(), "load_s": round(time.perf_counter() - t0, 3)})
    except (HumaError, TypeError, ValueError, IndexError) as exc:
        send({"event": "failed", "message": str(exc)})
        return 1
    asyncio.run(_serve(cfg, models, send))
    return 0


if __name__ == "__main__":
    sys.exit(main())
