"""Audio files as users hold them -> float32 PCM, through PyAV (FFmpeg's demuxers and decoders).

Accepted: WAV (8-bit unsigned, 16/24/32-bit integer, 32/64-bit float), W64, AIFF, FLAC, MP3,
M4A/MP4 (AAC, ALAC), OGG (Vorbis, Opus), WebM/Matroska audio and raw AAC (ADTS); any number of
channels up to :data:`MAX_CHANNELS`, any sample rate in ``MIN_RATE..MAX_RATE`` Hz (the runtime
resampler's range), at most :data:`MAX_SECONDS` of audio.

Why PyAV rather than our own parsers: FFmpeg is the decoder every player uses, it is already a
dependency of the ``media`` and ``speech`` extras (for MP4 output), and measured on a 60 s
44.1 kHz MP3 it decodes and resamples to 16 kHz in well under a second on one core (figures in
docs/formats.md). The hand-written WAV reader it replaces read one container only.

Bounds (a file is input an attacker may control): only the demuxers listed in ``_DEMUXERS`` are
allowed (no playlists, no network); the channel count, sample rate and declared duration are
checked before decoding, and the decoded length is checked frame by frame, so a tiny compressed
file that expands to days of audio is refused after at most :data:`MAX_SECONDS` of it. Every
failure is a FormatError naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import FormatError, InputError

# the resampler's range (every rate read can be resampled) and the resampler itself
from huma_rt.runtime.audio_input import MAX_RATE, MIN_RATE, StreamResampler, check_rate

log = logging.getLogger(__name__)

MAX_SECONDS = 3600.0  # one hour: far beyond any utterance; bounds memory (1 h at 16 kHz = 230 MB)
MAX_CHANNELS = 8  # 7.1 surround; more is not a recording a user speaks into
_READ_VALUES_PER_SECOND = 48000 * 2  # read_audio's own bound: 1 h of 48 kHz stereo is 1.4 GB of float32
_PUSH = 1 << 16  # samples handed to the resampler at once (its output does not depend on this)
# FFmpeg demuxer names allowed to open a file (format_whitelist): audio containers only.
_DEMUXERS = "wav,w64,aiff,flac,mp3,mov,mp4,m4a,3gp,ogg,aac,matroska,webm"
# sample format -> (offset, scale) to float32 in [-1, 1]
_SCALE = {"u8": (128.0, 1 / 128), "s16": (0.0, 1 / 32768), "s32": (0.0, 1 / 2147483648),
          "s64": (0.0, 1 / 9223372036854775808), "flt": (0.0, 1.0), "dbl": (0.0, 1.0)}  # fmt: skip


@dataclass(frozen=True)
class AudioFileInfo:
    """What a file held: container and codec names, native sample rate, channels, seconds decoded."""

    container: str
    codec: str
    sample_rate: int
    channels: int
    seconds: float


def read_audio(path: str | os.PathLike, *, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """(pcm, sample_rate) at the file's own rate: float32 [S] for mono, [S, C] otherwise, in [-1, 1].

    Holds the whole file at its own rate, so besides ``max_seconds`` it stops at as many values
    as ``max_seconds`` of 48 kHz stereo (:func:`load_audio` has no such limit: it resamples to
    16 kHz mono while decoding).

    Raises FormatError naming the file for a missing, empty, undecodable or out-of-bounds file;
    MissingDependencyError when PyAV (the ``media`` extra) is not installed.
    """
    parts: list[np.ndarray] = []
    rate = 0
    values, limit = 0, int(max_seconds * _READ_VALUES_PER_SECOND)
    for block, info in _decode(path, max_seconds):
        parts.append(block)
        rate = info.sample_rate
        values += block.size
        if values > limit:  # 1 h of 384 kHz x 8 channels would be 44 GB: read_audio keeps it all
            raise FormatError(f"{path}: holds more than {max_seconds:g} s of 48 kHz stereo worth of samples "
                              f"({info.channels} channels at {rate} Hz); read it with load_audio, which "
                              "resamples while decoding")  # fmt: skip
    if len({p.shape[0] for p in parts}) > 1:
        raise FormatError(f"{path}: the channel count changes inside the stream "
                          f"({sorted({p.shape[0] for p in parts})}); expected one")  # fmt: skip
    pcm = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    pcm = pcm[0].copy() if pcm.shape[0] == 1 else np.ascontiguousarray(pcm.T)
    return pcm, rate


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, *,
               max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, AudioFileInfo]:  # fmt: skip
    """A file -> (mono float32 [S] at ``sample_rate``, info), what the avatar and the CLI take.

    Channels are averaged and the rate converted frame by frame while decoding (the runtime's
    streaming resampler, the filter ``Avatar.render`` and sessions use), so memory stays at the
    output size whatever the file's rate and channel count.
    """
    sample_rate = check_rate(sample_rate)
    out: list[np.ndarray] = []
    pending: list[np.ndarray] = []  # decoded frames are ~1k samples; the resampler prefers blocks
    held = 0
    resampler = None
    info = None
    for block, info in _decode(path, max_seconds):
        pending.append(block[0].copy() if block.shape[0] == 1 else block.mean(axis=0, dtype=np.float32))
        held += pending[-1].size
        if held >= _PUSH:
            resampler = resampler or _resampler(StreamResampler, info.sample_rate, sample_rate)
            out.append(resampler.push(np.concatenate(pending)))
            pending, held = [], 0
    assert info is not None
    resampler = resampler or _resampler(StreamResampler, info.sample_rate, sample_rate)
    if pending:
        out.append(resampler.push(np.concatenate(pending)))
    out.append(resampler.flush())
    return np.concatenate(out).astype(np.float32, copy=False), info


class _Same:
    """The resampler's push/flush when the rates already match."""

    def push(self, x: np.ndarray) -> np.ndarray:
        return x

    def flush(self) -> np.ndarray:
        return np.zeros(0, np.float32)


def _resampler(cls, src: int, dst: int):
    return _Same() if src == dst else cls(src, dst)


def _open(av, path: Path):
    if not path.is_file():
        raise FormatError(f"audio file {path} does not exist" if not path.exists() else
                          f"audio file {path} is not a regular file")  # fmt: skip
    if path.stat().st_size == 0:
        raise FormatError(f"audio file {path} is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore",
                       options={"format_whitelist": _DEMUXERS, "protocol_whitelist": "file"})  # fmt: skip
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not an audio file this reader decodes (WAV, FLAC, MP3, M4A, OGG, ...): "
                          f"{_reason(exc)}") from None  # fmt: skip


def _decode(path: str | os.PathLike, max_seconds: float) -> Iterator[tuple[np.ndarray, AudioFileInfo]]:
    """Yield (float32 [C, n] block, info so far) per decoded frame; at least one block or FormatError."""
    av = require("av", "reading audio files")
    if not (isinstance(max_seconds, (int, float)) and 0 < max_seconds <= MAX_SECONDS):
        raise InputError(f"max_seconds must be in (0, {MAX_SECONDS:g}]; got {max_seconds!r}")
    path = Path(path)
    container = _open(av, path)
    with container:
        if not container.streams.audio:
            raise FormatError(f"{path}: holds no audio stream ({container.format.name} container)")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None:  # FFmpeg found no decoder for the stream's codec tag
            raise FormatError(f"{path}: the audio stream has a codec no decoder here reads ({container.format.name} container)")
        codec = ctx.name
        channels, rate = _check_stream(path, ctx.channels, ctx.sample_rate)
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise FormatError(f"{path}: declares {declared:.0f} s of audio; at most {max_seconds:g} s is read")
        limit = int(max_seconds * rate)
        total = 0
        try:
            for frame in container.decode(stream):
                if frame.samples == 0:
                    continue
                if frame.sample_rate != rate:
                    raise FormatError(f"{path}: sample rate changes from {rate} Hz to {frame.sample_rate} Hz "
                                      "inside the stream; expected one rate")  # fmt: skip
                _check_stream(path, frame.layout.nb_channels, frame.sample_rate)
                block = _to_float(path, frame)
                total += block.shape[1]
                if total > limit:
                    raise FormatError(f"{path}: decodes to more than {max_seconds:g} s of audio (the maximum)")
                yield block, AudioFileInfo(container.format.name, codec, rate, block.shape[0], total / rate)
        except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
            raise FormatError(f"{path}: undecodable {codec} audio after {total / rate:.2f} s: "
                              f"{_reason(exc)}") from None  # fmt: skip
        if total == 0:
            raise FormatError(f"{path}: holds no audio samples ({container.format.name}, {codec})")


def _check_stream(path: Path, channels: int, rate: int) -> tuple[int, int]:
    if not 1 <= channels <= MAX_CHANNELS:
        raise FormatError(f"{path}: {channels} audio channels; expected 1..{MAX_CHANNELS}")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise FormatError(f"{path}: sample rate {rate} Hz; expected {MIN_RATE}..{MAX_RATE} Hz")
    return channels, rate


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _to_float(path: Path, frame) -> np.ndarray:
    """One decoded frame -> float32 [C, n] with the format's exact integer scale."""
    name = frame.format.name.rstrip("p")
    if name not in _SCALE:
        raise FormatError(f"{path}: decoder produced sample format {frame.format.name!r}; expected one of "
                          f"{sorted(_SCALE)}")  # fmt: skip
    raw = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        raw = raw.reshape(-1, channels).T
    offset, scale = _SCALE[name]
    if name in ("s32", "s64"):  # float32 cannot hold 32-bit steps: scale in float64, then round once
        x = (raw.astype(np.float64) * scale).astype(np.float32)
    elif name in ("flt", "dbl"):
        x = raw.astype(np.float32)
        if not np.isfinite(x).all():
            raise FormatError(f"{path}: holds NaN or Inf samples; expected finite PCM")
    else:
        x = (raw.astype(np.float32) - np.float32(offset)) * np.float32(scale)
    return np.ascontiguousarray(x)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)  # FFmpegError: without errno and path
    return text or type(exc).__name__
