"""Media output and input: MP4 (PyAV, H.264 or MPEG-4 + AAC), PNG frames, WAV reading."""

from __future__ import annotations

from huma_rt.media.mp4 import Mp4Writer, write_mp4
from huma_rt.media.png import encode_png, write_png
from huma_rt.media.wav import read_wav, write_wav

__all__ = ["Mp4Writer", "encode_png", "read_wav", "write_mp4", "write_png", "write_wav"]
