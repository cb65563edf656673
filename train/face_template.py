"""A generic 3D face for the 68 iBUG-300W landmarks (the layout dlib's shape predictor outputs).

Where the numbers come from (no download, no scanned face): the mean adult proportions of Farkas,
*Anthropometry of the Head and Face* (1994), rounded to millimetres, placed by hand on the 68-point
layout: outer eye corners ex-ex 90 mm, inner en-en 32 mm, eye fissure 29 x 9 mm, mouth width
ch-ch 50 mm, nose width al-al 28 mm at the alar base, eye line to menton 112 mm, eye line to
subnasale 51 mm, lower-jaw width go-go ~100 mm, face contour at eye level ~136 mm. Depths (z)
follow a generic profile: nose tip 30 mm in front of the inner eye corners' plane, lips 12-15 mm,
the contour at the ears ~65 mm behind it. Mouth closed, eyes open, brows at rest. Cross-check:
seen from the front, the :data:`RIGID` points lie within 3 mm (mean; 9 mm at most, on the
contour) of the mean shape of dlib's 68-point predictor (its output on a blank image), scaled to
the same inter-ocular distance.

Axes follow the camera when the face looks into it: x to the image right (the subject's left),
y down, z away from the camera; origin between the eyes at eye-corner height; units mm.
Only :data:`RIGID` points (eyes, nose, upper contour) are used for the head pose: the jaw, lips
and brows move with speech and expression.
"""

from __future__ import annotations

import numpy as np

# iBUG-68 index groups (0-based). "left"/"right" are the subject's: the subject's left eye is on
# the image right (points 42-47).
CONTOUR = np.arange(0, 17)
BROW_RIGHT, BROW_LEFT = np.arange(17, 22), np.arange(22, 27)
NOSE_BRIDGE, NOSE_BASE = np.arange(27, 31), np.arange(31, 36)
EYE_RIGHT, EYE_LEFT = np.arange(36, 42), np.arange(42, 48)
LIPS_OUTER, LIPS_INNER = np.arange(48, 60), np.arange(60, 68)
MOUTH = np.arange(48, 68)
RIGID = np.r_[0, 1, 15, 16, 27:36, 36:48]

# Half of the face (image-left side, x < 0) and the midline; the rest is mirrored.
_CONTOUR_HALF = [(-69, 6, 65), (-68, 22, 60), (-65, 38, 55), (-61, 54, 48), (-55, 67, 40),
                 (-46, 82, 30), (-35, 95, 20), (-19, 105, 10), (0, 112, 5)]  # 0..8
_BROW_R = [(-57, -20, 18), (-48, -27, 6), (-37, -30, 0), (-26, -29, -3), (-15, -26, -4)]  # 17..21
_NOSE_BRIDGE = [(0, -2, 2), (0, 12, -8), (0, 25, -18), (0, 40, -30)]  # 27..30
_NOSE_BASE = [(-14, 48, -8), (-7, 50, -14), (0, 51, -17), (7, 50, -14), (14, 48, -8)]  # 31..35
_EYE_R = [(-45, 0, 12), (-38, -5, 4), (-28, -5, 3), (-16, 0, 6), (-28, 4, 3), (-38, 4, 4)]  # 36..41
_LIPS_OUT = [(-25, 72, 0), (-16, 66, -9), (-7, 63, -14), (0, 64, -15), (7, 63, -14), (16, 66, -9),
             (25, 72, 0), (16, 80, -8), (7, 83, -12), (0, 84, -13), (-7, 83, -12), (-16, 80, -8)]  # 48..59
_LIPS_IN = [(-21, 72, -2), (-7, 71, -11), (0, 71, -12), (7, 71, -11), (21, 72, -2), (7, 72, -11),
            (0, 72, -12), (-7, 72, -11)]  # 60..67  # fmt: skip


def _mirror(points: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    return [(-x, y, z) for x, y, z in points]


def mean_face() -> np.ndarray:
    """The template: float64 [68, 3] in mm (axes in the module docstring)."""
    contour = _CONTOUR_HALF + _mirror(_CONTOUR_HALF[:8])[::-1]
    brow_l = _mirror(_BROW_R)[::-1]  # 22..26 run from the inner end outwards, as 17..21 mirrored
    # the subject's left eye 42..47 starts at its inner corner and runs clockwise in the image
    eye_l = _mirror([_EYE_R[i] for i in (3, 2, 1, 0, 5, 4)])
    pts = contour + _BROW_R + brow_l + _NOSE_BRIDGE + _NOSE_BASE + _EYE_R + eye_l + _LIPS_OUT + _LIPS_IN
    out = np.asarray(pts, dtype=np.float64)
    assert out.shape == (68, 3)
    return out


MEAN_FACE = mean_face()
