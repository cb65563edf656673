"""Media output and input: MP4 (PyAV, H.264 or MPEG-4 + AAC), PNG frames, audio files (PyAV), WAV output."""

from __future__ import annotations

from huma_rt.media.audio_file import AudioFileInfo, load_audio, read_audio
from huma_rt.media.mp4 import Mp4Writer, write_mp4
from huma_rt.media.png import encode_png, write_png
from huma_rt.media.wav import read_wav, write_wav

__all__ = ["AudioFileInfo", "Mp4Writer", "encode_png", "load_audio", "read_audio", "read_wav", "write_mp4",
           "write_png", "write_wav"]
