"""WAV output (16-bit PCM, no dependency) and ``read_wav``, the old name of the audio reader.

Reading goes through huma_rt.media.audio_file (PyAV), which decodes every WAV encoding users
hold (8-bit unsigned, 16/24/32-bit integer, float) and the compressed formats too; the
hand-written WAV parser that lived here read a subset of WAV only.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_PCM = 1


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(samples, sample_rate): float32 [S] for mono, [S, C] otherwise, scaled to [-1, 1].

    Any file :func:`huma_rt.media.audio_file.read_audio` decodes (WAV, FLAC, MP3, M4A, OGG, ...);
    FormatError naming the file for anything else.
    """
    from huma_rt.media.audio_file import read_audio

    return read_audio(path)


def write_wav(path: str | Path, pcm: np.ndarray, sample_rate: int) -> Path:
    """Write float [S] or [S, 2] samples as 16-bit PCM WAV (clipped to [-1, 1])."""
    pcm = np.asarray(pcm, np.float32)
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    # the reader's scale (x / 32768), so write -> read is exact to half a step (1.0 clips to 32767)
    q = np.clip(np.round(pcm.astype(np.float64) * 32768.0), -32768, 32767).astype("<i2").tobytes()
    head = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(q), b"WAVE", b"fmt ", 16, _PCM, channels,
                       sample_rate, sample_rate * 2 * channels, 2 * channels, 16, b"data", len(q))  # fmt: skip
    Path(path).write_bytes(head + q)
    return Path(path)
