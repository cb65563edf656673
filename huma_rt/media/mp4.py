"""MP4 through PyAV: H.264 (libx264) when this PyAV build has it, else MPEG-4 Part 2; AAC audio.

``Mp4Writer`` encodes frames as they arrive (a session's Frame.rgb is valid only until the next
frame) and writes the audio track at ``close``. Odd frame sizes are padded by one pixel (yuv420p
needs even sizes). Frame t gets pts t in a 1/fps time base, so video duration = frames / fps.
AAC encodes only the rates in ``AAC_RATES``; audio at any other rate is resampled (FFmpeg's
swresample, through PyAV) to 48 kHz for the track, so every rate the audio reader accepts
(huma_rt.media.audio_file) can be written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import InputError

log = logging.getLogger(__name__)

_AAC_FRAME = 1024
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_FALLBACK_RATE = 48000


def aac_rate(sample_rate: int) -> int:
    """The rate the AAC track is written at: ``sample_rate`` itself when AAC encodes it, else 48000."""
    return sample_rate if sample_rate in AAC_RATES else _FALLBACK_RATE


def video_codec(av) -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class Mp4Writer:
    """``write(rgb)`` per frame, then ``close(audio [S] f32 at sample_rate)``."""

    def __init__(self, path: str | Path, fps: int, size: tuple[int, int], *, sample_rate: int = 16000,
                 codec: str = "auto", crf: int = 20) -> None:  # fmt: skip
        self.av = require("av", "writing MP4")
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise InputError(f"MP4 output must end in .mp4; got {self.path}")
        w, h = size
        if fps <= 0 or w <= 0 or h <= 0:
            raise InputError(f"fps and size must be positive; got fps={fps}, size={size}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise InputError(f"sample_rate must be a positive integer in Hz; got {sample_rate!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.codec = video_codec(self.av) if codec == "auto" else codec
        self.fps, self.size, self.sample_rate = int(fps), (int(w), int(h)), int(sample_rate)
        self._c = self.av.open(str(self.path), mode="w")
        self._v = self._c.add_stream(self.codec, rate=self.fps)
        self._v.width, self._v.height = w + (w % 2), h + (h % 2)
        self._v.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            self._v.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            self._v.bit_rate = 4_000_000
        self.track_rate = aac_rate(self.sample_rate)
        self._a = self._c.add_stream("aac", rate=self.track_rate)
        self._a.layout = "mono"
        self._pad = np.zeros((self._v.height, self._v.width, 3), np.uint8)
        self.frames = 0
        self._closed = False

    def write(self, rgb: np.ndarray) -> None:
        """Encode one [H, W, 3] uint8 frame (copied into the encoder before returning)."""
        w, h = self.size
        if not isinstance(rgb, np.ndarray) or rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise InputError(f"frames must be uint8 [{h}, {w}, 3]; got {got}")
        self._pad[:h, :w] = rgb
        vf = self.av.VideoFrame.from_ndarray(self._pad, format="rgb24")
        vf.pts, vf.time_base = self.frames, Fraction(1, self.fps)
        for packet in self._v.encode(vf):
            self._c.mux(packet)
        self.frames += 1

    def close(self, audio: np.ndarray | None = None) -> Path:
        """Flush video, write ``audio`` (float [S] at ``sample_rate``, clipped to [-1, 1]) as AAC
        (resampled to ``track_rate`` when the two differ), finish the file."""
        if self._closed:
            return self.path
        self._closed = True
        for packet in self._v.encode():
            self._c.mux(packet)
        if audio is not None and np.asarray(audio).size:
            pcm = np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0)
            resampler = None
            if self.track_rate != self.sample_rate:
                log.info("AAC cannot encode %d Hz; resampling the audio track to %d Hz", self.sample_rate, self.track_rate)
                resampler = self.av.AudioResampler(format="fltp", layout="mono", rate=self.track_rate)
            written = 0
            for start in range(0, pcm.size, _AAC_FRAME):
                part = pcm[start : start + _AAC_FRAME]
                af = self.av.AudioFrame.from_ndarray(np.ascontiguousarray(part[None, :]), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = self.sample_rate, start, Fraction(1, self.sample_rate)
                written = self._encode_audio(resampler.resample(af) if resampler else [af], written)
            if resampler is not None:
                self._encode_audio(resampler.resample(None), written)
            for packet in self._a.encode():
                self._c.mux(packet)
        self._c.close()
        log.info("wrote %s: %d frames (%s) at %d fps", self.path, self.frames, self.codec, self.fps)
        return self.path

    def _encode_audio(self, frames, written: int) -> int:
        for af in frames:
            af.pts, af.time_base = written, Fraction(1, self.track_rate)
            written += af.samples
            for packet in self._a.encode(af):
                self._c.mux(packet)
        return written

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], audio: np.ndarray | None, *, fps: int,
              sample_rate: int = 16000, size: tuple[int, int] | None = None) -> Path:  # fmt: skip
    """Write ``frames`` ([H, W, 3] uint8 each) and ``audio`` as one MP4; returns the path."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("write_mp4 needs at least one frame")
    first = np.asarray(first)
    size = size or (first.shape[1], first.shape[0])
    w = Mp4Writer(path, fps, size, sample_rate=sample_rate)
    w.write(first)
    for rgb in it:
        w.write(rgb)
    return w.close(audio)
