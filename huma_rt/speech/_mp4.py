"""A frame sink that writes the answer as MP4 (H.264 or MPEG-4 video + AAC audio) with PyAV.

Used by ``huma-rt chat`` while huma_rt.media (the runtime's writer) is not in this tree; the
CLI prefers huma_rt.media when it is importable. Video frames are encoded as they arrive (the
Frame's rgb is only valid during the call); the audio track is written at close.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import InputError

log = logging.getLogger(__name__)


class Mp4Sink:
    """``sink(frame)`` per Frame, then ``close(audio [S] f32, sample_rate)``."""

    def __init__(self, path: str | Path, fps: int, size: tuple[int, int], sample_rate: int = 16000) -> None:
        self.av = require("av", "writing MP4")
        self.path = Path(path)
        if self.path.suffix.lower() not in (".mp4", ".mov", ".m4v"):
            raise InputError(f"output must be an .mp4 file; got {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = int(fps)
        self._container = self.av.open(str(self.path), mode="w")
        codec = "libx264" if "libx264" in self.av.codecs_available else "mpeg4"
        w, h = size
        self._video = self._container.add_stream(codec, rate=self.fps)
        self._video.width, self._video.height = w + (w % 2), h + (h % 2)  # yuv420p wants even sizes
        self._video.pix_fmt = "yuv420p"
        # Every stream must exist before the first packet is muxed (the header is written then).
        self._audio = self._container.add_stream("aac", rate=sample_rate)
        self._audio.layout = "mono"
        self.sample_rate = sample_rate
        self.frames = 0

    def __call__(self, frame) -> None:
        rgb = np.ascontiguousarray(frame.rgb)
        if rgb.shape[0] != self._video.height or rgb.shape[1] != self._video.width:
            rgb = np.pad(rgb, ((0, self._video.height - rgb.shape[0]), (0, self._video.width - rgb.shape[1]), (0, 0)))
        vf = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vf.pts = self.frames
        vf.time_base = Fraction(1, self.fps)
        for packet in self._video.encode(vf):
            self._container.mux(packet)
        self.frames += 1

    def close(self, audio: np.ndarray) -> Path:
        """Flush the video, write ``audio`` [S] f32 (at sample_rate) as the AAC track, close."""
        for packet in self._video.encode():
            self._container.mux(packet)
        step = 1024  # AAC frame size
        pcm = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
        for start in range(0, pcm.size, step):
            piece = np.zeros((1, step), np.float32)
            part = pcm[start : start + step]
            piece[0, : part.size] = part
            af = self.av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
            af.sample_rate = self.sample_rate
            af.pts = start
            af.time_base = Fraction(1, self.sample_rate)
            for packet in self._audio.encode(af):
                self._container.mux(packet)
        for packet in self._audio.encode():
            self._container.mux(packet)
        self._container.close()
        return self.path
