"""Held-out metrics of the articulated fit (train/fit_articulated.py) and of the static avatar on
the same frames, so the two are compared on the very same pixels.

Regions (each a mask [h,w] at the fit's size; a metric is left out where its mask is empty):

- whole: every pixel.
- face: the data's face mattes (the tracker's own polygon, :meth:`Views.face_matte`), the region
  fit_static's held-out ``psnr_face`` uses. Before 2026-12-06 (issue 14) the articulated fit
  measured its ``psnr_face`` on the widened training matte (ears, hair and a rim of backdrop),
  so the report's "static / articulated face" pair compared two regions; that region is kept
  as ``face_wide``.
- head: the face matte less what lies more than ``chin_margin`` x the face height below the
  chin's line (the collar and sweater, which follow the torso, not the head); needs the
  landmark anchors.
- mouth / eyes: the landmark parts' footprints (articulated_region.part_footprint), the same
  for every region choice, so fits with different dynamic sets are compared on one area.
- region: the fit's own dynamic Gaussians' footprint (changes with the dynamic set).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .articulated_region import landmark_frame, part_footprint, project_canonical, region_mask
from .fit_pose import render_view
from .fit_views import Views
from .losses import psnr, ssim

KEYS = ("psnr", "ssim", "psnr_face", "ssim_face", "psnr_face_wide", "ssim_face_wide", "psnr_head", "ssim_head",
        "psnr_mouth", "psnr_eyes", "psnr_region", "ssim_region")  # fmt: skip
CHIN_MARGIN = 0.1  # of the eyes-to-chin height: the chin's underside and the jaw's shadow stay in


def head_mask(face: torch.Tensor, anchors: np.ndarray, quat: np.ndarray, trans: np.ndarray, camera,
              chin_margin: float = CHIN_MARGIN) -> torch.Tensor:
    """The face matte [h,w] float less the pixels further below the chin than ``chin_margin`` x
    the face height, along the face's own down axis (the projected eyes-to-chin line), so a
    tilted head keeps its whole face. anchors [68,3] canonical landmarks."""
    px = project_canonical(np.asarray(anchors, np.float64), quat, trans, camera)
    eyes, chin = px[36:48].mean(0), px[8]
    down = chin - eyes
    height = max(float(np.linalg.norm(down)), 1e-6)
    down /= height
    h, w = face.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    below = (xx - chin[0]) * down[0] + (yy - chin[1]) * down[1]
    keep = torch.from_numpy((below <= chin_margin * height).astype(np.float32))
    return face * keep


def evaluate(params_of: Callable[[int], dict], sh_degree: int, views: Views, index: np.ndarray,
             plate: torch.Tensor, dyn_means: np.ndarray, radius: int, anchors: np.ndarray | None = None) -> dict:
    """PSNR/SSIM of frames ``index`` rendered from ``params_of(frame)`` (render_view's parameter
    dict) over ``plate`` [h,w,3], per region (module docstring). dyn_means [Nd,3]: the dynamic
    Gaussians' canonical means; radius: their footprint radius in px; anchors [68,3] or None.
    -> {"frames": [per-frame rows], key: mean over frames for each key of KEYS present}."""
    lm = landmark_frame(anchors)
    rows = []
    with torch.no_grad():
        for i in index:
            i = int(i)
            q, t = views.quat[i].numpy(), views.trans[i].numpy()
            img = render_view(params_of(i), views.camera, views.quat[i], views.trans[i], plate, sh_degree).image
            img, truth = img.clamp(0, 1), views.target(i)
            row = {"frame": i, "psnr": psnr(img, truth), "ssim": ssim(img, truth)}
            masks = {"face": views.face_matte(i), "face_wide": views.matte(i)}
            if lm is not None and masks["face"] is not None:
                masks["head"] = head_mask(masks["face"], lm, q, t, views.camera)
            if lm is not None:
                masks["mouth"] = part_footprint(lm, "mouth", q, t, views.camera)
                masks["eyes"] = part_footprint(lm, "eyes", q, t, views.camera)
            masks["region"] = region_mask(dyn_means, q, t, views.camera, radius)
            for name, m in masks.items():
                if m is None or not bool((m > 0.5).any()):
                    continue
                row[f"psnr_{name}"] = psnr(img, truth, m)
                if f"ssim_{name}" in KEYS:
                    row[f"ssim_{name}"] = ssim(img, truth, m)
            rows.append(row)
    out: dict = {"frames": rows}
    for key in KEYS:
        vals = [r[key] for r in rows if key in r]
        if vals:
            out[key] = float(np.mean(vals))
    return out
