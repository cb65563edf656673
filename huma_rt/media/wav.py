"""A small, strict WAV reader: PCM 16/24/32-bit integer and 32-bit float, any rate, mono/stereo."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from huma_rt.errors import FormatError

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples, sample_rate): float32 [S] for mono, [S, 2] for stereo, scaled to [-1, 1].

    FormatError for anything else (compressed formats, 8-bit, more than 2 channels, truncated
    or malformed files), naming what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"WAV file {path} does not exist")
    data = path.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise FormatError(f"{path} is not a RIFF/WAVE file (starts with {data[:4]!r})")
    fmt = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > len(data):
                raise FormatError(f"{path}: fmt chunk is truncated ({size} bytes)")
            fmt = struct.unpack_from("<HHIIHH", data, body)
            if fmt[0] == _EXTENSIBLE:
                if size < 40:
                    raise FormatError(f"{path}: WAVE_FORMAT_EXTENSIBLE fmt chunk is truncated")
                fmt = (struct.unpack_from("<H", data, body + 24)[0], *fmt[1:])
        elif cid == b"data":
            if fmt is None:
                raise FormatError(f"{path}: data chunk before the fmt chunk")
            end = min(body + size, len(data))  # streamed WAVs may carry a size past the end
            return _decode(path, data[body:end], fmt)
        pos = body + size + (size & 1)
    raise FormatError(f"{path}: no data chunk")


def _decode(path: Path, raw: bytes, fmt: tuple) -> tuple[np.ndarray, int]:
    tag, channels, rate, _, block, bits = fmt
    if channels not in (1, 2):
        raise FormatError(f"{path}: WAV must be mono or stereo; got {channels} channels")
    if rate <= 0:
        raise FormatError(f"{path}: WAV sample rate must be positive; got {rate}")
    if (tag, bits) not in ((_PCM, 16), (_PCM, 24), (_PCM, 32), (_FLOAT, 32)):
        kind = {_PCM: "integer PCM", _FLOAT: "float"}.get(tag, f"format tag {tag:#x}")
        raise FormatError(
            f"{path}: unsupported WAV encoding {kind} {bits}-bit; supported: PCM 16/24/32-bit, float 32-bit"
        )
    width = bits // 8
    if block != channels * width:
        raise FormatError(f"{path}: block align {block} does not match {channels} x {bits}-bit")
    n = len(raw) // block
    raw = raw[: n * block]
    if tag == _PCM and bits == 16:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / float(1 << 23)
    elif tag == _PCM and bits == 32:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        x = np.frombuffer(raw, "<f4").astype(np.float32)
        if not np.isfinite(x).all():
            raise FormatError(f"{path}: float WAV holds NaN or Inf samples")
    return (x.reshape(n, 2) if channels == 2 else x), int(rate)


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
