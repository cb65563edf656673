"""The worker's own encoders (huma_rt.serve.encode): an unchanged picture is resent without
encoding, and doing so leaves a decoder exactly where the encoder thinks it is; Opus packets
come out for the frame they are given.

Decoded with FFmpeg's VP8 decoder and with libvpx's (the one Chrome uses), both through PyAV."""

from __future__ import annotations

import numpy as np
import pytest

av = pytest.importorskip("av")

from huma_rt.errors import InputError  # noqa: E402
from huma_rt.serve.encode import OpusStream, Vp8Config, Vp8Stream, Yuv420, vp8_frame_header  # noqa: E402


@pytest.fixture(scope="module")
def pictures(demo_avatar):
    """The demo avatar idle (its rest pose, the same picture every frame), then talking."""
    session = demo_avatar.session(live=True)
    try:
        idle = [f.rgb.copy() for f in session.idle_frames(12)]
        t = np.arange(16000) / 16000
        voice = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
        session.push_audio(voice)
        talk = [f.rgb.copy() for f in session.idle_frames(12)]
    finally:
        session.close()
    assert np.array_equal(idle[-1], idle[-2]), "the idle avatar is one picture"
    assert max(np.abs(a.astype(int) - b).max() for a, b in zip(talk, talk[1:], strict=False)) > 0, "the talking one moves"
    return idle[-1], talk


def _decode(packets, decoder: str) -> list[np.ndarray]:
    ctx = av.CodecContext.create(decoder, "r")
    out = []
    for p in packets:
        out += [f.to_ndarray(format="yuv420p") for f in ctx.decode(av.Packet(bytes(p)))]
    assert len(out) == len(packets), f"{decoder} decoded {len(out)} of {len(packets)} frames"
    return out


@pytest.mark.parametrize("decoder", ["vp8", "libvpx"])
def test_an_unchanged_picture_is_resent_and_decodes_exactly_as_encoded(pictures, decoder):
    rest, talk = pictures
    enc = Vp8Stream(Vp8Config(settle_frames=4))
    sent = [enc.encode(rest, i / 25) for i in range(60)]  # 2.4 s at rest
    n = len(sent)
    sent += [enc.encode(rgb, (n + i) / 25) for i, rgb in enumerate(talk)]  # an answer starts
    assert enc.encoded == 5 + len(talk) and enc.held == 55, (enc.encoded, enc.held)
    assert enc.keyframes == 1 and vp8_frame_header(bytes(sent[0]))["key"]
    held = bytes(sent[5])
    assert all(bytes(p) == held for p in sent[6:n]), "the same packet is resent"
    assert [p.pts for p in sent[:3]] == [0, 3600, 7200], "each copy has its own time (90 kHz)"
    hdr = vp8_frame_header(held)
    assert hdr["show"] and not hdr["key"]
    assert (hdr["refresh_last"], hdr["refresh_golden"], hdr["refresh_alternate"], hdr["copy_to_golden"],
            hdr["copy_to_alternate"], hdr["refresh_entropy_probs"]) == (0, 0, 0, 0, 0, 0), hdr  # fmt: skip
    assert vp8_frame_header(bytes(sent[n]))["refresh_last"] == 1, "answer frames are ordinary frames"

    # what the encoder assumed: the held frame decoded once; what the browser gets: 55 times
    once = _decode(sent[:6] + sent[n:], decoder)
    often = _decode(sent, decoder)
    for k in range(5, n):
        assert np.array_equal(often[k], often[5]), f"copy {k - 5} of the held frame decodes differently"
    for i in range(len(talk)):
        assert np.array_equal(often[n + i], once[6 + i]), f"answer frame {i} differs after the held copies"
    shown = av.VideoFrame.from_ndarray(often[5], format="yuv420p").to_ndarray(format="rgb24")
    err = np.abs(shown.astype(np.int16) - rest).mean()
    assert err < 4.0, f"the held frame shows the rest pose {err:.2f} levels off on average"


@pytest.mark.parametrize("decoder", ["vp8", "libvpx"])
def test_a_blink_on_the_held_picture_is_shown_once_and_the_held_packet_then_decodes_as_before(demo_avatar,
                                                                                             pictures, decoder):  # fmt: skip
    """Transient pictures (a blink on the rest pose) go out as display-only frames against the
    held picture: the held packet resent after them decodes to exactly the picture it did before,
    the still picture is not encoded again, and the answer that follows decodes as it would have
    without the blink. A bitrate change waits until the blink is over (its new encoder's
    keyframe would re-encode the whole picture at the blink)."""
    rest, talk = pictures
    session = demo_avatar.session(live=True)
    try:
        for _ in session.idle_frames(12):  # settled: the rest pose
            pass
        blink = []
        for w in (0.25, 0.75, 1.0, 0.9, 0.6, 0.4, 0.2):
            session.blink = w
            blink.append(next(iter(session.idle_frames(1))).rgb.copy())
    finally:
        session.close()
    enc = Vp8Stream(Vp8Config(settle_frames=4))
    sent = [enc.encode(rest, i / 25) for i in range(10)]
    encoded = enc.encoded
    sent += [enc.encode(b, (10 + i) / 25, transient=True) for i, b in enumerate(blink)]
    assert enc.transient == len(blink) and enc.encoded == encoded + len(blink)
    for p in sent[10:]:
        hdr = vp8_frame_header(bytes(p))
        assert hdr["show"] and not hdr["key"] and (hdr["refresh_last"], hdr["refresh_golden"],
                                                    hdr["refresh_alternate"], hdr["refresh_entropy_probs"]) == (0, 0, 0, 0)  # fmt: skip
    n = len(sent)
    sent += [enc.encode(rest, (n + i) / 25) for i in range(5)]  # the rest pose again: the held packet
    assert enc.encoded == encoded + len(blink) and all(bytes(p) == bytes(sent[9]) for p in sent[n:])
    m = len(sent)
    sent += [enc.encode(rgb, (m + i) / 25) for i, rgb in enumerate(talk)]

    got = _decode(sent, decoder)
    plain = _decode(sent[:10] + sent[n:], decoder)  # the same stream without the blink
    for k in range(n, m):
        assert np.array_equal(got[k], got[9]), f"the held frame after the blink ({k - n}) decodes differently"
    for i in range(len(talk)):
        assert np.array_equal(got[m + i], plain[10 + (m - n) + i]), f"answer frame {i} differs after the blink"
    for i, b in enumerate(blink):
        shown = av.VideoFrame.from_ndarray(got[10 + i], format="yuv420p").to_ndarray(format="rgb24")
        assert np.abs(shown.astype(np.int16) - b).mean() < 4.0, f"blink frame {i} is not shown"

    for i in range(10):  # settled again, long after the blink
        enc.encode(rest, 2.0 + i / 25)
    enc.target_bitrate = 1_000_000  # a restart is due, but not during a blink and shortly after it
    held = enc.encode(rest, 3.0)
    assert vp8_frame_header(bytes(held))["key"] and enc.restarts == 1  # settled: at once, as before
    for i in range(30):
        enc.encode(rest, 3.04 + i / 25)
    enc.target_bitrate = 250_000
    hdr = vp8_frame_header(bytes(enc.encode(blink[2], 5.0, transient=True)))
    assert not hdr["key"] and hdr["refresh_last"] == 0 and enc.restarts == 1
    quiet = [vp8_frame_header(bytes(enc.encode(rest, 5.04 + i / 25)))["key"] for i in range(11)]
    assert quiet == [False] * 10 + [True] and enc.restarts == 2


def _changes(rest, talk):
    """Pictures in order: the rest pose, noisy boxes as the first changes after it (the held box
    only grows, so a box's edges are tested where it is the first change), the avatar talking,
    one pixel flipped at the picture's edges, the rest pose again."""
    rng = np.random.default_rng(0)
    seq = [rest]
    for y0, y1, x0, x1 in ((200, 233, 101, 170), (41, 62, 300, 333), (7, 10, 3, 4)):
        pic = rest.copy()
        pic[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
        seq.append(pic)
    seq += talk
    for y, x in ((0, 0), (511, 511), (0, 300), (257, 0), (511, 5)):
        pic = talk[-1].copy()
        pic[y, x] = 255 - pic[y, x]
        seq.append(pic)
    assert all(p.shape == (512, 512, 3) for p in seq), "the edge edits assume the demo avatar's 512 x 512"
    return seq + [rest]


def test_only_the_changed_box_is_converted_and_the_planes_are_those_of_whole_pictures(pictures):
    rest, talk = pictures
    held = Yuv420()
    for i, rgb in enumerate(_changes(rest, talk)):
        held.update(rgb, held.changed(rgb))
        whole = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        for k, (plane, mine) in enumerate(zip(whole.planes, held.planes, strict=True)):
            ref = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
            bad = np.argwhere(ref != mine)
            assert not bad.size, f"picture {i}, plane {'YUV'[k]}: {len(bad)} samples differ, first at {bad[0]}"
        assert np.array_equal(held.rgb, rgb)
    assert held.changed(rest) == (0, 0, 0, 0)


def test_vp8_of_the_converted_box_is_that_of_whole_pictures(pictures):
    rest, talk = pictures
    boxed, whole = Vp8Stream(), Vp8Stream()
    for i, rgb in enumerate(_changes(rest, talk)):  # same=False: the whole picture is converted
        a, b = boxed.encode(rgb, i / 25), whole.encode(rgb, i / 25, same=False)
        assert bytes(a) == bytes(b), f"picture {i}: VP8 of the converted box differs from the whole picture's"


def test_keyframe_request_and_a_new_bitrate_while_holding(pictures):
    rest, talk = pictures
    enc = Vp8Stream(Vp8Config(settle_frames=2))
    for i in range(5):
        enc.encode(rest, i / 25)
    assert enc.held == 2
    enc.request_keyframe()  # a browser's PLI: the held picture is encoded again, as a keyframe
    assert vp8_frame_header(bytes(enc.encode(rest, 5 / 25)))["key"]
    p = [enc.encode(rest, (6 + i) / 25) for i in range(4)]  # settled already: a new display-only frame
    assert vp8_frame_header(bytes(p[0]))["refresh_last"] == 0 and enc.held == 2 + 3
    assert bytes(p[-1]) == bytes(p[0]), "and it is what is resent"
    enc.target_bitrate = 1_000_000  # REMB: a new encoder at once, also while holding ...
    assert vp8_frame_header(bytes(enc.encode(rest, 10 / 25)))["key"] and enc.restarts == 1
    for i in range(3):
        enc.encode(rest, (11 + i) / 25)
    # ... so that the answer's first frame is not a keyframe
    assert not vp8_frame_header(bytes(enc.encode(talk[0], 14 / 25)))["key"]
    enc.target_bitrate = 10_000_000  # beyond max_bitrate: one restart at the cap, not one per frame
    for i in range(4):
        enc.encode(talk[1 + i], (15 + i) / 25)
    assert enc.restarts == 2 and enc.keyframes == 4


def test_opus_packet_carries_the_frame_it_was_given():
    enc = OpusStream(frame=320)
    t = np.arange(320) / 16000
    loud = (12000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    quiet = np.zeros(320, np.int16)
    packets = [enc.encode(x, 320 * k) for k, x in enumerate([quiet, quiet, loud])]
    assert enc.lookahead == 104, "libopus's 6.5 ms look-ahead at 16 kHz"
    assert [p.pts for p in packets] == [-104, 216, 536], "stamped with the time their decoded sound shows"
    dec = av.CodecContext.create("libopus", "r")
    pcm = [np.concatenate([f.to_ndarray().reshape(-1) for f in dec.decode(p)]) / 32768.0 for p in packets]
    rms = [float(np.sqrt(np.mean(x**2))) for x in pcm]
    # the loud frame is in its own packet (less the encoder's 6.5 ms look-ahead), not the next one
    assert rms[1] < 0.01 and rms[2] > 0.15, rms
    with pytest.raises(InputError, match="320 int16"):
        enc.encode(np.zeros(640, np.int16), 960)


def test_the_media_clock_starts_at_the_tick_and_counts_packets_ready_late():
    """The worker's tracks (huma_rt.serve.peer): stream time 0 leaves ``delay_s`` after the frame
    clock's tick for it was due (not after the frame was made), and packets ready after their
    time are counted per track; a packet queued in time is not, though the loop stalled before
    its track asked for it (the sender's lateness, not the packet's)."""
    import asyncio
    import time

    pytest.importorskip("aiortc")
    from huma_rt.serve.peer import AvatarMedia

    async def run(behind_s: float, stall_s: float = 0.0):
        media = AvatarMedia(asyncio.get_running_loop(), fps=25, encode=True)
        rgb = np.zeros((64, 64, 3), np.uint8)
        due = time.perf_counter() - behind_s  # when the first tick was due
        for i in range(3):
            media.push(i, i / 25, rgb, np.zeros(640, np.float32), due + i / 25)
        await asyncio.sleep(0.05)  # deliveries run on the loop, VP8 on its own thread

        async def pull(track, n):  # as aiortc's senders do
            for _ in range(n):
                await track.recv()
                time.sleep(stall_s)  # the whole loop stalls (a busy host, a long callback)

        await asyncio.gather(pull(media.video, 3), pull(media.audio, 6))
        stats = media.video_stats
        media.close()
        return media.clock, due, stats["late"]

    clock, due, late = asyncio.run(run(-0.1))  # made ahead of their ticks: none late
    assert clock.t0 == pytest.approx(due + clock.delay_s, abs=1e-9)
    assert late["video"]["sent"] == 3 and late["audio"]["sent"] == 6
    assert late["video"]["late_5ms"] == late["audio"]["late_5ms"] == 0, late
    clock, due, late = asyncio.run(run(-0.1, stall_s=0.045))  # asked for 45 ms late: none late
    assert late["video"]["sent"] == 3 and late["audio"]["sent"] == 6
    assert late["video"]["late_5ms"] == late["audio"]["late_5ms"] == 0, late
    assert late["audio"]["left_late_20ms"] >= 4, late  # but they left late: 9 stalls of 45 ms
    clock, due, late = asyncio.run(run(0.3))  # made 300 ms after their ticks: all late
    assert clock.t0 == pytest.approx(due + clock.delay_s, abs=1e-9)
    assert late["audio"]["late_20ms"] == 6 and late["video"]["late_20ms"] == 3, late
    assert late["audio"]["left_late_20ms"] == 6 and late["video"]["left_late_20ms"] == 3, late
    assert late["audio"]["max_ms"] >= 1000 * (0.3 - clock.delay_s) - 1, late


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_a_bad_quiet_after_transient_is_refused_by_name(bad):
    with pytest.raises(InputError, match="quiet_after_transient must be an integer >= 0"):
        Vp8Stream(Vp8Config(quiet_after_transient=bad))
