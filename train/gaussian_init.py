"""Initial canonical Gaussians of the static fit, from the training views.

Canonical space = head space: a canonical point p shows at ``x_cam = R(q_t) p + t_t`` in frame
t (the tracked head pose). Without a depth sensor the head's volume is guessed from the views:

1. the ellipsoid: in each of a few valid frames the matte's centre is lifted to the depth of the
   head origin (t_t's z) and its extent (2nd..98th percentile of matte pixels) to half-axes at
   that depth; mapped back to canonical space and averaged. Depth half-axis = 0.8 x the mean of
   the other two (a head is about as deep as it is wide).
2. points: uniform in the ellipsoid, kept where they project inside the matte of every probe
   frame (a visual hull, coarse for near-frontal video); ``anchors`` (e.g. the tracked 68
   landmarks lifted onto the mean-face template, train/face_template.mean_face, in template
   space) are added as extra points.
3. attributes: colour = the mean of the probe frames' pixels under the point (SH DC), scale =
   the mean distance to the 3 nearest points (3DGS), identity rotation, opacity 0.1.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from huma_rt.errors import InputError

log = logging.getLogger(__name__)

SH_C0 = 0.28209479177387814
PROBES = 8


def quat_to_matrix_np(q: np.ndarray) -> np.ndarray:
    """[...,4] wxyz -> [...,3,3] float64."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                  2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                  2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return m.reshape(q.shape[:-1] + (3, 3))


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel coordinates [N,2] (x, y; pixel centres at +0.5) of camera-frame points [N,3]."""
    z = np.maximum(points_cam[:, 2], 1e-9)
    return np.stack([K[0, 0] * points_cam[:, 0] / z + K[0, 2],
                     K[1, 1] * points_cam[:, 1] / z + K[1, 2]], 1)


def head_ellipsoid(mattes: np.ndarray, quats: np.ndarray, trans: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre [3], half-axes [3]) of the head in canonical space from mattes [P,H,W] (float,
    1 = head) and the poses of those frames (quats [P,4], trans [P,3]); see module, step 1."""
    centres, axes = [], []
    for m, q, t in zip(mattes, quats, trans, strict=True):
        ys, xs = np.nonzero(m > 0.5)
        if xs.size == 0:
            continue
        z = float(t[2])
        if z <= 0:
            raise InputError(f"the head must be in front of the camera (translation z > 0); got z = {z}")
        (x0, x1), (y0, y1) = np.percentile(xs + 0.5, [2, 98]), np.percentile(ys + 0.5, [2, 98])
        c_cam = np.array([((x0 + x1) / 2 - K[0, 2]) / K[0, 0] * z, ((y0 + y1) / 2 - K[1, 2]) / K[1, 1] * z, z])
        r = quat_to_matrix_np(q)
        centres.append(r.T @ (c_cam - t))
        axes.append([(x1 - x0) / 2 / K[0, 0] * z, (y1 - y0) / 2 / K[1, 1] * z])
    if not centres:
        raise InputError("every probe frame's matte is empty: the head's extent cannot be estimated")
    ax = np.mean(axes, 0)
    return np.mean(centres, 0), np.array([ax[0], ax[1], 0.8 * ax.mean()])


def _knn_scale(points: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Mean distance [N] to the k nearest other points (chunked: N can be tens of thousands)."""
    out = torch.empty(points.shape[0], dtype=points.dtype)
    for s in range(0, points.shape[0], 2048):
        d = torch.cdist(points[s:s + 2048], points)
        d[torch.arange(d.shape[0]), torch.arange(s, s + d.shape[0])] = float("inf")
        out[s:s + 2048] = d.topk(min(k, points.shape[0] - 1), largest=False).values.mean(1)
    return out


def init_gaussians(frames: np.ndarray, mattes: np.ndarray, quats: np.ndarray, trans: np.ndarray,
                   K: np.ndarray, count: int, sh_coeffs: int, seed: int = 0,
                   anchors: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Initial Gaussians (see module) from probe frames [P,H,W,3] uint8 with mattes [P,H,W]
    float in [0,1] and poses quats [P,4] wxyz, trans [P,3]; K [3,3] at the frames' size.
    -> (dict of float32 arrays: means [M,3], log_scales [M,3], quats [M,4], opacity_logits [M],
    sh [M,sh_coeffs,3] with M = count (+ anchors); the scene extent: |half-axes|)."""
    if count < 4:
        raise InputError(f"the initial Gaussian count must be >= 4; got {count}")
    rng = np.random.default_rng(seed)
    centre, axes = head_ellipsoid(mattes, quats, trans, K)
    rots = quat_to_matrix_np(quats)
    h, w = mattes.shape[1:]
    kept: list[np.ndarray] = []
    total = 0
    for _ in range(20):  # rejection sampling: a few rounds reach the count
        u = rng.normal(size=(4 * count, 3))
        u *= (rng.random(4 * count) ** (1 / 3) / np.linalg.norm(u, axis=1))[:, None]
        p = centre + u * axes
        inside = np.ones(len(p), bool)
        for m, r, t in zip(mattes, rots, trans, strict=True):
            xy = np.floor(project(p @ r.T + t, K)).astype(np.int64)
            ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            inside &= ok
            inside[ok] &= m[xy[ok, 1], xy[ok, 0]] > 0.5
        kept.append(p[inside])
        total += int(inside.sum())
        if total >= count:
            break
    pts = np.concatenate(kept)[:count]
    if pts.shape[0] < 4:
        raise InputError("no point of the head's ellipsoid projects inside the mattes: check the poses and intrinsics")
    if anchors is not None:
        pts = np.concatenate([np.asarray(anchors, np.float64).reshape(-1, 3), pts])
    colour = np.zeros((len(pts), 3))
    for f, r, t in zip(frames, rots, trans, strict=True):
        xy = np.floor(project(pts @ r.T + t, K)).astype(np.int64)
        xy[:, 0] = np.clip(xy[:, 0], 0, w - 1)
        xy[:, 1] = np.clip(xy[:, 1], 0, h - 1)
        colour += f[xy[:, 1], xy[:, 0]] / 255.0
    colour /= len(frames)
    means = torch.from_numpy(pts.astype(np.float32))
    scale = _knn_scale(means).clamp(min=1e-4 * float(axes.max()))
    sh = np.zeros((len(pts), sh_coeffs, 3), np.float32)
    sh[:, 0] = (colour - 0.5) / SH_C0
    quats0 = np.zeros((len(pts), 4), np.float32)
    quats0[:, 0] = 1.0
    log.info("init: %d Gaussians in an ellipsoid at %s with half-axes %s", len(pts), np.round(centre, 4), np.round(axes, 4))
    return {"means": means.numpy(), "log_scales": np.repeat(np.log(scale.numpy())[:, None], 3, 1).astype(np.float32),
            "quats": quats0, "opacity_logits": np.full(len(pts), np.log(0.1 / 0.9), np.float32),
            "sh": sh}, float(np.linalg.norm(axes))  # fmt: skip
