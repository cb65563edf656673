"""The mouth's width from the lips' colour (train/lip_shape.py): drawn mouths of known width under
misplaced landmark corners, roll and skin tones; NaN where lips cannot be told from skin."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.train.lip_shape import mouth_width

SIZE = 200


def _mouth(half_w: float, half_h: float, skin, lips, roll_deg: float = 0.0, corner_ratio: float = 0.8,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """An image uint8 [SIZE, SIZE, 3] of lips (an ellipse, anti-aliased, with a dark seam) on skin
    with pixel noise, and 68 landmarks whose mouth contour sits ``corner_ratio`` of the way to the
    lips' ends (dlib's corners fall short of them), all rolled by ``roll_deg``."""
    rng = np.random.default_rng(seed)
    c = np.array([SIZE / 2 + 0.3, SIZE / 2 - 0.2])
    a = np.radians(roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    ss = 4  # supersampling for the anti-aliased edge
    g = (np.arange(SIZE * ss) + 0.5) / ss
    yy, xx = np.meshgrid(g, g, indexing="ij")
    local = np.stack([xx - c[0], yy - c[1]], -1) @ rot  # image -> mouth frame
    inside = (local[..., 0] / half_w) ** 2 + (local[..., 1] / half_h) ** 2 < 1
    cover = inside.reshape(SIZE, ss, SIZE, ss).mean((1, 3))[..., None]
    seam = (np.abs(local[..., 1]) < 0.8) & inside
    dark = seam.reshape(SIZE, ss, SIZE, ss).mean((1, 3))[..., None]
    img = (1 - cover) * np.asarray(skin, float) + cover * np.asarray(lips, float)
    img = img * (1 - 0.6 * dark) + rng.normal(0, 2.0, img.shape)
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)  # 48 = right corner, then along the top
    outer = np.stack([-np.cos(t) * half_w * corner_ratio, -np.sin(t) * half_h * 0.9], -1)
    ti = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    inner = np.stack([-np.cos(ti) * half_w * corner_ratio * 0.8, -np.sin(ti) * 1.0], -1)
    pts = np.full((68, 2), np.nan)
    pts[48:60] = outer @ rot.T + c
    pts[60:68] = inner @ rot.T + c
    return img.clip(0, 255).astype(np.uint8), pts


@pytest.mark.parametrize("roll", [0.0, 25.0])
@pytest.mark.parametrize("skin, lips", [((205, 160, 135), (185, 95, 100)), ((95, 62, 45), (105, 50, 52))])
def test_width_of_a_drawn_mouth_not_where_the_corners_say(roll, skin, lips):
    for half_w in (30.0, 38.0):
        img, pts = _mouth(half_w, 11.0, skin, lips, roll)
        corners = np.linalg.norm(pts[54] - pts[48])
        w = mouth_width(img, pts)
        # within 1.5 px (the dark seam reaching the ends reads ~0.5 px outward per side) where the
        # landmark corners are 15 px short
        assert abs(w - 2 * half_w) < 1.5, (w, 2 * half_w, corners)
        assert abs(corners - 2 * half_w) > 10


def test_sub_pixel_steps_are_seen():
    widths = [mouth_width(*_mouth(34.0 + d, 11.0, (205, 160, 135), (185, 95, 100))) for d in (0.0, 0.25, 0.5)]
    steps = np.diff(widths)
    assert np.all(np.abs(steps - 0.5) < 0.2), widths  # 0.25 px per side -> 0.5 px wider


def test_not_measurable_is_nan():
    img, pts = _mouth(34.0, 11.0, (180, 140, 120), (180, 140, 120))  # lips the skin's colour
    assert np.isnan(mouth_width(img, pts))
    img, pts = _mouth(34.0, 11.0, (205, 160, 135), (185, 95, 100))
    assert np.isnan(mouth_width(img, pts[:, ::-1] * 0 + 3.0))  # a mouth of no width
    assert np.isnan(mouth_width(img, pts + 500.0))  # outside the image
    nan = pts.copy()
    nan[50] = np.nan
    assert np.isnan(mouth_width(img, nan))
    grey = np.repeat(img.mean(-1, keepdims=True), 3, -1).astype(np.uint8)
    w = mouth_width(grey, pts)  # brightness alone still separates these lips, or it says NaN
    assert np.isnan(w) or abs(w - 68.0) < 2.0
