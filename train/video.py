"""A talking-head video file -> RGB frames (streamed), its frame rate and its speech track.

What ``huma-rt train`` accepts: one video stream in a common container (MP4/MOV, Matroska/WebM,
AVI, MPEG-TS, FLV, OGG) with any codec FFmpeg decodes, between :attr:`VideoConfig.min_seconds`
and :attr:`VideoConfig.max_seconds` long. The speech track, if any, is read with the runtime's
audio reader (16 kHz mono float32, the model contract).

Phone videos are often stored sideways with a display rotation: frames are turned upright
(multiples of 90 degrees) as players show them, and the reported size is the upright one.

Frames are yielded one at a time (a 10-minute 1080p video is ~90 GB of RGB), optionally
shrunk so the longer side is at most :attr:`VideoConfig.max_side`: tracking needs ~100-200
pixels across a face, not 4K. Every refusal is a :class:`VideoError` naming the file and the
value that broke the contract.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import FormatError, InputError

log = logging.getLogger(__name__)

# FFmpeg demuxers allowed to open a video (format_whitelist): files only, no playlists/network.
_DEMUXERS = "mov,mp4,m4a,3gp,matroska,webm,avi,mpegts,flv,ogg"
_AV_ERRORS_BASE = (ValueError, OSError, UnicodeDecodeError)


class VideoError(InputError):
    """A training video breaks the contract (unreadable, no video, too short or too long)."""


@dataclass(frozen=True)
class VideoConfig:
    """Limits on a training video.

    min_seconds: shorter clips hold too few mouth shapes to fit a person (10 s).
    max_seconds: longer ones only cost time; 10 minutes covers every phoneme many times.
    max_side: frames are shrunk (area filter) so the longer side is at most this many pixels;
        0 keeps the native size.
    sample_rate: rate of the speech track returned by :meth:`VideoReader.audio`.
    """

    min_seconds: float = 10.0
    max_seconds: float = 600.0
    max_side: int = 720
    sample_rate: int = 16000

    def __post_init__(self):
        if not 0 < self.min_seconds <= self.max_seconds:
            raise InputError(f"VideoConfig needs 0 < min_seconds <= max_seconds; got "
                             f"{self.min_seconds} and {self.max_seconds}")  # fmt: skip
        if self.max_side < 0:
            raise InputError(f"VideoConfig.max_side must be >= 0 (0 = native size); got {self.max_side}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VideoConfig:
        return cls(**d)


@dataclass(frozen=True)
class VideoInfo:
    """What the file holds: frame size after shrinking, native size, fps, seconds, frame count
    (estimated from the duration when the container does not say), codec, speech present."""

    path: str
    width: int
    height: int
    native_width: int
    native_height: int
    fps: float
    seconds: float
    frames: int
    codec: str
    has_audio: bool
    rotation: int = 0  # degrees counter-clockwise applied to the stored frames (0, 90, 180, 270)


class VideoReader:
    """A checked video: ``info`` at once, ``frames()`` streams (index, seconds, rgb [H,W,3] uint8)."""

    def __init__(self, path: str | os.PathLike, config: VideoConfig | None = None):
        self.path = Path(path)
        self.config = config or VideoConfig()
        self.info = _probe(self.path, self.config)

    def frames(self, start: int = 0) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield (frame index, presentation seconds, rgb uint8 [H, W, 3]) from frame ``start`` on.

        Frames before ``start`` are decoded and dropped (exact for every codec, unlike seeking).
        Raises VideoError when decoding fails midway or the stream runs past ``max_seconds``.
        """
        av = require("av", "reading training videos")
        cfg, info = self.config, self.info
        index = 0
        with _open(av, self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = float(stream.time_base) if stream.time_base else 1.0 / info.fps
            try:
                for frame in container.decode(stream):
                    t = float(frame.pts * tb) if frame.pts is not None else index / info.fps
                    if index / info.fps > cfg.max_seconds:
                        raise VideoError(f"{self.path}: runs past {cfg.max_seconds:g} s while decoding; "
                                         f"at most {cfg.max_seconds:g} s is accepted")  # fmt: skip
                    if index >= start:
                        yield index, t, self._upright(frame)
                    index += 1
            except (av.FFmpegError, *_AV_ERRORS_BASE) as exc:
                raise VideoError(f"{self.path}: undecodable video after frame {index}: {exc}") from None

    def sample(self, count: int) -> Iterator[tuple[int, float, np.ndarray]]:
        """Yield up to ``count`` frames spread evenly over the video, as :meth:`frames` does
        (the index estimated from the time), each found by seeking to the keyframe before it and
        decoding up to it: seconds for a long video, where :meth:`frames` takes minutes. Ends
        early, without an error, where the file cannot be seeked or decoded there (a caller
        that needs every frame reads them with :meth:`frames`, which says what is wrong)."""
        av = require("av", "reading training videos")
        info = self.info
        with _open(av, self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base
            if not tb:
                return
            origin = float(stream.start_time * tb) if stream.start_time is not None else 0.0
            for k in range(count):
                t = (k + 0.5) / count * info.seconds  # the middle of each of count equal spans
                target = math.ceil((origin + t) / tb)  # the first frame at or after t
                try:
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                    frame = next((f for f in container.decode(stream) if f.pts is None or f.pts >= target), None)
                except (av.FFmpegError, *_AV_ERRORS_BASE) as exc:
                    log.info("%s: cannot sample at %.1f s (%s); the sample ends there", self.path, t, exc)
                    return
                if frame is None:
                    return
                at = float(frame.pts * tb) - origin if frame.pts is not None else t
                yield int(round(at * info.fps)), at, self._upright(frame)

    def _upright(self, frame) -> np.ndarray:
        """A decoded frame as rgb uint8 [H, W, 3] at the reported size, turned upright."""
        info = self.info
        w, h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
        if (frame.width, frame.height) != (w, h):
            frame = frame.reformat(width=w, height=h, interpolation="AREA")
        rgb = frame.to_ndarray(format="rgb24")
        if info.rotation:
            rgb = np.ascontiguousarray(np.rot90(rgb, info.rotation // 90))
        return rgb

    def audio(self) -> np.ndarray | None:
        """The speech track as float32 [S] mono at ``config.sample_rate``, or None without one."""
        if not self.info.has_audio:
            return None
        from huma_rt.media.audio_file import load_audio

        try:
            pcm, _ = load_audio(self.path, self.config.sample_rate, max_seconds=self.config.max_seconds + 1)
        except FormatError as exc:
            raise VideoError(f"{self.path}: its audio track cannot be read: {exc}") from None
        return pcm


def open_video(path: str | os.PathLike, config: VideoConfig | None = None) -> VideoReader:
    """Check ``path`` against ``config`` (VideoError if it breaks it) and return its reader."""
    return VideoReader(path, config)


def _open(av, path: Path):
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore",
                       options={"format_whitelist": _DEMUXERS, "protocol_whitelist": "file"})  # fmt: skip
    except (av.FFmpegError, *_AV_ERRORS_BASE) as exc:
        raise VideoError(f"{path}: not a video file this reader opens (MP4, MOV, MKV, WebM, AVI, ...): "
                         f"{getattr(exc, 'strerror', None) or exc}") from None  # fmt: skip


def _probe(path: Path, cfg: VideoConfig) -> VideoInfo:
    av = require("av", "reading training videos")
    if not path.is_file():
        raise VideoError(f"video file {path} does not exist" if not path.exists() else
                         f"video file {path} is not a regular file")  # fmt: skip
    if path.stat().st_size == 0:
        raise VideoError(f"video file {path} is empty (0 bytes)")
    with _open(av, path) as container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoError(f"{path}: holds no video stream (streams: {', '.join(kinds)}); "
                             "expected a video of a talking face")  # fmt: skip
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None or not stream.width or not stream.height:
            raise VideoError(f"{path}: its video stream has a codec no decoder here reads")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not 1.0 <= fps <= 240.0:
            raise VideoError(f"{path}: frame rate {fps:g} fps; expected 1..240")
        rotation = _rotation(av, container, stream, path)
        seconds = _seconds(container, stream)
        if seconds is None:  # a stream without a declared length (raw, some WebM): count frames
            seconds = _count(av, container, stream, cfg.max_seconds, path) / fps
        has_audio = bool(container.streams.audio)
        frames = int(stream.frames) if stream.frames else int(round(seconds * fps))
        w, h = _shrunk(stream.width, stream.height, cfg.max_side)
        nw, nh = stream.width, stream.height
        if rotation in (90, 270):
            w, h, nw, nh = h, w, nh, nw
        info = VideoInfo(str(path), w, h, nw, nh, fps, seconds, frames, ctx.name, has_audio, rotation)
    if seconds < cfg.min_seconds:
        raise VideoError(f"{path}: lasts {seconds:.1f} s; a training video must be at least "
                         f"{cfg.min_seconds:g} s long")  # fmt: skip
    if seconds > cfg.max_seconds:
        raise VideoError(f"{path}: lasts {seconds:.1f} s; a training video must be at most "
                         f"{cfg.max_seconds:g} s ({cfg.max_seconds / 60:g} min) long")  # fmt: skip
    log.info("video %s: %dx%d (native %dx%d, turned %d) %.3g fps, %.1f s, ~%d frames, %s, audio: %s",
             path.name, w, h, nw, nh, rotation, fps, seconds, frames, info.codec, has_audio)  # fmt: skip
    return info


def _rotation(av, container, stream, path: Path) -> int:
    """The display rotation of the first frame, rounded to 0/90/180/270 degrees counter-clockwise."""
    try:
        frame = next(container.decode(stream), None)
    except (av.FFmpegError, *_AV_ERRORS_BASE) as exc:
        raise VideoError(f"{path}: undecodable video: {exc}") from None
    if frame is None:
        raise VideoError(f"{path}: its video stream holds no frames")
    try:
        container.seek(0)  # _count may demux the stream next
    except (av.FFmpegError, *_AV_ERRORS_BASE) as exc:
        log.debug("%s: cannot seek back after the first frame: %s", path, exc)
    return int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4 * 90


def _seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _count(av, container, stream, max_seconds: float, path: Path) -> int:
    n, last = 0, 0.0
    try:
        for packet in container.demux(stream):
            if packet.size:
                n += 1
                if packet.pts is not None and stream.time_base:
                    last = float(packet.pts * stream.time_base)
                if last > max_seconds + 1:
                    break
    except (av.FFmpegError, *_AV_ERRORS_BASE) as exc:
        raise VideoError(f"{path}: unreadable video stream: {exc}") from None
    return n


def _shrunk(w: int, h: int, max_side: int) -> tuple[int, int]:
    if max_side == 0 or max(w, h) <= max_side:
        return w, h
    s = max_side / max(w, h)
    return max(2, int(round(w * s / 2)) * 2), max(2, int(round(h * s / 2)) * 2)
