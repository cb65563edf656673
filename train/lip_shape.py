"""The mouth's width measured from the lips' colour, sub-pixel, in a small crop around the landmarks.

dlib's 68 points place the mouth corners from the face's overall shape more than from the lips
themselves: on the closed-loop demo head they move ~2 mm where the lips' ends move ~10 mm
(rounding pulls the corners in by 45 % of the half-width), and the landmark width follows the
rendered rounding at r 0.2-0.4. The lips' own extent follows it at r 0.96.

How: the image is resampled on a grid aligned with the landmark corners (so roll does not
matter) at ``GRID`` samples per landmark mouth width. Two colour samples come from the landmarks:
the lip band (inside the outer lip contour, outside the inner one, both shrunk so a misplaced
contour still lands on lip) and the skin around the mouth (outside the contour, widened). Each
pixel's Mahalanobis distance to the skin colour, in chromaticity (r, g) and brightness, over the
lips' median distance, says how un-skin-like it is (0 skin, 1 lips; the open mouth's inside is
far from skin too): the person's own skin and lips set the scale, whatever their colour. The
width is where that falls through one half on both sides of the mouth's centre, walking
outwards along the corner axis in a band about the lip line, interpolated between samples.

NaN when it cannot be measured (mouth too small, lips too close to the skin's colour, nothing
lip-like at the centre, or the lips reaching the edge of the crop: a beard, a shadow joining
them). The tracker (tracking.py) also drops frames whose width strays from the landmark width's
usual ratio, and keeps the landmark width for a video where too few frames were measured.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from .face_matte import rasterize

GRID = 40  # samples per landmark mouth width
SPAN_U, SPAN_V = 0.9, 0.5  # half extents of the grid in landmark mouth widths
BAND_V = 0.2  # half height of the band about the lip line where the width is read
MIN_WIDTH_PX = 8.0
# the lips' median Mahalanobis distance to the skin colour below which they are not told apart:
# median 7.9 on the demo head, 5.8 on FGNet cap13, 3.1 on franck (pale lips, 360x288), where the
# colour edge runs on into the skin folds at the corners (widths 1.1-1.4x the lips')
MIN_SEPARATION = 3.0
_OUTER, _INNER = list(range(48, 60)), list(range(60, 68))


def _crossing(profile: np.ndarray, start: int, step: int) -> float | None:
    """Samples from ``start`` to where ``profile`` falls through 0.5 walking by ``step``,
    interpolated; None when it never falls inside the profile."""
    i, n = start, len(profile)
    while 0 <= i + step < n and profile[i + step] >= 0.5:
        i += step
    if not 0 <= i + step < n:
        return None
    a, b = profile[i], profile[i + step]
    return abs(i - start) + (a - 0.5) / max(a - b, 1e-6)


def mouth_width(rgb: np.ndarray, points: np.ndarray) -> float:
    """The lips' outer width in pixels along the landmark corner axis, or NaN (module docstring).

    rgb uint8 [H, W, 3]; points float [68, 2] pixels (dlib's 68, this frame's).
    """
    return _measure(rgb, points)[0]


def _measure(rgb: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """(width px or NaN, the lips' median distance to the skin colour or NaN)."""
    nan = float("nan"), float("nan")
    pts = np.asarray(points, np.float64)
    if not np.isfinite(pts[48:68]).all():
        return nan
    axis = pts[54] - pts[48]
    width = float(np.linalg.norm(axis))
    if width < MIN_WIDTH_PX:
        return nan
    u = axis / width
    v = np.array([-u[1], u[0]])
    centre = pts[48:68].mean(0)
    step = width / GRID
    nu, nv = int(SPAN_U * GRID), int(SPAN_V * GRID)
    gu, gv = np.meshgrid(np.arange(-nu, nu + 1) * step, np.arange(-nv, nv + 1) * step)  # [V, U] pixels
    xs = centre[0] + gu * u[0] + gv * v[0]
    ys = centre[1] + gu * u[1] + gv * v[1]
    h, w = rgb.shape[:2]
    x0, y0 = max(int(xs.min()) - 1, 0), max(int(ys.min()) - 1, 0)
    x1, y1 = min(int(xs.max()) + 2, w), min(int(ys.max()) + 2, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return nan
    crop = rgb[y0:y1, x0:x1].astype(np.float32)
    coords = [ys - y0, xs - x0]
    img = np.stack([map_coordinates(crop[..., k], coords, order=1, mode="nearest") for k in range(3)], -1)
    total = img.sum(-1) + 1.0
    colour = np.stack([img[..., 0] / total, img[..., 1] / total, total / 765.0], -1)  # [V, U, 3]

    local = (pts - centre) @ np.stack([u, v], 1)  # landmarks in pixels along (u, v) [68, 2]
    outer, inner = local[_OUTER], local[_INNER]

    def fill(poly: np.ndarray) -> np.ndarray:  # grid samples inside a polygon given along (u, v)
        return rasterize(poly / step + np.array([nu + 0.5, nv + 0.5]), *gu.shape) > 0

    lip = fill(outer * 0.9) & ~fill(inner * 1.15)
    if lip.sum() < 10:  # a thin mouth: the shrunk band is empty
        lip = fill(outer) & ~fill(inner)
    skin = ~fill(outer * np.array([1.25, 1.6])) & (np.abs(gu) < 0.8 * width)
    if lip.sum() < 10 or skin.sum() < 20:
        return nan
    sk = colour[skin]
    mean = sk.mean(0)
    inv = np.linalg.inv(np.cov(sk.T) + 1e-5 * np.eye(3))
    d = colour - mean
    dist = np.sqrt(np.einsum("...i,ij,...j->...", d, inv, d))
    sep = float(np.median(dist[lip]))
    if sep < MIN_SEPARATION:
        return float("nan"), sep
    # a blend of skin and lip colour lies at its blend fraction of the way: linear, so the 0.5
    # crossing interpolated between samples is the edge to a fraction of a pixel
    unskin = dist / sep
    band = np.abs(gv[:, 0]) <= BAND_V * width
    presence = unskin[band].max(0)
    if presence[nu] < 0.5:
        return float("nan"), sep
    left, right = _crossing(presence, nu, -1), _crossing(presence, nu, 1)
    if left is None or right is None:
        return float("nan"), sep
    return (left + right) * step, sep
