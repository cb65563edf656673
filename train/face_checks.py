"""Per-frame checks that a tracked face is really seen: the lips' colour contrast.

A hand, a microphone or a sheet in front of the mouth leaves the 68 landmarks in a plausible
place (the shape predictor's trees are trained to output face shapes), so their positions do not
tell. What disappears is the lips: the vermilion is redder than the cheeks on every skin tone
(measured on the FGNet clips: chroma contrast 0.07-0.13 on open and shut mouths, below 0.04
with a skin-coloured hand pasted over the mouth). The tracker compares each frame's contrast with
the person's own median, so the absolute value does not matter; a grey-scale video has no
contrast at all and the check is skipped there.
"""

from __future__ import annotations

import numpy as np

from .face_matte import rasterize

CHEEK_RIGHT = (1, 2, 31, 29)  # a quad below the eye between the contour and the nose
CHEEK_LEFT = (15, 14, 35, 29)


def _redness(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    return (x[..., 0] - x[..., 1]) / (x.sum(-1) + 1.0)


def lip_contrast(rgb: np.ndarray, points: np.ndarray) -> float:
    """Mean redness (R-G)/(R+G+B) of the lip band minus that of the cheeks, from landmarks [68, 2].

    NaN when the regions fall outside the image."""
    h, w = rgb.shape[:2]
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return float("nan")
    red = _redness(rgb[y0:y1, x0:x1])
    origin = np.array([x0, y0], np.float64)
    band = rasterize(points[48:60] - origin, *red.shape) > 0
    band &= rasterize(points[60:68] - origin, *red.shape) == 0
    cheeks = (rasterize(points[list(CHEEK_RIGHT)] - origin, *red.shape) > 0) | (
        rasterize(points[list(CHEEK_LEFT)] - origin, *red.shape) > 0
    )
    if not band.any() or not cheeks.any():
        return float("nan")
    return float(red[band].mean() - red[cheeks].mean())
