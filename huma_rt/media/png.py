"""PNG frames with zlib only (no imaging library needed): RGB8, no interlace."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from huma_rt.errors import InputError


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray, level: int = 3) -> bytes:
    """rgb [H, W, 3] uint8 -> PNG bytes."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise InputError(f"PNG frames must be uint8 [H, W, 3]; got {got}")
    h, w, _ = rgb.shape
    rows = np.zeros((h, 1 + 3 * w), np.uint8)  # filter byte 0 (None) per row
    rows[:, 1:] = rgb.reshape(h, 3 * w)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _chunk(b"IEND", b"")


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write one [H, W, 3] uint8 frame as a PNG file."""
    p = Path(path)
    p.write_bytes(encode_png(rgb))
    return p
