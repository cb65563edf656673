"""The media side of one visitor's peer connection (aiortc): avatar tracks out, microphone in.

Both outgoing tracks are paced by one :class:`MediaClock`: the frame with pts ``t`` leaves at the
wall time ``t0 + t`` and the audio samples of ``[t, t + 1/fps)`` at ``t0 + t - audio_lead_s``
(0 unless the clock gives the audio a shorter slack than the picture, which needs drawing).
aiortc stamps each track's RTCP sender reports with the wall time of its last packet, so pacing
both from one clock is what lets the browser line them up (aiortc puts both tracks in one stream
and Chrome lip-syncs them), and the audio lead moves the sound that much ahead of its picture.

Queues are bounded: the frame clock never waits for the network. A consumer that falls behind
(slow encoder, congested client) loses frames (``dropped`` counters), never memory: the oldest
raw frames when aiortc encodes, the newest before they are encoded when the worker does
(huma_rt.serve.encode; an encoded frame cannot be dropped: the next ones are predicted from it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import InputError
from huma_rt.serve.encode import OpusStream, Vp8Config, Vp8Stream, to_s16

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_RATE = 16000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
AUDIO_FRAME = 320  # 20 ms at 16 kHz: the packet size WebRTC audio is sent in
MAX_MIC_BACKLOG = 25  # decoded 20 ms microphone frames waiting at most (0.5 s)


class MediaClock:
    """The wall time at which stream time 0 plays (``t0``, time.perf_counter() seconds).

    Set by the first frame (``start``): ``delay_s`` after the frame clock's tick for it was due
    (or, without the tick's time, after the frame was made). That is all the time a frame has to
    be drawn and encoded before it is late (measured on the 2-core machine at load 5: drawing an
    answer frame 19-28 ms, VP8 5-10 ms); every answer reaches the visitor that much after its
    tick. Anchored at the tick, not at the first frame's making as before: the first frame's draw
    time (~24 ms) was added to every frame after it, on top of the 60 ms then allowed.
    ``slip(dt)`` (the frame clock fell ``dt`` behind: an overloaded host) re-anchors it at the
    next frame, and never earlier than it was, so both tracks slow down together. Re-anchoring
    rather than adding ``dt``: a clock first set by a frame that was itself late (the first
    frame, whose encoder opens) already holds that lateness, and adding it again made every
    later frame wait ``dt`` too long in a 4-frame queue that then dropped frames.

    ``audio_delay_s`` (default: ``delay_s``): the audio's own slack after the tick. Audio needs
    no drawing, so a caller that hands each frame's audio over before drawing the frame
    (``AvatarMedia.push_audio``) lets it leave ``delay_s - audio_delay_s`` before its picture.
    aiortc stamps each track's sender reports with the wall time its packets left, so the
    browser sees that audio as captured that much sooner and plays it that much sooner
    relative to the picture (measured: the picture was ahead of its sound; see docs/serve.md).
    """

    def __init__(self, delay_s: float = 0.05, audio_delay_s: float | None = None) -> None:
        audio_delay_s = delay_s if audio_delay_s is None else audio_delay_s
        if not 0.0 <= audio_delay_s <= delay_s:
            raise InputError(f"audio_delay_s must be in [0, delay_s={delay_s}] seconds; got {audio_delay_s}")
        self.delay_s = delay_s
        self.audio_delay_s = audio_delay_s
        self.t0: float | None = None
        self._reanchor = False

    @property
    def audio_lead_s(self) -> float:
        """How much sooner than its picture a frame's audio leaves (``delay_s - audio_delay_s``)."""
        return self.delay_s - self.audio_delay_s

    def start(self, pts: float, made: float | None = None) -> None:
        """Called with each frame (its tick due, or made, at ``made``, perf_counter s; default
        now): sets t0 on the first, or after ``slip``."""
        if self.t0 is None or self._reanchor:
            t0 = (time.perf_counter() if made is None else made) + self.delay_s - pts
            self.t0 = t0 if self.t0 is None else max(self.t0, t0)
            self._reanchor = False

    def slip(self, dt: float) -> None:
        if self.t0 is not None and dt > 0:
            self._reanchor = True

    async def wait(self, pts: float) -> None:
        """Sleep until stream time ``pts`` is due (returns at once when late)."""
        if self.t0 is None:
            return
        delay = self.t0 + pts - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


class _Outbox:
    """A bounded FIFO filled from another thread (through the loop) and read by one track.

    ``queued_at`` keeps each item's arrival (perf_counter s) in step with ``items``: items are
    replaced in place (barge-in silence) but only added and removed through these methods."""

    def __init__(self, maxlen: int) -> None:
        self.items: deque = deque(maxlen=maxlen)
        self.queued_at: deque[float] = deque(maxlen=maxlen)
        self.dropped = 0
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, item) -> None:  # on the event loop
        """Append, dropping the oldest when full."""
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
        self._append(item)

    def offer(self, item) -> bool:  # on the event loop
        """Append unless full (-> False: the item was dropped). For encoded video: dropping a
        queued frame would break the chain of frames that the next ones are predicted from."""
        if len(self.items) == self.items.maxlen:
            self.dropped += 1
            return False
        self._append(item)
        return True

    def _append(self, item) -> None:
        self.items.append(item)
        self.queued_at.append(time.perf_counter())
        self.ready.set()

    def popleft(self) -> None:
        self.items.popleft()
        self.queued_at.popleft()

    def pop(self) -> None:
        self.items.pop()
        self.queued_at.pop()

    async def peek(self):
        """The oldest item, left in place (None: closed and empty)."""
        while not self.items:
            if self.closed:
                return None
            self.ready.clear()
            await self.ready.wait()
        return self.items[0]

    def close(self) -> None:
        self.closed = True
        self.ready.set()


def _track_base():
    return require("aiortc", "huma-rt serve (WebRTC)").MediaStreamTrack


class AvatarMedia:
    """The avatar's video and audio tracks, fed by the frame clock's thread through ``push``.

    video_queue: frames waiting for the encoder at most (4 = 160 ms at 25 fps); audio_queue:
    20 ms packets at most (50 = 1 s). ``push`` copies the frame (the session overwrites it).
    With ``encode``, Opus is encoded in ``push`` and VP8 on a thread of its own (``huma-encode``,
    in order), so that the next frame is drawn while this one is encoded, as aiortc does it; a
    frame that would overfill the queue is dropped before it is encoded, never after (the next
    frames are predicted from it).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fps: int, clock: MediaClock | None = None,
                 video_queue: int = 4, audio_queue: int = 50, encode: bool = True,
                 vp8: Vp8Config | None = None) -> None:  # fmt: skip
        av = require("av", "huma-rt serve (video frames)")
        self._av = av
        self.loop = loop
        self.fps = fps
        self.clock = clock or MediaClock()
        # encode: the tracks hand aiortc ready packets (huma_rt.serve.encode: an unchanged
        # picture is not re-encoded, audio leaves when due); else frames that aiortc encodes
        self.encode = encode
        self._vp8 = Vp8Stream(vp8) if encode else None
        self._opus = OpusStream(frame=AUDIO_FRAME) if encode else None
        self._silent = _silent_opus() if encode else None
        self._video_sender = None
        self._handed = self._delivered = 0  # video frames given to the encoder / queued by the loop
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="huma-encode") if encode else None
        self._ring: list[np.ndarray] = []  # copies of the pictures being encoded (video_queue + 2)
        self._video = _Outbox(video_queue)
        self._audio = _Outbox(audio_queue)
        self.video = _make_track("video", self._video, self.clock, lead=not encode)
        self.audio = _make_track("audio", self._audio, self.clock, lead=not encode, early=True)
        self.pushed = 0
        self._prev: np.ndarray | None = None  # the last picture handed to the encoder (None: dropped)
        self._idle_opus: bytes | None = None  # the packet libopus settled on for digital silence
        self._silent_run: tuple[bytes | None, int] = (None, 0)  # last silent packet, repeats
        self._still_pts: float | None = None  # pts of the last queued video packet, if a resent one
        self.retracted = 0  # idle frames taken back for an answer's first frame (``retract``)
        self.not_retracted = {"busy": 0, "no_time": 0, "sent": 0}  # why not (see ``_retract_now``)

    def bind(self, video_sender) -> None:
        """Route the browser's keyframe requests (RTCP PLI/FIR) and bitrate estimates (REMB) to
        our encoder. aiortc applies both only to frames it encodes itself: for packets it calls
        ``sender._send_keyframe()`` (replaced here, per instance) and sets ``target_bitrate`` on
        its own encoder object, which ``push`` reads."""
        if self._vp8 is None:
            return
        self._video_sender = video_sender
        video_sender._send_keyframe = self._vp8.request_keyframe

    @property
    def video_stats(self) -> dict:
        """Video frames encoded, resent without encoding (an unchanged picture), keyframes, the
        browser's keyframe requests and encoder restarts (a new bitrate); and how late both
        tracks' packets were ready (queued for their track) against the media clock (``late``:
        per track, items sent, how many were ready more than 5 / 20 ms after they were due, the
        latest in ms): the media clock's ``delay_s`` is too short where many are. And how many
        left more than 20 ms after they were due (``left_late_20ms``): those ready late, and
        those ready in time that the event loop was too busy to hand over."""
        v = self._vp8
        late = {"video": self.video.lateness, "audio": self.audio.lateness}
        return {"late": late} if v is None else {"encoded": v.encoded, "held": v.held, "keyframes": v.keyframes,
                                                 "keyframe_requests": v.requests, "restarts": v.restarts,
                                                 "transient": v.transient, "late": late}  # fmt: skip

    @property
    def dropped(self) -> dict[str, int]:
        return {"video": self._video.dropped, "audio": self._audio.dropped}

    def push(self, index: int, pts: float, rgb: np.ndarray, audio: np.ndarray | None, due: float | None = None,
             still: bool = False, transient: bool = False) -> None:  # fmt: skip
        """Called on the frame clock's thread with one frame and the 16 kHz samples it shows
        (rgb None: no new picture, the frame clock is behind; only the audio is sent; audio None:
        it went ahead through ``push_audio``). due: when
        the frame clock's tick for it was due (perf_counter s; None: now), what the media clock
        is anchored to. still: ``rgb`` is the very array of the previous push and the caller
        never changes it (the idle rest pose): it is neither copied nor compared again.
        transient: shown once, the still picture comes back after it (a blink; ``Vp8Stream``)."""
        av = self._av
        made = time.perf_counter() if due is None else due
        vf = None
        if self.encode:
            if rgb is not None and len(self._video.items) + self._handed - self._delivered >= self._video.items.maxlen:
                self._video.dropped += 1  # the sender is behind: not encoded (the chain stays whole)
            elif rgb is not None:
                # the same unchanged array as the last picture the encoder got: the encoder
                # needs no copy and no comparison (only the display-only packet is resent)
                same = still and rgb is self._prev
                if not same:
                    if not self._ring or self._ring[0].shape != rgb.shape:
                        self._ring = [np.empty_like(rgb) for _ in range(self._video.items.maxlen + 2)]
                    slot = self._ring[self._handed % len(self._ring)]
                    np.copyto(slot, rgb)
                try:
                    self._encoder.submit(self._encode_video, rgb if same else slot, pts, made, True if same else None,
                                         transient)  # fmt: skip
                    self._handed += 1
                    self._prev = rgb if still else None  # the caller only keeps a still picture
                except RuntimeError:  # closed: the visit is over
                    pass
            self._deliver_soon(vf, pts, self._audio_items(pts, audio), made)
            return
        if rgb is not None:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")  # copies
            vf.pts = round(pts * 90000)
            vf.time_base = VIDEO_TIME_BASE
        self._deliver_soon(vf, pts, self._audio_items(pts, audio), made)

    def push_audio(self, pts: float, audio: np.ndarray, due: float | None = None) -> None:
        """A frame's audio [spf] f32 16 kHz on its own, before its picture is drawn (the frame's
        ``push`` then gets ``audio=None``): it leaves at its time on the clock's audio slack
        (``MediaClock.audio_delay_s``), not after the drawing. due: as in ``push``."""
        made = time.perf_counter() if due is None else due
        try:
            self.loop.call_soon_threadsafe(self._deliver, None, pts, self._audio_items(pts, audio), made)
        except RuntimeError:  # the loop is closed: the visit is over
            pass

    def _audio_items(self, pts: float, audio: np.ndarray | None) -> list:
        """[(Opus packet or AudioFrame, seconds)] for the 20 ms pieces of ``audio`` (None: [])."""
        if audio is None:
            return []
        s16 = to_s16(audio)
        first = round(pts * AUDIO_RATE)
        items = []
        if self.encode:
            for i in range(0, s16.size - AUDIO_FRAME + 1, AUDIO_FRAME):
                packet = self._encode_audio(s16[i : i + AUDIO_FRAME], first + i)
                items.append((packet, packet.pts / AUDIO_RATE))  # leaves when its sound is due
            return items
        for i in range(0, s16.size, AUDIO_FRAME):
            af = self._av.AudioFrame.from_ndarray(s16[None, i : i + AUDIO_FRAME], format="s16", layout="mono")
            af.sample_rate = AUDIO_RATE
            af.pts = first + i
            af.time_base = AUDIO_TIME_BASE
            items.append((af, (first + i) / AUDIO_RATE))
        return items

    def _encode_audio(self, s16: np.ndarray, pts: int):
        """One 20 ms packet. Digital silence, once libopus has settled on one packet for it
        (the same bytes three times running), reuses that packet instead of running the
        encoder: the browser gets the very bytes it would have got. The encoder then starts
        the next sound from its state of a few silent frames ago, not of the whole silence:
        it codes it as well (bit choices differ, measured: the same SNR), and the decoder,
        which only saw identical packets, is in the state the encoder assumes."""
        opus = self._opus
        silent = not s16.any()
        if silent and self._idle_opus is not None:
            packet = self._av.Packet(self._idle_opus)
            packet.pts, packet.time_base = pts - opus.lookahead, AUDIO_TIME_BASE
            return packet
        packet = opus.encode(s16, pts)
        if not silent:
            self._silent_run = (None, 0)
            return packet
        data = bytes(packet)
        last, n = self._silent_run
        self._silent_run = (data, n + 1 if data == last else 1)
        if self._silent_run[1] >= 3:
            self._idle_opus = data
        return packet

    def _encode_video(self, rgb: np.ndarray, pts: float, made: float, same: bool | None = None,
                      transient: bool = False) -> None:  # fmt: skip
        try:  # on huma-encode
            self._follow_bitrate()
            held = self._vp8.held
            packet = self._vp8.encode(rgb, pts, same=same, transient=transient)
            resent = self._vp8.held > held
        except Exception:
            log.exception("VP8 encoding failed")
            self._vp8.request_keyframe()
            packet, resent = None, False  # nothing to send; the loop still counts the frame as delivered
        try:
            self.loop.call_soon_threadsafe(self._deliver_video, packet, pts, made, resent)
        except RuntimeError:  # the loop is closed: the visit is over
            pass

    def _deliver_soon(self, vf, pts: float, packets, made: float) -> None:
        self.pushed += 1
        try:
            self.loop.call_soon_threadsafe(self._deliver, vf, pts, packets, made)
        except RuntimeError:  # the loop is closed: the visit is over
            pass

    def _deliver(self, vf, pts: float, packets, made: float) -> None:
        self.clock.start(pts, made)
        if vf is not None and not self.encode:
            self._video.put((vf, pts))
        for p in packets:
            self._audio.put(p)

    def _deliver_video(self, packet, pts: float, made: float, resent: bool = False) -> None:
        """A packet from the encoder thread (None: its encoding failed) onto the video queue."""
        self.clock.start(pts, made)
        self._delivered += 1
        if packet is not None and not self._video.offer((packet, pts)):  # push counts, so never: restart the chain
            self._vp8.request_keyframe()
        elif packet is not None:
            self._still_pts = pts if resent else None

    def retract(self, pts: float, need_s: float, timeout_s: float = 0.01) -> bool:
        """From the frame clock's thread: take back the idle frame at ``pts`` (the last one
        pushed) and its silent audio, if none of it has left yet and ``need_s`` seconds remain
        before its audio is due; -> True: it is gone and the next ``push`` may reuse ``pts``.

        An answer that arrives just after a tick then starts at that tick's frame instead of
        the next one (up to a frame period sooner) with no jump in either track's timestamps.
        Only a resent display-only video packet (it changes no decoder state) and digital-
        silence audio are taken back, so what the browser gets is what it would have got from
        an answer that started one tick earlier. Waits at most ``timeout_s`` for the loop (no
        retraction after that)."""
        if not self.encode:
            return False
        done: concurrent.futures.Future = concurrent.futures.Future()
        lock = threading.Lock()
        abandoned = []

        def on_loop() -> None:
            with lock:
                if abandoned:
                    return
                done.set_result(self._retract_now(pts, need_s))

        try:
            self.loop.call_soon_threadsafe(on_loop)
            return done.result(timeout_s)
        except (RuntimeError, concurrent.futures.TimeoutError):
            with lock:
                abandoned.append(True)
                return done.done() and done.result()

    def _retract_now(self, pts: float, need_s: float) -> bool:  # on the event loop
        video, audio = self._video.items, self._audio.items
        eps = 1e-6
        if (self._handed != self._delivered or not video or self._still_pts is None
                or abs(video[-1][1] - pts) > eps or abs(self._still_pts - pts) > eps):  # fmt: skip
            self.not_retracted["busy"] += 1
            return False  # not encoded yet, not a resent packet, or already gone
        first = pts - self._opus.lookahead / AUDIO_RATE  # its first audio packet's time
        if self.clock.t0 is None or self.clock.t0 - self.clock.audio_lead_s + first - time.perf_counter() < need_s:
            self.not_retracted["no_time"] += 1
            return False  # the answer's frame could not be drawn in time: it would leave late
        tail = [p for p, t in audio if t >= first - eps]
        if len(tail) != round(1 / self.fps * AUDIO_RATE) // AUDIO_FRAME or self._idle_opus is None \
                or any(bytes(p) != self._idle_opus for p in tail):  # fmt: skip
            self.not_retracted["sent"] += 1
            return False  # some of its audio left already, or it is not the idle silence
        self._video.pop()
        for _ in tail:
            self._audio.pop()
        self._still_pts = None
        self._prev = None
        self.retracted += 1
        return True

    def silence_queued(self) -> None:
        """Barge-in: audio packets not yet sent are replaced by silence of the same length and
        time (dropping them would shift the audio against the video: Opus counts samples)."""
        if self.encode:
            for i, (packet, pts) in enumerate(self._audio.items):
                quiet = self._av.Packet(self._silent)
                quiet.pts, quiet.time_base = packet.pts, packet.time_base
                self._audio.items[i] = (quiet, pts)
            return
        for i, (frame, pts) in enumerate(self._audio.items):
            quiet = self._av.AudioFrame.from_ndarray(np.zeros((1, frame.samples), np.int16), format="s16",
                                                     layout="mono")  # fmt: skip
            quiet.sample_rate, quiet.pts, quiet.time_base = frame.sample_rate, frame.pts, frame.time_base
            self._audio.items[i] = (quiet, pts)

    def _follow_bitrate(self) -> None:
        enc = getattr(self._video_sender, "_RTCRtpSender__encoder", None)  # aiortc's, fed by REMB
        rate = getattr(enc, "target_bitrate", None)
        if rate:
            self._vp8.target_bitrate = rate

    def close(self) -> None:
        self._video.close()
        self._audio.close()
        if self._encoder is not None:
            self._encoder.shutdown(wait=False, cancel_futures=True)


def _silent_opus() -> bytes:
    """One 20 ms Opus packet of silence (what a barge-in puts in place of queued answer audio)."""
    enc = OpusStream(frame=AUDIO_FRAME)
    zeros = np.zeros(AUDIO_FRAME, np.int16)
    for k in range(3):  # past the encoder's first frames
        data = bytes(enc.encode(zeros, k * AUDIO_FRAME))
    return data


def _make_track(kind: str, outbox: _Outbox, clock: MediaClock, lead: bool = True, early: bool = False):
    base = _track_base()
    errors = require("aiortc.mediastreams", "huma-rt serve (WebRTC)")

    class _PacedTrack(base):
        """Returns each frame when its time on the clock comes, less the time the encoder
        takes (measured: from one recv() returning to the next being called): aiortc stamps
        its sender reports with the wall time a frame's packets left, so video must leave when
        its audio does, not an encode later. Packets (already encoded, ``lead`` False) are
        returned when their time comes. ``early`` (the audio track): its time is the clock's
        less ``audio_lead_s``."""

        def __init__(self) -> None:
            super().__init__()
            self.kind = kind
            self.encode_s = 0.0  # moving average of the encoder's time per frame
            self._returned: float | None = None
            self.lateness = {"sent": 0, "late_5ms": 0, "late_20ms": 0, "max_ms": 0.0, "left_late_20ms": 0}

        async def recv(self):
            if lead and self._returned is not None:
                took = time.perf_counter() - self._returned
                self.encode_s = min(0.9 * self.encode_s + 0.1 * took, 0.1)
            # The item stays queued until its time has come: until then it may still be taken
            # back (AvatarMedia.retract), replaced (barge-in silence) or dropped (a full queue);
            # then the new head is waited for.
            while True:
                item = await outbox.peek()
                if item is None:
                    self.stop()
                    raise errors.MediaStreamError
                # ready when it was queued: a recv() called late (the loop stalled) is not the
                # item's lateness
                ready = outbox.queued_at[0]
                frame, pts = item
                ahead = clock.audio_lead_s if early else 0.0
                await clock.wait(pts - ahead - self.encode_s)
                if outbox.items and outbox.items[0] is item:
                    outbox.popleft()
                    break
            if clock.t0 is not None:  # ready after its time? (the clock's slack was too short)
                late_ms = 1000 * (ready - clock.t0 - pts + ahead)
                c = self.lateness
                c["sent"] += 1
                c["late_5ms"] += late_ms > 5
                c["late_20ms"] += late_ms > 20
                c["max_ms"] = round(max(c["max_ms"], late_ms), 1)
                c["left_late_20ms"] += time.perf_counter() - clock.t0 - pts + ahead > 0.02
            self._returned = time.perf_counter()
            return frame

    return _PacedTrack()


async def read_microphone(track, push, on_frame=None) -> None:
    """Browser microphone track -> ``push(pcm 16 kHz mono float32, arrival time)`` until it ends.

    aiortc hands 20 ms of Opus decoded to 48 kHz s16; PyAV's resampler turns it into 16 kHz mono
    float. ``on_frame`` (optional) is called for every frame (the visitor is still there).
    """
    av = require("av", "huma-rt serve (audio)")
    errors = require("aiortc.mediastreams", "huma-rt serve (WebRTC)")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    # aiortc queues decoded frames without bound; a reader starved of CPU would fall ever
    # further behind (and keep a vanished visitor looking alive while it drains the backlog)
    backlog = getattr(track, "_queue", None)
    dropped = 0
    while True:
        try:
            frame = await track.recv()
        except errors.MediaStreamError:
            return
        if backlog is not None and backlog.qsize() > MAX_MIC_BACKLOG:
            while backlog.qsize() > 2:
                backlog.get_nowait()
                dropped += 1
            log.warning("microphone reader fell behind: %d frames dropped so far", dropped)
        arrived = time.perf_counter()
        if on_frame is not None:
            on_frame()
        for out in resampler.resample(frame):
            pcm = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            if pcm.size:
                push(pcm, arrived)


class ArrivalOrderAudio:
    """aiortc's receive jitter buffer (``add(packet) -> (pli, frame)``) for audio, without the
    waiting: every packet is a whole Opus frame and is handed to the decoder as it arrives.

    aiortc's ``JitterBuffer`` only knows a frame is complete when a packet of the next one
    arrives, so even with ``prefetch=1`` each 20 ms packet waited for the next (20 ms more before
    the VAD hears the end of speech), and a lost packet held everything behind it until 16 more
    had queued (320 ms). Here a packet older than one already handed on (reordered, duplicated)
    is dropped: a speech detector wants the newest audio, and Opus decodes each packet alone.
    """

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity  # aiortc's own buffer has one; nothing here depends on it
        self._last: int | None = None  # sequence number handed on last
        self.dropped = 0

    def add(self, packet):
        """-> (False: never asks for a keyframe, the ``JitterFrame`` of this packet or None)."""
        from aiortc.jitterbuffer import JitterFrame

        seq = packet.sequence_number
        if self._last is not None and (seq == self._last or (seq - self._last) % 65536 >= 32768):
            self.dropped += 1
            return False, None
        self._last = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


def quicken_microphone(pc) -> bool:
    """Hand the microphone's packets on as they arrive instead of four behind.

    aiortc's audio receiver keeps a jitter buffer that releases a 20 ms packet only once four
    more are queued (``prefetch=4``): 80 ms added to every spoken turn before the VAD hears its
    end (measured 63-94 ms from the page's microphone to the server). Its buffer is replaced by
    :class:`ArrivalOrderAudio` (no wait at all; ``prefetch=1`` still waited one packet, 20 ms).
    aiortc has no option for it; returns False (and logs) when this aiortc has no such buffer to
    replace.
    """
    from aiortc.jitterbuffer import JitterBuffer

    done = False
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if transceiver.kind != "audio" or receiver is None:
            continue
        old = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
        if not isinstance(old, JitterBuffer):
            log.warning("this aiortc's audio receiver has no jitter buffer to replace; the microphone "
                        "stays 80 ms behind")  # fmt: skip
            return False
        receiver._RTCRtpReceiver__jitter_buffer = ArrivalOrderAudio(old.capacity)
        done = True
    return done
