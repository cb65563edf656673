"""The articulated fit's landmark region (train/articulated_region.landmark_region) and the
held-out regions (part_footprint, heldout_eval.head_mask): built from a person's template
(the mean face, made wider, longer and turned a little, as a tracked template would differ),
the region holds the lips, the chin and the eyes' lids and brows and leaves out what lies
below the jaw line, behind the face (hair, skull), on the forehead, the nose bridge and the ears."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from huma_rt.train.articulated_region import PARTS, face_height, landmark_region, part_footprint
from huma_rt.train.face_template import MEAN_FACE, MOUTH
from huma_rt.train.heldout_eval import head_mask

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera

MARGIN, BELOW_JAW, DEPTH_BACK = 0.06, 0.03, 0.2  # the fit's defaults (ArticulatedFitConfig)


def _person() -> np.ndarray:
    """Another face than the mean one: 8 % wider, 5 % longer, shifted, turned 4 degrees in-plane
    (a template solved from one person's landmarks sits off the mean face by millimetres)."""
    p = MEAN_FACE * [1.08, 1.05, 1.0] + [2.0, 3.0, -1.0]
    a = np.radians(4.0)
    r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return p @ r.T


def _surface_points(lm: np.ndarray, rng: np.random.Generator, n: int = 40000) -> np.ndarray:
    """Points on a face-like surface around the landmarks (depth from the nearest landmark)
    plus the collar (well below the chin), the back of the head and the ears."""
    xy = rng.uniform([-90, -90], [90, 200], (n, 2))
    d = np.linalg.norm(xy[:, None] - lm[None, :, :2], axis=-1)
    z = lm[d.argmin(1), 2] + rng.normal(0, 2.0, n)
    return np.concatenate([xy, z[:, None]], 1)


def test_region_holds_the_moving_parts_and_nothing_below_the_jaw_or_behind():
    lm = _person()
    unit = face_height(lm)
    rng = np.random.default_rng(0)
    pts = _surface_points(lm, rng)
    chosen = landmark_region(pts, lm, margin=MARGIN, below_jaw=BELOW_JAW, depth_back=DEPTH_BACK)
    # every landmark of the parts is in it, those of the nose bridge and the upper contour are not
    on_lm = landmark_region(lm, lm, margin=MARGIN, below_jaw=BELOW_JAW, depth_back=DEPTH_BACK)
    for idx in PARTS.values():
        assert on_lm[idx].all()
    assert not on_lm[[0, 1, 15, 16, 27, 28]].any()
    # nothing more than the margin below the jaw line, however far out sideways
    jaw = lm[2:15]
    order = np.argsort(jaw[:, 0])
    below = pts[:, 1] - np.interp(pts[:, 0], jaw[order, 0], jaw[order, 1])
    assert chosen.any() and below[chosen].max() <= BELOW_JAW * unit + 1e-9
    assert (below > BELOW_JAW * unit).sum() > 1000  # the collar was offered
    # nothing on the forehead above the brows' margin, nor at the ears beside the contour
    top = lm[17:27, 1].min()
    assert pts[chosen, 1].min() >= top - MARGIN * unit - 1e-9
    assert np.abs(pts[chosen, 0]).max() <= np.abs(lm[:, 0]).max() + MARGIN * unit
    # the same surface 0.7 face heights (~80 mm) further back, where hair and skull are: none of it
    behind = pts + [0, 0, 0.7 * unit]
    assert not landmark_region(behind, lm, margin=MARGIN, below_jaw=BELOW_JAW, depth_back=DEPTH_BACK).any()
    # most surface points on the lips are in it; a tighter margin gives a subset
    lips = np.linalg.norm(pts[:, None, :2] - lm[None, MOUTH, :2], axis=-1).min(1) < 3.0
    assert chosen[lips].mean() > 0.95
    tight = landmark_region(pts, lm, margin=0.0, below_jaw=0.0, depth_back=DEPTH_BACK)
    assert (tight <= chosen).all() and tight.sum() < chosen.sum()


def test_region_refuses_bad_landmarks_and_margins():
    pts = np.zeros((5, 3))
    with pytest.raises(InputError, match=r"landmarks must be 68 finite canonical points"):
        landmark_region(pts, MEAN_FACE[:60])
    with pytest.raises(InputError, match="margin must be a non-negative fraction"):
        landmark_region(pts, MEAN_FACE, margin=-0.1)


def _camera_pose() -> tuple[Camera, np.ndarray, np.ndarray]:
    cam = Camera(180, 144, 300.0, 300.0, 90.0, 72.0)
    a = np.radians(10.0) / 2  # a little roll: the regions follow the face's own axes
    return cam, np.array([np.cos(a), 0.0, 0.0, np.sin(a)]), np.array([0.0, -40.0, 900.0])


def test_footprints_cover_their_landmarks_and_little_else():
    lm = _person()
    cam, q, t = _camera_pose()
    from huma_rt.train.articulated_region import project_canonical

    px = np.floor(project_canonical(lm, q, t, cam)).astype(int)
    mouth = part_footprint(lm, "mouth", q, t, cam).numpy()
    eyes = part_footprint(lm, "eyes", q, t, cam).numpy()
    inner = [50, 51, 52, 57, 62, 66]  # lips' points away from the hull's edge
    assert mouth[px[inner, 1], px[inner, 0]].all() and eyes[px[[37, 38, 43, 44], 1], px[[37, 38, 43, 44], 0]].all()
    assert not mouth[px[[30, 37], 1], px[[30, 37], 0]].any()  # the nose tip and an eye are not the mouth
    assert 0 < mouth.mean() < 0.1 and 0 < eyes.mean() < 0.1
    with pytest.raises(InputError, match="footprint must be one of"):
        part_footprint(lm, "nose", q, t, cam)


def test_head_mask_drops_the_collar_below_the_chin():
    lm = _person()
    cam, q, t = _camera_pose()
    from huma_rt.train.articulated_region import project_canonical

    px = project_canonical(lm, q, t, cam)
    face = torch.ones(cam.height, cam.width)
    head = head_mask(face, lm, q, t, cam, chin_margin=0.1).numpy()
    eyes, chin = px[36:48].mean(0), px[8]
    down = (chin - eyes) / np.linalg.norm(chin - eyes)
    h = np.linalg.norm(chin - eyes)
    for s, want in ((-0.5, 1.0), (0.05, 1.0), (0.2, 0.0), (0.6, 0.0)):  # along the face's down axis from the chin
        x, y = (chin + s * h * down).astype(int)
        if 0 <= x < cam.width and 0 <= y < cam.height:
            assert head[y, x] == want, (s, head[y, x])
    assert head.sum() < face.sum().item() and head[int(eyes[1]), int(eyes[0])] == 1.0
