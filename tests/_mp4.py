"""Test videos written with the package's own MP4 writer (huma_rt.media.Mp4Writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """Frames (uint8 [H, W, 3], all one size) -> an H.264 MP4 at ``path``; returns the path."""
    from huma_rt.media import Mp4Writer

    h, w = frames[0].shape[:2]
    with Mp4Writer(path, fps, (w, h)) as mp4:
        for f in frames:
            mp4.write(f)
    return path
