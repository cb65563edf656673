"""Frame: one video frame of a session, in sync with the audio it belongs to."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    """Video frame ``index`` of a session.

    pts: presentation time in seconds (index / fps). sample_start, sample_end: the span
    [start, end) of 16 kHz audio samples this frame shows (index * 640, (index + 1) * 640 at
    25 fps), counted from the session's first pushed sample. rgb: [H, W, 3] uint8 read-only view
    of a buffer the session owns and overwrites with the next frame: valid until the session
    produces its next frame; ``frame.rgb.copy()`` to keep it.
    """

    index: int
    pts: float
    sample_start: int
    sample_end: int
    rgb: np.ndarray
