"""Test media made in the tests (none committed): audio files of every format the reader takes.

``write_audio(path, pcm, rate, kind)`` encodes float32 [S] or [S, C] through PyAV (or soundfile
for WAV subtypes); kinds: mp3, m4a (AAC), ogg (Vorbis, stereo: FFmpeg's Vorbis encoder takes
two channels only), opus (OGG Opus, 48 kHz), flac, and wav-<soundfile subtype> (wav-PCM_U8 is
8-bit).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

_CODECS = {"mp3": ("libmp3lame", None), "m4a": ("aac", "mp4"), "ogg": ("vorbis", "ogg"),
           "opus": ("libopus", "ogg"), "flac": ("flac", None)}  # fmt: skip
KINDS = ("mp3", "m4a", "ogg", "opus", "flac", "wav-PCM_U8", "wav-PCM_16", "wav-PCM_24", "wav-PCM_32", "wav-FLOAT")


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    """A 0.3-amplitude sine, float32 [S] (mono) or [S, C]."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.repeat(x[:, None], channels, axis=1)


def write_audio(path: Path, pcm: np.ndarray, rate: int, kind: str) -> Path:
    """Encode ``pcm`` at ``rate`` as ``kind``; returns ``path``."""
    path = Path(path)
    if kind.startswith("wav-"):
        import soundfile

        soundfile.write(path, pcm, rate, subtype=kind[4:], format="WAV")
        return path
    import av

    codec, fmt = _CODECS[kind]
    x = np.asarray(pcm, np.float32).reshape(len(pcm), -1)
    layout = "mono" if x.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate, options={"strict": "-2"} if codec == "vorbis" else {})
        s.layout = layout
        for i in range(0, len(x), 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[i : i + 1024].T), format="fltp", layout=layout)
            f.sample_rate, f.pts, f.time_base = rate, i, Fraction(1, rate)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_kind(directory: Path, kind: str, seconds: float = 1.0, rate: int = 44100) -> tuple[Path, np.ndarray]:
    """A tone of ``seconds`` in format ``kind`` under ``directory`` -> (path, the pcm written)."""
    channels = 2 if kind == "ogg" else 1
    rate = 48000 if kind == "opus" else rate
    pcm = tone(seconds, rate, channels)
    ext = kind.split("-")[0]
    name = f"{kind.replace('-', '_')}.{ext}"
    return write_audio(Path(directory) / name, pcm, rate, kind), pcm
