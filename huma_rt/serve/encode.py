"""The avatar's media encoded by the worker itself (VP8 video, Opus audio), handed to aiortc as
ready packets: an unchanged picture costs no encoding, and audio leaves the moment it is due.

Why not let aiortc encode (its tracks may return ``av.Packet`` instead of frames, and its sender
then only packetizes them):

- **Idle.** The avatar at rest is the same picture 25 times a second. aiortc re-encodes it every
  40 ms (~4 ms of CPU on this machine plus the RGB -> YUV conversion). Here, after
  ``settle_frames`` identical pictures, the picture is encoded once more as a *display-only*
  frame (libvpx flags: update no reference buffer, no entropy context) and that packet is resent
  while the picture stays the same. Resending it is exact: a frame that updates nothing leaves
  the decoder's references and probabilities as they were, so every copy decodes to the same
  picture, and the encoder (which was not run for the copies) and the browser's decoder still
  hold the same references when the next picture changes (checked with two decoders in
  ``tests/serve/test_encode.py``). libvpx takes per-frame flags through FFmpeg's ``vp8-flags``
  frame metadata, which PyAV can only set through a filter graph (``metadata`` filter).
- **Blinks.** A blink on the still picture is a few frames shown once, after which the same
  picture returns: each is encoded as a display-only frame too (``transient``), predicted from
  the held picture and updating nothing, so afterwards the held packet is resent as before and
  decodes to exactly the picture it did (``tests/serve/test_encode.py``), with no re-encoding
  of the still picture and no change outside the eyes.
- **Talking.** Only the mouth and jaw change (~15 % of the picture): only that box is converted
  to yuv420p (``Yuv420``, bit-identical to converting the whole picture), and libvpx runs
  without its denoiser and skips unchanged macroblocks (``Vp8Config``): ~6 -> ~3 ms a frame.
- **Audio.** aiortc's Opus encoder resamples to 48 kHz through a resampler that hands out
  960-sample frames: it holds back one 20 ms packet, so every packet left 20 ms after its time on
  the media clock (and RTCP stamped it 20 ms late). Opus codes 16 kHz directly; its RTP clock is
  48 kHz whatever the input rate (aiortc's ``pack`` converts the timestamps).
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import InputError

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
# libvpx vpx/vp8cx.h per-frame flags
VP8_EFLAG_NO_UPD_LAST = 1 << 18
VP8_EFLAG_NO_UPD_ENTROPY = 1 << 20
VP8_EFLAG_NO_UPD_GF = 1 << 22
VP8_EFLAG_NO_UPD_ARF = 1 << 23
# swscale's chroma is filtered across rows: a chroma sample up to YUV_REACH pixels outside the
# changed box changes too, so that much more is pasted; the part converted reaches YUV_MARGIN
# pixels beyond that (tests/serve/test_encode.py: bit-identical planes; 0 fails, 2 and 0 are
# enough there, kept wider for other sizes and swscale builds)
YUV_REACH = 4
YUV_MARGIN = 8
DISPLAY_ONLY = VP8_EFLAG_NO_UPD_LAST | VP8_EFLAG_NO_UPD_GF | VP8_EFLAG_NO_UPD_ARF | VP8_EFLAG_NO_UPD_ENTROPY


@dataclass
class Vp8Config:
    """bitrate: start target, bits/s (aiortc's: 500 kbps; the receiver's REMB moves it within
    min_bitrate..max_bitrate, aiortc's limits). settle_frames: identical pictures encoded as usual
    before the display-only frame is made and resent (libvpx refines a still picture for about a
    second: on the demo avatar 2.3 levels of mean error after 8 frames, 1.4 after 25).
    cpu_used, threads: libvpx speed and threads (aiortc's: -6, 1 below 640x480).
    noise_sensitivity: libvpx's temporal denoiser (aiortc's: 4); a rendered avatar has no noise
    to remove: 0 saves ~1 ms a talking frame. static_thresh: macroblocks whose change is under
    this are coded as unchanged without the search (aiortc's: 1); 100 saves ~1 ms a talking frame
    and ~25 % of its bits with the mouth as sharp (demo avatar talking, mouth-box PSNR 40.7 dB
    vs 40.4; ``bench/serve_worker_cost.py --stages``). quiet_after_transient: a bitrate change
    waits until this many pictures after the last transient one (a blink) before it restarts the
    encoder: the new encoder's keyframe re-encodes the whole picture at another quality, which the
    page's meter would take for movement at the blink (a size change restarts at once)."""

    bitrate: int = 500_000
    min_bitrate: int = 250_000
    max_bitrate: int = 1_500_000
    settle_frames: int = 25
    cpu_used: int = -6
    threads: int = 1
    noise_sensitivity: int = 0
    static_thresh: int = 100
    quiet_after_transient: int = 10

    def validate(self) -> None:
        if not 0 < self.min_bitrate <= self.bitrate <= self.max_bitrate:
            raise InputError(f"need 0 < min_bitrate <= bitrate <= max_bitrate; got {self.min_bitrate}, "
                             f"{self.bitrate}, {self.max_bitrate}")  # fmt: skip
        if self.settle_frames < 1:
            raise InputError(f"settle_frames must be >= 1; got {self.settle_frames}")
        if isinstance(self.quiet_after_transient, bool) or not isinstance(self.quiet_after_transient, int) \
                or self.quiet_after_transient < 0:  # fmt: skip
            raise InputError(f"quiet_after_transient must be an integer >= 0; got {self.quiet_after_transient!r}")
        if not -16 <= self.cpu_used <= 16 or self.threads < 1:
            raise InputError(f"cpu_used must be in -16..16 and threads >= 1; got {self.cpu_used}, {self.threads}")


class Vp8Stream:
    """RGB pictures -> VP8 packets (``av.Packet``, pts in 1/90000 s) for one video track.

    ``encode(rgb, pts)`` runs libvpx unless the picture equals the last one and a display-only
    frame of it exists; ``request_keyframe()`` (a browser's PLI/FIR, any thread) makes the next
    packet a keyframe; ``target_bitrate`` may be set from any thread (a change of more than 10 %
    restarts the encoder at the next frame, whose first frame is a keyframe, as aiortc does; not
    during a blink and ``quiet_after_transient`` pictures after it).
    Counters: ``encoded``, ``held`` (packets resent without encoding), ``keyframes``,
    ``requests`` (keyframe requests), ``restarts`` (new encoders: size or bitrate changed),
    ``transient`` (pictures encoded display-only between copies of the held one).
    """

    def __init__(self, config: Vp8Config | None = None) -> None:
        self.config = config or Vp8Config()
        self.config.validate()
        self._av = require("av", "huma-rt serve (video encoding)")
        self.target_bitrate = self.config.bitrate
        self._codec = None
        self._frames = 0  # pictures given to libvpx (its own contiguous clock: rate control)
        self._yuv = Yuv420()  # the last picture given to libvpx (rgb and yuv420p)
        self._same = 0  # how many times in a row it was given the same picture
        self._held: bytes | None = None  # the display-only frame of the last picture
        self._keyframe = False
        self._since_transient = 1 << 30  # pictures since the last transient one
        self.encoded = self.held = self.keyframes = self.requests = self.restarts = self.transient = 0

    def request_keyframe(self) -> None:
        self.requests += 1
        self._keyframe = True

    def _open(self, width: int, height: int):
        av, cfg = self._av, self.config
        rate = max(cfg.min_bitrate, min(int(self.target_bitrate), cfg.max_bitrate))
        c = av.CodecContext.create("libvpx", "w")
        c.width, c.height, c.pix_fmt = width, height, "yuv420p"
        c.bit_rate = rate
        c.time_base = fractions.Fraction(1, 25)
        c.gop_size, c.qmin, c.qmax = 3000, 2, 56
        c.thread_count = cfg.threads
        # aiortc's real-time CBR settings (aiortc.codecs.vpx.Vp8Encoder), so that only what is
        # encoded changes, not how
        c.options = {"bufsize": str(rate), "cpu-used": str(cfg.cpu_used), "deadline": "realtime",
                     "lag-in-frames": "0", "minrate": str(rate), "maxrate": str(rate),
                     "noise-sensitivity": str(cfg.noise_sensitivity), "overshoot-pct": "15", "partitions": "0",
                     "static-thresh": str(cfg.static_thresh), "undershoot-pct": "100"}  # fmt: skip
        self._codec = c
        self._held = None
        log.debug("VP8 encoder %dx%d at %d bit/s", width, height, rate)

    def _display_only(self, frame):
        """``frame`` with libvpx's per-frame flags for a frame that updates nothing."""
        graph = self._av.filter.Graph()
        src = graph.add_buffer(template=frame)
        tag = graph.add("metadata", f"mode=add:key=vp8-flags:value={DISPLAY_ONLY}")
        sink = graph.add("buffersink")
        src.link_to(tag)
        tag.link_to(sink)
        graph.configure()
        graph.push(frame)
        return graph.pull()

    def encode(self, rgb: np.ndarray, pts: float, same: bool | None = None, transient: bool = False):
        """rgb [H, W, 3] uint8 shown at ``pts`` seconds -> one av.Packet (VP8 frame).

        same: the caller knows the picture equals the last one given (True) or not (False);
        None: compared here (the 786 KB picture, the idle cost it saves; the box that changed is
        all that is converted to yuv420p). transient: the picture is shown once and the last one
        comes back after it (a blink on the still picture): while a display-only frame of the
        last picture is held, it is encoded display-only against it and changes no state here or
        in the decoder; otherwise it is encoded as usual."""
        av = self._av
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"expected an RGB picture [H, W, 3] uint8; got {rgb.shape} {rgb.dtype}")
        box = None  # the rows and columns where rgb differs from the last picture (None: not compared)
        if same is None or self._yuv.rgb is None or self._yuv.rgb.shape != rgb.shape:
            box = self._yuv.changed(rgb)
            same = box is not None and box[0] == box[1]
        keyframe, self._keyframe = self._keyframe, False
        h, w = rgb.shape[:2]
        c = self._codec
        # a new size, or a bitrate more than 10 % away (aiortc's rule), needs a new encoder; done
        # at once, also while holding, so that an answer does not start with its keyframe
        rate = max(self.config.min_bitrate, min(int(self.target_bitrate), self.config.max_bitrate))
        resize = c is None or (c.width, c.height) != (w, h)
        self._since_transient = 0 if transient else self._since_transient + 1
        restart = resize or (abs(rate - c.bit_rate) > 0.1 * c.bit_rate
                             and self._since_transient > self.config.quiet_after_transient)  # fmt: skip
        if same and self._held is not None and not keyframe and not restart:
            self.held += 1
            return self._packet(self._held, pts)
        if transient and self._held is not None and not keyframe and not restart and not same:
            # the whole picture converted (bit-identical to the held planes where it is the same)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = self._frames, c.time_base
            self._frames += 1
            data = b"".join(bytes(p) for p in c.encode(self._display_only(frame)))
            self.encoded += 1
            self.transient += 1
            return self._packet(data, pts)
        if restart:
            self.restarts += c is not None
            self._open(w, h)  # a new encoder starts with a keyframe
            same = False
        if same:
            self._same += 1
        else:
            self._same = 0
            self._yuv.update(rgb, box)
        self._held = None
        frame = self._yuv.frame()
        frame.pts, frame.time_base = self._frames, self._codec.time_base
        self._frames += 1
        hold = same and self._same >= self.config.settle_frames and not keyframe
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        elif hold:
            frame = self._display_only(frame)
        data = b"".join(bytes(p) for p in self._codec.encode(frame))
        self.encoded += 1
        if data and not data[0] & 1:
            self.keyframes += 1
        if hold:
            self._held = data
        return self._packet(data, pts)

    def _packet(self, data: bytes, pts: float):
        p = self._av.Packet(data)
        p.pts = round(pts * 90000)
        p.time_base = VIDEO_TIME_BASE
        return p


class Yuv420:
    """The last picture of a video track, as rgb and as yuv420p planes, kept up to date by
    converting only what changed.

    ``rgb`` [H, W, 3] uint8 and ``planes`` [Y (H, W), U (H/2, W/2), V (H/2, W/2)] uint8 (None
    before the first ``update``). ``changed(rgb)`` finds the box that differs, ``update(rgb,
    box)`` converts that box and pastes it, ``frame()`` is an av.VideoFrame of the planes."""

    def __init__(self) -> None:
        self._av = require("av", "huma-rt serve (video encoding)")
        self.rgb: np.ndarray | None = None
        self.planes: list[np.ndarray] | None = None
        self._box: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1) pasted since the last whole one
        self._sws = self._av.video.reformatter.VideoReformatter()  # keeps its context while sizes hold

    def changed(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        """(y0, y1, x0, x1): the rows and columns where ``rgb`` [H, W, 3] uint8 differs from
        ``self.rgb`` (y0 == y1: nowhere; a pixel or two wider than exact); None: nothing to
        compare with (no picture of this size yet)."""
        last = self.rgb
        if last is None or last.shape != rgb.shape:
            return None
        h, w = rgb.shape[:2]
        # compared a word at a time (8 bytes: 2.7 pixels); the box may be a pixel or two wider
        word = next(k for k in (8, 4, 2, 1) if (3 * w) % k == 0)
        kind = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}[word]
        a, b = np.ascontiguousarray(rgb).reshape(h, -1).view(kind), last.reshape(h, -1).view(kind)
        ne = a != b  # [H, 3 W / word]
        rows = np.flatnonzero(ne.any(axis=1))
        if not rows.size:
            return 0, 0, 0, 0
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(ne[y0:y1].any(axis=0))
        return y0, y1, int(cols[0]) * word // 3, min(w, -(-(int(cols[-1]) + 1) * word // 3))

    def update(self, rgb: np.ndarray, box: tuple[int, int, int, int] | None = None) -> None:
        """Make ``rgb`` [H, W, 3] uint8 the picture held; ``box``: where it differs from the
        one held before (``changed``), None: convert it whole.

        A talking avatar changes ~15 % of the picture (the mouth and jaw): only the changed box
        is converted (libswscale, as for the whole picture) and pasted: that box widened by
        ``YUV_REACH`` (chroma is filtered across rows), converted with ``YUV_MARGIN`` pixels more
        around it. The planes are bit-identical to converting the whole picture. The box only
        grows (the union of the boxes since the last whole picture: the mouth's range), so that
        one swscale context serves every frame (making one took 0.3-0.5 ms a frame)."""
        av = self._av
        h, w = rgb.shape[:2]
        if box is None or self.planes is None or self.rgb.shape != rgb.shape or h % 2 or w % 2:
            self.rgb = rgb.copy()
            self._box = None
            self.planes = _planes(self._sws.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p"))
            return
        r, m = YUV_REACH, YUV_REACH + YUV_MARGIN
        y0, y1 = max(0, (box[0] - r) // 2 * 2), min(h, -(-(box[1] + r) // 2) * 2)
        x0, x1 = max(0, (box[2] - r) // 2 * 2), min(w, -(-(box[3] + r) // 2) * 2)
        if self._box is not None:
            y0, y1, x0, x1 = min(y0, self._box[0]), max(y1, self._box[1]), min(x0, self._box[2]), max(x1, self._box[3])
        self._box = (y0, y1, x0, x1)
        # converted from even rows and columns: the part's chroma samples are the picture's
        my0, my1 = max(0, (y0 - m) // 2 * 2), min(h, y1 + m)
        mx0, mx1 = max(0, (x0 - m) // 2 * 2), min(w, x1 + m)
        np.copyto(self.rgb[y0:y1, x0:x1], rgb[y0:y1, x0:x1])
        part = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[my0:my1, mx0:mx1]), format="rgb24")
        yp, up, vp = _planes(self._sws.reformat(part, format="yuv420p"))
        self.planes[0][y0:y1, x0:x1] = yp[y0 - my0 : y1 - my0, x0 - mx0 : x1 - mx0]
        cy0, cy1, cx0, cx1 = (y0 - my0) // 2, (y1 - my0) // 2, (x0 - mx0) // 2, (x1 - mx0) // 2
        self.planes[1][y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = up[cy0:cy1, cx0:cx1]
        self.planes[2][y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = vp[cy0:cy1, cx0:cx1]

    def frame(self):
        """A new yuv420p av.VideoFrame holding ``planes`` (libvpx gets a frame of its own)."""
        y = self.planes[0]
        frame = self._av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
        for plane, src in zip(frame.planes, self.planes, strict=True):
            np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width] = src
        return frame


def _planes(frame) -> list[np.ndarray]:
    """A yuv420p av.VideoFrame -> copies of its [Y (H, W), U (H/2, W/2), V (H/2, W/2)] uint8 planes."""
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].copy() for p in frame.planes]


def to_s16(pcm: np.ndarray) -> np.ndarray:
    """float samples [n] in [-1, 1] -> int16 [n] (clipped), what OpusStream.encode takes."""
    return np.clip(pcm * 32767.0, -32768, 32767).astype(np.int16)


class OpusStream:
    """16 kHz mono s16 -> Opus packets of ``frame`` samples (20 ms), pts in samples (1/16000 s).

    ``encode(s16, pts)`` takes exactly one frame and returns its packet at once. A packet's pts
    is ``pts - lookahead``: libopus delays what it codes by its look-ahead (104 samples, 6.5 ms),
    which RTP has no field for (aiortc's encoder stamped packets with their input time, so the
    voice played 6.5 ms behind its timestamps); FFmpeg stamps the packet with the time its
    decoded samples show, and that stamp is kept, so the packet also leaves 6.5 ms sooner."""

    RATE = 16000

    def __init__(self, bitrate: int = 32000, frame: int = 320) -> None:
        av = self._av = require("av", "huma-rt serve (audio encoding)")
        if frame not in (160, 320, 640, 960):
            raise InputError(f"Opus frames at 16 kHz are 10, 20, 40 or 60 ms (160..960 samples); got {frame}")
        self.frame = frame
        c = av.CodecContext.create("libopus", "w")
        c.sample_rate, c.layout, c.format = self.RATE, "mono", "s16"
        c.bit_rate = bitrate
        c.time_base = fractions.Fraction(1, self.RATE)
        c.options = {"application": "voip", "frame_duration": str(1000 * frame // self.RATE)}
        c.open()
        self._codec = c
        self._time_base = fractions.Fraction(1, self.RATE)
        self.lookahead = 0  # samples, known after the first packet
        self._first = True

    def encode(self, s16: np.ndarray, pts: int):
        """s16 [frame] int16 starting at sample ``pts`` -> one av.Packet."""
        if s16.shape != (self.frame,) or s16.dtype != np.int16:
            raise InputError(f"expected {self.frame} int16 samples; got {s16.shape} {s16.dtype}")
        af = self._av.AudioFrame.from_ndarray(s16[None, :], format="s16", layout="mono")
        af.sample_rate, af.pts, af.time_base = self.RATE, pts, self._time_base
        packets = self._codec.encode(af)
        if len(packets) != 1:
            raise InputError(f"libopus returned {len(packets)} packets for one frame; expected 1")
        p = packets[0]  # FFmpeg's pts: pts - the encoder's look-ahead
        p.time_base = self._time_base
        # FFmpeg takes that pts from the frames it queued, in order: after frames that were not
        # given to it (idle silence resent by the caller) it would be stale, so only the first
        # packet's look-ahead is read and kept
        if self._first:
            self.lookahead, self._first = pts - p.pts, False
        p.pts = pts - self.lookahead
        return p


def vp8_frame_header(data: bytes) -> dict:
    """What a VP8 frame (RFC 6386 section 9) does to the decoder: ``key``, ``show``,
    ``loop_filter_level`` and, for inter frames, ``refresh_golden``, ``refresh_alternate``,
    ``copy_to_golden``, ``copy_to_alternate``, ``refresh_entropy_probs``, ``refresh_last``.
    Reads the frame header only (the first partition's opening fields)."""
    if len(data) < 3:
        raise InputError(f"a VP8 frame has at least 3 bytes; got {len(data)}")
    tag = data[0] | data[1] << 8 | data[2] << 16
    key, show = not tag & 1, bool(tag >> 4 & 1)
    pos = 10 if key else 3
    if key and data[3:6] != b"\x9d\x01\x2a":
        raise InputError(f"a VP8 keyframe has start code 9d 01 2a; got {data[3:6].hex()}")
    bits = _BoolReader(data[pos:])
    lit = bits.literal

    def signed(n: int) -> None:
        if lit(1):
            lit(n)
            lit(1)

    if key:
        lit(2)  # color space, clamping
    if lit(1):  # segmentation
        update_map, update_data = lit(1), lit(1)
        if update_data:
            lit(1)
            for n in (7, 7, 7, 7, 6, 6, 6, 6):
                signed(n)
        if update_map:
            for _ in range(3):
                if lit(1):
                    lit(8)
    lit(1)  # filter type
    out = {"key": key, "show": show, "loop_filter_level": lit(6)}
    lit(3)  # sharpness
    if lit(1) and lit(1):  # loop filter deltas enabled and updated
        for _ in range(8):
            signed(6)
    lit(2)  # token partitions
    lit(7)  # y ac quantizer index
    for _ in range(5):
        signed(4)
    if key:
        out.update(refresh_golden=1, refresh_alternate=1, refresh_last=1, refresh_entropy_probs=lit(1))
        return out
    out["refresh_golden"], out["refresh_alternate"] = lit(1), lit(1)
    out["copy_to_golden"] = 0 if out["refresh_golden"] else lit(2)
    out["copy_to_alternate"] = 0 if out["refresh_alternate"] else lit(2)
    lit(2)  # sign biases
    out["refresh_entropy_probs"], out["refresh_last"] = lit(1), lit(1)
    return out


class _BoolReader:
    """RFC 6386 section 7 boolean decoder (enough for the frame header)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 2
        self.value = (data[0] << 8 | data[1]) if len(data) >= 2 else 0
        self.range, self.count = 255, 0

    def bool(self, prob: int) -> int:
        split = 1 + (((self.range - 1) * prob) >> 8)
        big = split << 8
        if self.value >= big:
            bit, self.range, self.value = 1, self.range - split, self.value - big
        else:
            bit, self.range = 0, split
        while self.range < 128:
            self.value <<= 1
            self.range <<= 1
            self.count += 1
            if self.count == 8:
                self.count = 0
                if self.pos < len(self.data):
                    self.value |= self.data[self.pos]
                self.pos += 1
        return bit

    def literal(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = v << 1 | self.bool(128)
        return v
