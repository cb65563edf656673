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
    y0 = max(int(np.floor(poly[:, 1].min())), 0)
    y1 = min(int(np.ceil(poly[:, 1].max())), height - 1)
    x0 = max(int(np.floor(poly[:, 0].min())), 0)
    x1 = min(int(np.ceil(poly[:, 0].max())), width - 1)
    if y1 < y0 or x1 < x0:
        return out
    a, b = poly, np.roll(poly, -1, axis=0)
    ys = np.arange(y0, y1 + 1, dtype=np.float64)[:, None] + 0.5  # [R, 1] row centres
    cross = (a[:, 1] <= ys) != (b[:, 1] <= ys)  # [R, E] edges that straddle the row
    dy = np.where(b[:, 1] == a[:, 1], 1.0, b[:, 1] - a[:, 1])
    x = np.where(cross, a[:, 0] + (ys - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy, np.inf)  # [R, E]
    xs = np.arange(x0, x1 + 1, dtype=np.float64) + 0.5  # [C] pixel centres
    left = (x[:, :, None] < xs).sum(axis=1)  # [R, C] crossings left of each pixel
    out[y0 : y1 + 1, x0 : x1 + 1] = np.where(left % 2 == 1, 255, 0).astype(np.uint8)
    return out
