"""Held-out metrics of both fits (fit_static.py, fit_articulated.py), on the same regions, so
the report's static / articulated pair compares the very same pixels.

Regions (each a mask [h,w] at the fit's size; a metric is left out where its mask is empty):

- whole: every pixel.
- face: the data's face mattes (the tracker's own polygon, :meth:`Views.face_matte`). Before
  2026-12-06 (issue 14) the articulated fit measured its ``psnr_face`` on the widened training
  matte (ears, hair and a rim of backdrop), so the report's "static / articulated face" pair
  compared two regions; that region is kept as ``face_wide``.
- head: the face matte less what lies more than ``chin_margin`` x the face height below the
  chin's line (the collar and sweater, which follow the torso, not the head); needs the
  landmark anchors.
- mouth / eyes: the landmark parts' footprints (articulated_region.part_footprint), the same
  for every region choice, so fits with different dynamic sets are compared on one area.
- region: the articulated fit's dynamic Gaussians' footprint (changes with the dynamic set;
  only where the caller gives the dynamic means).

Masks follow the pose the frame is rendered at. :class:`Scorer` scores one rendered frame,
:func:`evaluate` renders and scores a set of frames, :func:`summarise` averages the rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .articulated_region import landmark_frame, part_footprint, project_canonical, region_mask
from .fit_pose import render_view
from .fit_views import Views
from .losses import masked_mean, psnr, ssim_map

__all__ = ["KEYS", "Scorer", "chin_axis", "evaluate", "head_mask", "summarise"]

KEYS = ("psnr", "ssim", "psnr_face", "ssim_face", "psnr_face_wide", "ssim_face_wide", "psnr_head", "ssim_head",
        "psnr_mouth", "psnr_eyes", "psnr_region", "ssim_region")  # fmt: skip
CHIN_MARGIN = 0.1  # of the eyes-to-chin height: the chin's underside and the jaw's shadow stay in


def chin_axis(anchors: np.ndarray, quat: np.ndarray, trans: np.ndarray, camera) -> tuple[np.ndarray, np.ndarray, float]:
    """The face's own down axis at a pose: (the chin [2] px, the unit eyes-to-chin direction [2],
    the eyes-to-chin height in px). anchors [68,3] canonical landmarks."""
    px = project_canonical(np.asarray(anchors, np.float64), quat, trans, camera)
    eyes, chin = px[36:48].mean(0), px[8]
    down = chin - eyes
    height = max(float(np.linalg.norm(down)), 1e-6)
    return chin, down / height, height


def head_mask(face: torch.Tensor, anchors: np.ndarray, quat: np.ndarray, trans: np.ndarray, camera,
              chin_margin: float = CHIN_MARGIN) -> torch.Tensor:
    """The face matte [h,w] float less the pixels further below the chin than ``chin_margin`` x
    the face height, along the face's own down axis (the projected eyes-to-chin line), so a
    tilted head keeps its whole face. anchors [68,3] canonical landmarks."""
    chin, down, height = chin_axis(anchors, quat, trans, camera)
    h, w = face.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    below = (xx - chin[0]) * down[0] + (yy - chin[1]) * down[1]
    keep = torch.from_numpy((below <= chin_margin * height).astype(np.float32))
    return face * keep


class Scorer:
    """Scores renders of ``views``' frames per region (module docstring). anchors [68,3] or None
    (no head / mouth / eyes); dyn_means [Nd,3] or None (no region) with its footprint
    ``radius`` in px."""

    def __init__(self, views: Views, anchors: np.ndarray | None = None, dyn_means: np.ndarray | None = None,
                 radius: int = 1) -> None:
        self.views, self.landmarks, self.radius = views, landmark_frame(anchors), radius
        self.dyn_means = None if dyn_means is None else np.asarray(dyn_means)

    def masks(self, i: int, q: np.ndarray, t: np.ndarray) -> dict[str, torch.Tensor | None]:
        """Frame i's region masks [h,w] at the pose q [4] wxyz, t [3] (None: not available)."""
        v, lm = self.views, self.landmarks
        masks = {"face": v.face_matte(i), "face_wide": v.matte(i)}
        if lm is not None and masks["face"] is not None:
            masks["head"] = head_mask(masks["face"], lm, q, t, v.camera)
        if lm is not None:
            masks["mouth"] = part_footprint(lm, "mouth", q, t, v.camera)
            masks["eyes"] = part_footprint(lm, "eyes", q, t, v.camera)
        if self.dyn_means is not None:
            masks["region"] = region_mask(self.dyn_means, q, t, v.camera, self.radius)
        return masks

    def row(self, i: int, image: torch.Tensor, q: torch.Tensor, t: torch.Tensor) -> dict:
        """{frame, psnr, ssim, psnr_<region>, ssim_<region>...} of ``image`` [h,w,3] (clamped to
        [0,1] here) rendered for frame i at the pose q [4], t [3]."""
        img, truth = image.detach().clamp(0, 1), self.views.target(i)
        smap = ssim_map(img.double(), truth.double())  # once per frame, averaged per region
        row = {"frame": int(i), "psnr": psnr(img, truth), "ssim": float(smap.mean())}
        masks = self.masks(i, q.detach().numpy(), t.detach().numpy())
        for name, m in masks.items():
            if m is None or not bool((m > 0.5).any()):
                continue
            row[f"psnr_{name}"] = psnr(img, truth, m)
            if f"ssim_{name}" in KEYS:
                row[f"ssim_{name}"] = float(masked_mean(smap, m > 0.5))
        return row


def summarise(rows: list[dict]) -> dict:
    """{"frames": rows, key: mean over the rows for each key of KEYS present}."""
    out: dict = {"frames": rows}
    for key in KEYS:
        vals = [r[key] for r in rows if key in r]
        if vals:
            out[key] = float(np.mean(vals))
    return out


def evaluate(params_of: Callable[[int], dict], sh_degree: int, views: Views, index: np.ndarray,
             plate: torch.Tensor, dyn_means: np.ndarray | None = None, radius: int = 1,
             anchors: np.ndarray | None = None, *,
             pose_of: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict:
    """PSNR/SSIM of frames ``index`` rendered from ``params_of(frame)`` (render_view's parameter
    dict) over ``plate`` [h,w,3], per region (module docstring), at ``pose_of(frame)`` -> (quat
    [4], trans [3]) (None: the views' poses). dyn_means [Nd,3] or None, radius, anchors [68,3]
    or None: as :class:`Scorer`. -> summarise's dict."""
    scorer = Scorer(views, anchors, dyn_means, radius)
    rows = []
    with torch.no_grad():
        for i in index:
            i = int(i)
            q, t = (views.quat[i], views.trans[i]) if pose_of is None else pose_of(i)
            img = render_view(params_of(i), views.camera, q, t, plate, sh_degree).image
            rows.append(scorer.row(i, img, q, t))
    return summarise(rows)
