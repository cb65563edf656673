"""A coarse person matte from the landmarks: face, hair and neck as one polygon per frame.

Choice: the landmark hull extended upwards by a half-ellipse over the skull (height = the
eyes-to-chin distance, which reaches past the hairline of most heads) and downwards by a neck
trapezoid to ~0.8 face heights below the chin; the polygon turns with the head's roll (it is
built on the eye line's axes). It is a prior, not a segmentation: the static fit refines it
(or a background plate, the temporal median of the pixels outside it, replaces it). Stored as
polygon vertices (25 x 2 floats a frame) instead of masks: a 10-minute video of masks would be
gigabytes; :func:`rasterize` draws one when needed.
"""

from __future__ import annotations

import numpy as np

from .face_template import EYE_LEFT, EYE_RIGHT

ARC = 13  # points on the skull's half-ellipse
VERTICES = ARC + 12


def matte_polygon(points: np.ndarray) -> np.ndarray:
    """Landmarks float [68, 2] -> matte polygon float32 [VERTICES, 2] (pixels, closed implicitly)."""
    p = np.asarray(points, np.float64)
    centre_all = p.mean(0)
    p = centre_all + (p - centre_all) * 1.06  # the contour landmarks sit on the skin's edge
    er, el = p[EYE_RIGHT].mean(0), p[EYE_LEFT].mean(0)
    ex = (el - er) / max(np.linalg.norm(el - er), 1e-6)  # image-right along the eye line
    ey = np.array([-ex[1], ex[0]])  # down the face
    eyes = (er + el) / 2
    face_h = max(float((p[8] - eyes) @ ey), 1.0)
    centre = (p[0] + p[16]) / 2
    half_w = 1.1 * float((p[16] - p[0]) @ ex) / 2
    ang = np.linspace(np.pi, 0, ARC + 2)[1:-1]
    arc = centre + (half_w * np.cos(ang))[:, None] * ex - (1.0 * face_h * np.sin(ang))[:, None] * ey
    neck_y = p[8] + 0.8 * face_h * ey
    neck_l = neck_y + float((p[5] - p[8]) @ ex) * ex
    neck_r = neck_y + float((p[11] - p[8]) @ ex) * ex
    poly = np.vstack([neck_l, p[4::-1], arc, p[16:11:-1], neck_r])
    return poly.astype(np.float32)


def rasterize(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fill ``polygon`` float [P, 2] (even-odd rule, pixel centres) -> uint8 [H, W] of 0/255."""
    out = np.zeros((height, width), np.uint8)
    poly = np.asarray(polygon, np.float64)
    a, b = poly, np.roll(poly, -1, axis=0)
    y0 = max(int(np.floor(poly[:, 1].min())), 0)
    y1 = min(int(np.ceil(poly[:, 1].max())), height - 1)
    xs = np.arange(width) + 0.5
    for y in range(y0, y1 + 1):
        yc = y + 0.5
        cross = (a[:, 1] <= yc) != (b[:, 1] <= yc)
        if not cross.any():
            continue
        ca, cb = a[cross], b[cross]
        x = ca[:, 0] + (yc - ca[:, 1]) * (cb[:, 0] - ca[:, 0]) / (cb[:, 1] - ca[:, 1])
        inside = (np.searchsorted(np.sort(x), xs) % 2) == 1
        out[y, inside] = 255
    return out
