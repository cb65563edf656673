"""Articulation measured from tracked landmarks: named, person-independent mouth/eye/brow values.

The first five names and their order are the demo avatar's ``export/demo/articulation.PARAMS``
(jaw, round, spread, closure, blink; each in [0, 1]) so a tracked video drives what exists; the
rest refine them (signed values are in [-1, 1]; "left"/"right" are the subject's):

=========== ======================================================== ==================
name        measured as                                              full scale
=========== ======================================================== ==================
jaw         inner-lip gap above the person's rest (5th percentile)    20 mm  -> 1
round       mouth narrower than the person's median width            10 mm  -> 1
spread      mouth wider than the median width                        10 mm  -> 1
closure     lips thinner than their median (pressed), mouth shut      6 mm  -> 1
blink       mean of blink_left and blink_right                        -
upper_lip   upper lip nearer the nose than its median (raised)       +-6 mm -> +-1
lower_lip   lower lip nearer the chin than its median (dropped)      +-6 mm -> +-1
blink_left  eye aspect ratio (Soukupova & Cech 2016) below the       EAR 40 % of open
blink_right person's median open-eye value                            -> 1
brow_left   brow higher above the eye corners than its median        +-6 mm -> +-1
brow_right
=========== ======================================================== ==================

Person-independent: distances are measured in the template's millimetres (pixels divided by
the pose's scale, so a face near the camera and one far away read the same), corrected for the
head's roll, and for yaw and pitch by the cosine of the angle; then taken relative to the
person's own rest (a low percentile for the jaw gap, which is shut at rest; the median for
the others) and divided by a fixed full scale shared by everyone.

The mouth's width is the lips' own extent measured from their colour (lip_shape.py; tracking.py
passes it in) where that can be measured, else the landmark corners' distance: dlib places the
corners from the face's shape and moves them a fifth as far as the lips' ends move.
"""

from __future__ import annotations

import numpy as np

from .face_pose import euler_yxz, rodrigues

ARTICULATION = ("jaw", "round", "spread", "closure", "blink", "upper_lip", "lower_lip",
                "blink_left", "blink_right", "brow_left", "brow_right")  # fmt: skip
# raw per-frame measurements (mm, except the dimensionless eye aspect ratios)
FEATURES = ("gap", "width", "lip_thickness", "upper_lip_height", "lower_lip_height",
            "ear_left", "ear_right", "brow_left", "brow_right")  # fmt: skip
SIGNED = ("upper_lip", "lower_lip", "brow_left", "brow_right")
JAW_MM, WIDTH_MM, CLOSURE_MM, LIP_MM, BROW_MM = 20.0, 10.0, 6.0, 6.0, 6.0
CLOSED_EAR = 0.4  # an eye reads fully closed at 40 % of its open aspect ratio
JAW_REST_PERCENTILE = 5.0


def frontal_mm(points: np.ndarray, rotvec: np.ndarray, t: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Landmarks float [T, 68, 2] pixels -> float64 [T, 68, 2] template millimetres, roll removed,
    horizontal / cos(yaw) and vertical / cos(pitch)."""
    out = np.empty(points.shape, np.float64)
    for i in range(len(points)):
        ang = np.radians(euler_yxz(rodrigues(rotvec[i])))
        scale = k[0, 0] / max(t[i, 2], 1e-6)  # pixels per mm at the head's depth
        origin = (k[:2, :2] @ t[i, :2]) / max(t[i, 2], 1e-6) + k[:2, 2]
        c, s = np.cos(-ang[2]), np.sin(-ang[2])
        d = (points[i] - origin) / scale
        d = d @ np.array([[c, s], [-s, c]])
        d[:, 0] /= max(np.cos(ang[1]), 0.3)
        d[:, 1] /= max(np.cos(ang[0]), 0.3)
        out[i] = d
    return out


def _ear(e: np.ndarray) -> np.ndarray:
    """Eye aspect ratio of eye points [T, 6, 2]: mean lid gap / corner distance."""
    v = np.linalg.norm(e[:, 1] - e[:, 5], axis=-1) + np.linalg.norm(e[:, 2] - e[:, 4], axis=-1)
    return v / (2 * np.maximum(np.linalg.norm(e[:, 0] - e[:, 3], axis=-1), 1e-6))


def features(mm: np.ndarray, width: np.ndarray | None = None) -> np.ndarray:
    """Frontal landmarks float [T, 68, 2] (mm) -> float32 [T, len(FEATURES)].

    ``width`` float [T] mm: the mouth's width measured otherwise (the lips' colour, lip_shape.py);
    None takes the landmark corners' distance."""
    y, x = mm[..., 1], mm[..., 0]
    gap = ((y[:, 66] - y[:, 62]) + (y[:, 67] - y[:, 61]) + (y[:, 65] - y[:, 63])) / 3
    width = x[:, 54] - x[:, 48] if width is None else np.asarray(width, np.float64)
    thick = (y[:, 62] - y[:, 51]) + (y[:, 57] - y[:, 66])
    upper = y[:, 51] - y[:, 33]
    lower = y[:, 8] - y[:, 57]
    ear_l, ear_r = _ear(mm[:, 42:48]), _ear(mm[:, 36:42])
    # above the eye corners, which stay put when the lids close (the lids' mean does not)
    brow_l = (y[:, 42] + y[:, 45]) / 2 - y[:, 22:27].mean(1)
    brow_r = (y[:, 36] + y[:, 39]) / 2 - y[:, 17:22].mean(1)
    return np.stack([gap, width, thick, upper, lower, ear_l, ear_r, brow_l, brow_r], 1).astype(np.float32)


def rest_values(feats: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """The person's rest per feature from valid frames: 5th percentile of the lip gap, median of the rest."""
    f = feats[valid] if valid.any() else feats
    rest = {name: float(np.median(f[:, i])) for i, name in enumerate(FEATURES)}
    rest["gap"] = float(np.percentile(f[:, 0], JAW_REST_PERCENTILE))
    return rest


def articulation(feats: np.ndarray, rest: dict[str, float]) -> np.ndarray:
    """Features float [T, len(FEATURES)] and the person's rest -> float32 [T, len(ARTICULATION)]."""
    f = {name: feats[:, i].astype(np.float64) for i, name in enumerate(FEATURES)}
    d = {name: f[name] - rest[name] for name in FEATURES}
    jaw = np.clip(d["gap"] / JAW_MM, 0, 1)
    shut = d["gap"] < 2.0
    blink_l = np.clip(-d["ear_left"] / ((1 - CLOSED_EAR) * rest["ear_left"]), 0, 1)
    blink_r = np.clip(-d["ear_right"] / ((1 - CLOSED_EAR) * rest["ear_right"]), 0, 1)
    out = [
        jaw,
        np.clip(-d["width"] / WIDTH_MM, 0, 1),
        np.clip(d["width"] / WIDTH_MM, 0, 1),
        np.clip(-d["lip_thickness"] / CLOSURE_MM, 0, 1) * shut,
        (blink_l + blink_r) / 2,
        np.clip(-d["upper_lip_height"] / LIP_MM, -1, 1),
        np.clip(-d["lower_lip_height"] / LIP_MM, -1, 1),
        blink_l,
        blink_r,
        np.clip(d["brow_left"] / BROW_MM, -1, 1),
        np.clip(d["brow_right"] / BROW_MM, -1, 1),
    ]
    return np.stack(out, 1).astype(np.float32)
