"""A visit's end conditions and the media outboxes, without a browser: the page vanished (its
media stopped), the idle timeout, and bounded queues toward a slow consumer."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from huma_rt.serve import worker
from huma_rt.serve.worker import WorkerConfig, _Visit

pytest.importorskip("aiortc")


class _Conv:
    def __init__(self, idle_for: float) -> None:
        self.last_activity = time.monotonic() - idle_for
        self.stopped = False


class _Channel:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)


def _watch(cfg: WorkerConfig, conv: _Conv, media_age: float) -> tuple[str, list[dict]]:
    async def run():
        visit = _Visit(cfg, None, lambda msg: None)
        visit.conversation, visit.channel = conv, _Channel()
        visit.last_media = time.monotonic() - media_age
        await asyncio.wait_for(visit._watch(), 10)
        return visit.reason, visit.channel.events

    return asyncio.run(run())


def test_a_vanished_page_ends_the_visit(monkeypatch):
    monkeypatch.setattr(worker, "CONNECT_GRACE_S", 0.0)
    reason, _ = _watch(WorkerConfig(bundle="b", gone_after_s=0.2), _Conv(0.0), media_age=1.0)
    assert reason == "no media from the page for 0 s"


def test_idle_timeout_says_bye_and_ends_the_visit():
    reason, events = _watch(WorkerConfig(bundle="b", idle_timeout_s=1.0), _Conv(idle_for=5.0), media_age=0.0)
    assert reason == "idle timeout"
    assert events == [{"type": "bye", "reason": "idle for 1 s"}]


@pytest.mark.parametrize("encode", [True, False], ids=["packets", "frames"])
def test_a_slow_consumer_loses_frames_not_memory(encode):
    from huma_rt.serve.peer import AvatarMedia

    async def run():
        media = AvatarMedia(asyncio.get_running_loop(), fps=25, video_queue=4, audio_queue=50, encode=encode)
        rgb = np.zeros((64, 64, 3), np.uint8)
        audio = np.zeros(640, np.float32)

        def produce():  # the frame clock's thread; nobody reads the tracks
            for i in range(200):
                media.push(i, i / 25, rgb, audio)

        t = threading.Thread(target=produce)
        t.start()
        t.join()
        await asyncio.sleep(0.1)  # deliveries run on the loop
        return media

    media = asyncio.run(run())
    assert len(media._video.items) == 4 and media._video.dropped == 196
    assert len(media._audio.items) == 50 and media._audio.dropped == 350


@pytest.mark.parametrize("encode", [True, False], ids=["packets", "frames"])
def test_tracks_leave_on_one_clock(encode):
    from huma_rt.serve.peer import AvatarMedia

    async def run():
        media = AvatarMedia(asyncio.get_running_loop(), fps=25, encode=encode)
        rgb = np.zeros((64, 64, 3), np.uint8)
        for i in range(3):
            media.push(i, i / 25, rgb, np.zeros(640, np.float32))
        await asyncio.sleep(0.01)
        got = []

        async def pull(track, n, scale):  # as aiortc does: one sender loop per track
            for _ in range(n):
                f = await track.recv()
                got.append((track.kind, f.pts / scale, time.perf_counter() - media.clock.t0))

        await asyncio.gather(pull(media.video, 3, 90000), pull(media.audio, 6, 16000))
        return got

    for kind, pts, at in asyncio.run(run()):
        assert at >= pts - 0.002, f"{kind} at pts {pts:.3f} left early ({at:.3f})"
        assert at < pts + 0.5, f"{kind} at pts {pts:.3f} left late ({at:.3f})"


@pytest.mark.parametrize("encode", [True, False], ids=["packets", "frames"])
def test_audio_leaves_its_lead_before_its_picture(encode):
    """A clock with a shorter audio slack: audio handed over before its frame (push_audio, then
    push with audio=None) leaves delay_s - audio_delay_s before the picture of the same time."""
    from huma_rt.serve.peer import AvatarMedia, MediaClock

    async def run():
        media = AvatarMedia(asyncio.get_running_loop(), fps=25, clock=MediaClock(0.05, 0.01), encode=encode)
        rgb = np.zeros((64, 64, 3), np.uint8)
        due = time.perf_counter()
        for i in range(4):
            media.push_audio(i / 25, np.zeros(640, np.float32), due + i / 25)
            media.push(i, i / 25, rgb, None, due + i / 25)
        await asyncio.sleep(0.01)
        got = []

        async def pull(track, n, scale):
            for _ in range(n):
                f = await track.recv()
                got.append((track.kind, f.pts / scale, time.perf_counter() - due))

        await asyncio.gather(pull(media.video, 4, 90000), pull(media.audio, 8, 16000))
        return media, got

    media, got = asyncio.run(run())
    assert media.clock.audio_lead_s == pytest.approx(0.04)
    for kind, pts, at in got:
        want = pts + (0.05 if kind == "video" else 0.01)  # the packet's own pts (Opus: its look-ahead sooner)
        assert want - 0.002 <= at < want + 0.03, (kind, pts, at, want)
    assert sum(k == "audio" for k, *_ in got) == 8 and sum(k == "video" for k, *_ in got) == 4


def test_audio_slack_is_checked():
    from huma_rt.errors import InputError
    from huma_rt.serve.peer import MediaClock
    from huma_rt.serve.worker import WorkerConfig

    with pytest.raises(InputError, match="audio_delay_s must be in"):
        MediaClock(0.05, 0.06)
    with pytest.raises(InputError, match=r"audio_slack_s must be in \[0, 0.05\].*got -0.01"):
        WorkerConfig(bundle="x", audio_slack_s=-0.01)
    assert MediaClock(0.05).audio_lead_s == 0.0


def _decoded(items) -> list[np.ndarray]:
    """The queued audio as the browser would play it: frames as they are, packets through Opus."""
    import av

    if not items or isinstance(items[0][0], av.AudioFrame):
        return [f.to_ndarray().reshape(-1) / 32768.0 for f, _ in items]
    dec = av.CodecContext.create("libopus", "r")  # decodes to 48 kHz stereo s16, as a browser plays it
    return [np.concatenate([f.to_ndarray().reshape(-1) / 32768.0 for f in dec.decode(p)]) for p, _ in items]


@pytest.mark.parametrize("encode", [True, False], ids=["packets", "frames"])
def test_barge_in_silences_audio_not_yet_sent(encode):
    from huma_rt.serve.peer import AvatarMedia

    async def run():
        media = AvatarMedia(asyncio.get_running_loop(), fps=25, encode=encode)
        t = np.arange(640) / 16000
        loud = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
        for i in range(3):
            media.push(i, i / 25, np.zeros((8, 8, 3), np.uint8), loud)
        await asyncio.sleep(0.01)
        before = list(media._audio.items)
        before_pcm = _decoded(before)
        media.silence_queued()
        after = list(media._audio.items)
        return before, before_pcm, after

    before, before_pcm, after = asyncio.run(run())
    assert [(f.pts, t) for f, t in after] == [(f.pts, t) for f, t in before], "same packets, same times"
    assert max(np.abs(x).max() for x in before_pcm[1:]) > 0.3, "the answer was loud before the cut"
    assert all(np.abs(x).max() < 1e-3 for x in _decoded(after))


def test_microphone_packets_are_handed_on_as_they_arrive():
    from aiortc import RTCPeerConnection
    from aiortc.rtp import RtpPacket

    from huma_rt.serve.peer import quicken_microphone

    async def run():
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio")
            pc.addTransceiver("video")
            assert quicken_microphone(pc)
            audio = next(t for t in pc.getTransceivers() if t.kind == "audio")
            buf = audio.receiver._RTCRtpReceiver__jitter_buffer
            released = []
            # 20 ms Opus packets, one frame each: in order, 4 lost, 3 late (after 5), 5 twice,
            # and the sequence number wrapping past 65535 (packet 6)
            for k in [0, 1, 2, 3, 5, 3, 5, 6, 7]:
                packet = RtpPacket(sequence_number=(65530 + k) % 65536, timestamp=960 * k, payload=bytes([k]))
                packet._data = packet.payload  # what the receiver sets (the depacketized payload)
                _, frame = buf.add(packet)
                released.append(None if frame is None else (frame.timestamp // 960, frame.data[0]))
            # each packet leaves as it arrives (aiortc's own buffer held four, then one: it knows a
            # frame is whole only when the next one starts); a lost one holds nothing up
            assert released == [(0, 0), (1, 1), (2, 2), (3, 3), (5, 5), None, None, (6, 6), (7, 7)]
        finally:
            await pc.close()

    asyncio.run(run())


def test_a_page_that_leaves_ends_its_visit_at_once():
    async def run():
        visit = _Visit(WorkerConfig(bundle="b"), None, lambda msg: None)
        visit.conversation, visit.channel = _Conv(0.0), _Channel()
        visit._page_message('{"type": "ping", "id": 1}')
        assert not visit.done.is_set()
        visit._page_message('{"type": "leave"}')
        return visit

    visit = asyncio.run(run())
    assert visit.done.is_set() and visit.reason == "the page left"


@pytest.mark.parametrize("encode", [True, False], ids=["packets", "frames"])
def test_frames_behind_the_clock_send_their_audio_without_a_picture(encode):
    from huma_rt.serve.peer import AvatarMedia

    async def run():
        media = AvatarMedia(asyncio.get_running_loop(), fps=25, video_queue=8, audio_queue=50, encode=encode)
        rgb = np.zeros((64, 64, 3), np.uint8)
        audio = np.zeros(640, np.float32)
        for i in range(4):
            media.push(i, i / 25, None if i % 2 else rgb, audio)
        await asyncio.sleep(0.1)
        return media

    media = asyncio.run(run())
    assert [pts for _, pts in media._video.items] == [0.0, 2 / 25]
    assert len(media._audio.items) == 4 * 2  # two 20 ms packets per frame, none missing


def test_worker_config_names_a_bad_media_mode():
    from huma_rt.errors import InputError

    with pytest.raises(InputError, match="media must be 'packets' or 'frames'; got 'vp9'"):
        WorkerConfig(bundle="b", media="vp9")


def test_no_speculate_and_history_reach_the_workers_conversation(tmp_path):
    """huma-rt serve --no-speculate / --history N -> WorkerConfig -> the visit's ConversationConfig."""
    import argparse
    import json

    from huma_rt.errors import InputError
    from huma_rt.serve.cli import add_arguments, worker_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    bundle = tmp_path / "me.bundle"
    bundle.mkdir()
    for extra, want in (([], True), (["--no-speculate"], False)):
        cfg = worker_config(parser.parse_args(["--bundle", str(bundle), "--no-asr", *extra]))
        assert cfg.speculate is want
        assert WorkerConfig(**json.loads(cfg.to_json())).speculate is want  # as the worker process reads it
    # --history N likewise (the visit's exchanges the responder is given)
    for extra, want in (([], 16), (["--history", "0"], 0), (["--history", "3"], 3)):
        cfg = WorkerConfig(**json.loads(worker_config(parser.parse_args(["--bundle", str(bundle), *extra])).to_json()))
        assert cfg.history_turns == want
    with pytest.raises(InputError, match=r"history_turns \(--history\) must be an integer >= 0; got -2"):
        worker_config(parser.parse_args(["--bundle", str(bundle), "--history", "-2"]))
    # --no-blink likewise
    for extra, want in (([], True), (["--no-blink"], False)):
        cfg = WorkerConfig(**json.loads(worker_config(parser.parse_args(["--bundle", str(bundle), *extra])).to_json()))
        assert cfg.blink is want


def _idle_media(loop, n: int):
    """An AvatarMedia fed ``n`` idle frames: the same still picture, digital silence."""
    from huma_rt.serve.encode import Vp8Config
    from huma_rt.serve.peer import AvatarMedia

    media = AvatarMedia(loop, fps=25, video_queue=16, audio_queue=50, vp8=Vp8Config(settle_frames=2))
    rest = np.full((64, 64, 3), 90, np.uint8)
    for i in range(n):
        media.push(i, i / 25, rest, np.zeros(640, np.float32), still=True)
    return media, rest


def test_idle_silence_reuses_the_encoders_own_packet_and_the_picture_is_not_compared():
    from huma_rt.serve.encode import OpusStream

    async def run():
        media, rest = _idle_media(asyncio.get_running_loop(), 12)
        await asyncio.sleep(0.3)  # the encoder thread and the deliveries
        return media

    media = asyncio.run(run())
    ref = OpusStream(frame=320)  # what running libopus on every silent frame gives
    want = [bytes(ref.encode(np.zeros(320, np.int16), k * 320)) for k in range(24)]
    got = [bytes(p) for p, _ in media._audio.items]
    assert got == want, "the browser gets the bytes the encoder makes for silence"
    assert media._idle_opus is not None and media._idle_opus == want[-1]
    assert [p.pts for p, _ in media._audio.items] == [k * 320 - ref.lookahead for k in range(24)]
    v = media._vp8
    assert v.encoded + v.held == 12 and v.held >= 8  # the still picture: resent after settling


def test_an_answer_takes_over_the_idle_frame_not_yet_sent():
    async def run():
        loop = asyncio.get_running_loop()
        media, rest = _idle_media(loop, 12)
        await asyncio.sleep(0.3)
        media.clock.t0 = time.perf_counter() + 1.0  # frame 11 is due in 1.44 s: not sent
        assert not await asyncio.to_thread(media.retract, 10 / 25, 0.0), "only the last frame"
        assert not await asyncio.to_thread(media.retract, 11 / 25, 5.0), "no time to draw it"
        before = len(media._audio.items)
        assert await asyncio.to_thread(media.retract, 11 / 25, 0.02)
        assert media.retracted == 1 and len(media._audio.items) == before - 2
        assert media._video.items[-1][1] == 10 / 25
        # the answer's first frame at the retracted frame's time: loud, a new picture
        t = np.arange(640) / 16000
        loud = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
        media.push(11, 11 / 25, np.full((64, 64, 3), 200, np.uint8), loud)
        media.push(12, 12 / 25, np.full((64, 64, 3), 210, np.uint8), loud)
        await asyncio.sleep(0.3)
        # a frame that was encoded (not a resent one) cannot be taken back
        assert not await asyncio.to_thread(media.retract, 12 / 25, 0.0)
        return media

    media = asyncio.run(run())
    vpts = [pts for _, pts in media._video.items]
    apts = [p.pts for p, _ in media._audio.items]
    assert vpts == [i / 25 for i in range(12 - len(vpts) + 1, 13)][-len(vpts):]
    assert np.all(np.diff(apts) == 320), "audio: one packet per 20 ms, no gap, no repeat"
    assert len(apts) == 26
    assert max(np.abs(x).max() for x in _decoded(list(media._audio.items)[-4:])) > 0.3


def test_moving_box_holds_what_moves_when_the_avatar_talks(demo_avatar, question_pcm):
    """The box the page reads its motion meter on holds no pixel a blink changes (a blink is not
    the answer's first movement) and, below the eyes, every pixel that changes between the avatar
    at rest and the avatar speaking a question; it is well inside the frame."""
    from types import SimpleNamespace

    from huma_rt.gaussians import Camera

    box = worker.moving_box(demo_avatar.bundle, demo_avatar.blink_mask())
    w, h = demo_avatar.size
    x0, y0, x1, y1 = box[0] * w, box[1] * h, box[2] * w, box[3] * h
    assert 0 < (x1 - x0) * (y1 - y0) < 0.5 * w * h, box

    session = demo_avatar.session(live=True)
    try:
        rest = next(iter(session.idle_frames(1))).rgb.copy()
        shut = np.zeros((h, w), bool)
        for weight in (0.0, 0.5, 1.0, 0.5):
            session.blink = weight
            shut |= np.abs(next(iter(session.idle_frames(1))).rgb.astype(np.int16) - rest).max(axis=2) > 0
    finally:
        session.close()
    ys, xs = np.nonzero(shut)
    assert xs.size > 500, "the avatar did not blink"
    assert ys.max() < y0 - 1, f"a blink changed rows down to {ys.max()}; the box starts at {y0:.0f}"
    eyes = ys.max()

    changed = np.zeros((h, w), bool)
    for frame in demo_avatar.render(question_pcm):
        changed |= np.abs(frame.rgb.astype(np.int16) - rest).max(axis=2) > 8
    changed[: eyes + 1] = False  # speech moves the demo's eyes a little too (rows 136-163): the box leaves them out
    ys, xs = np.nonzero(changed)
    assert xs.size > 500, "the avatar did not move while speaking"
    assert xs.min() >= x0 - 1 and xs.max() <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() <= y1 + 1, (
        f"pixels changed over x {xs.min()}..{xs.max()}, y {ys.min()}..{ys.max()}; box {x0:.0f}..{x1:.0f}, "
        f"{y0:.0f}..{y1:.0f}")
    # without the blink mask the box is the whole moving region, eyes included
    assert worker.moving_box(demo_avatar.bundle)[1] * h < eyes - 20

    # nothing dynamic in front of the camera: the whole frame
    cam = demo_avatar.bundle.camera
    behind = {"means": np.array([[0.0, 0.0, -100.0]], np.float32), "region": np.array([1], np.uint8)}
    flipped = Camera(cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy,
                     world_to_camera=np.diag([1.0, 1.0, 1.0, 1.0]).astype(np.float32))
    assert worker.moving_box(SimpleNamespace(camera=flipped, arrays=behind)) == [0.0, 0.0, 1.0, 1.0]
