"""Where the articulated avatar may move: the dynamic Gaussians, and the image region they cover.

The static fit explains everything a rigid head shows; what it cannot explain is the face's own
motion (jaw, lips, lids), and that part of its error follows the motion codes. So each
Gaussian's canonical mean is projected into a few dozen training frames (their head pose, the
fit's camera) and the blurred signed residual (frame - static render) is read at that pixel;
the score is the size of the part of this series the codes explain linearly (its projection
onto the codes' leading principal directions over those frames). Texture and pose errors that
do not follow the codes score like noise; the mouth's do not. Gaussians above ``ratio`` x the
median score (the typical Gaussian does not move) are seeds; every Gaussian within ``dilate``
(a fraction of the head's size) of a seed joins them, so the skin around a moving lip can
follow it smoothly. This needs no landmarks
(the closed loop has none) and follows any person's articulation; the runtime deforms only these
rows (Gaussians.region != 0), so the count also sets the deformer's per-frame cost.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from huma_rt.gaussians import Camera

from .fit_pose import render_view
from .fit_views import Views
from .gaussian_init import project, quat_to_matrix_np

log = logging.getLogger(__name__)


def head_size(means: np.ndarray) -> float:
    """The head's size [canonical units]: the largest 2nd..98th percentile extent of means [N,3]."""
    return float((np.percentile(means, 98, 0) - np.percentile(means, 2, 0)).max())


def project_canonical(points: np.ndarray, quat: np.ndarray, trans: np.ndarray, camera: Camera) -> np.ndarray:
    """Canonical points [N,3] under the pose (quat [4] wxyz, trans [3]) -> pixels [N,2] (x, y)."""
    r = quat_to_matrix_np(quat)
    cam = points.astype(np.float64) @ r.T + np.asarray(trans, np.float64)
    k = np.array([[camera.fx, 0, camera.cx], [0, camera.fy, camera.cy], [0, 0, 1]], np.float64)
    return project(cam, k)


def region_mask(points: np.ndarray, quat: np.ndarray, trans: np.ndarray, camera: Camera,
                radius: int) -> torch.Tensor:
    """[h,w] float32 0/1: pixels within ``radius`` px of a projected canonical point [N,3]."""
    h, w = camera.height, camera.width
    px = np.floor(project_canonical(points, quat, trans, camera)).astype(np.int64)
    ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    hit = np.zeros((h, w), np.float32)
    hit[px[ok, 1], px[ok, 0]] = 1.0
    m = torch.from_numpy(hit)[None, None]
    if radius > 0:
        m = F.max_pool2d(m, 2 * radius + 1, stride=1, padding=radius)
    return m[0, 0]


def dynamic_gaussians(params: dict[str, torch.Tensor], views: Views, frames: np.ndarray, codes: np.ndarray,
                      background: torch.Tensor, sh_degree: int, *, ratio: float, dilate: float,
                      max_fraction: float, blur: int, components: int = 5) -> tuple[np.ndarray, dict]:
    """Indices [Nd] int64 of the dynamic Gaussians (see module) from the static avatar ``params``
    rendered at training ``frames`` (indices into views) whose codes are ``codes`` [F, D].
    ratio: threshold in multiples of the median Gaussian's score. dilate: seed neighbourhood
    as a fraction of the head size. max_fraction: at most this share of all Gaussians (the
    highest scores). blur: residual box blur radius in px. components: principal components
    of the codes the residual is regressed on. Returns (indices, stats for the log and result)."""
    means = params["means"].detach().numpy().astype(np.float64)
    n = means.shape[0]
    h, w = views.camera.height, views.camera.width
    samples = np.zeros((len(frames), n, 3), np.float32)  # the signed residual under each Gaussian
    with torch.no_grad():
        for j, i in enumerate(frames):
            i = int(i)
            img = render_view(params, views.camera, views.quat[i], views.trans[i], background, sh_degree).image
            res = (views.target(i) - img.clamp(0, 1)).permute(2, 0, 1)[None]
            if blur > 0:
                res = F.avg_pool2d(res, 2 * blur + 1, stride=1, padding=blur, count_include_pad=False)
            res = res[0].permute(1, 2, 0).numpy()
            px = np.floor(project_canonical(means, views.quat[i].numpy(), views.trans[i].numpy(), views.camera))
            px = px.astype(np.int64)
            ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
            samples[j, ok] = res[px[ok, 1], px[ok, 0]]
    # the part of each residual series the codes explain: projection onto the codes' leading
    # principal directions over the probe frames (pose-dependent and texture errors do not
    # follow the codes; the mouth's do)
    c = np.asarray(codes, np.float64)
    c = c - c.mean(0)
    u, sv, _ = np.linalg.svd(c, full_matrices=False)
    k = int(min(components, (sv > 1e-6 * max(sv.max(initial=0.0), 1e-30)).sum()))
    if k == 0:
        return np.zeros(0, np.int64), {"dynamic": 0, "seeds": 0, "count": n, "threshold": 0.0, "score_p50": 0.0,
                                       "score_max": 0.0, "probes": int(len(frames))}  # fmt: skip
    r = samples - samples.mean(0, keepdims=True)
    proj = np.einsum("tk,tnc->knc", u[:, :k], r)
    score = np.sqrt((proj**2).sum((0, 2)) / len(frames))
    threshold = ratio * max(float(np.median(score)), 1e-6)
    seeds = np.flatnonzero(score > threshold)
    cap = max(1, int(max_fraction * n))
    if seeds.size > cap:
        seeds = seeds[np.argsort(-score[seeds], kind="stable")[:cap]]
    chosen = np.zeros(n, bool)
    chosen[seeds] = True
    if seeds.size and dilate > 0:
        radius = dilate * head_size(means)
        seed_pts = torch.from_numpy(means[seeds])
        all_pts = torch.from_numpy(means)
        for lo in range(0, n, 4096):  # chunks keep the distance matrix small
            d = torch.cdist(all_pts[lo : lo + 4096], seed_pts).min(1).values
            chosen[lo : lo + 4096] |= (d <= radius).numpy()
    if chosen.sum() > cap:  # dilation may not exceed the cap either: keep the best scores
        idx = np.flatnonzero(chosen)
        chosen[:] = False
        chosen[idx[np.argsort(-score[idx], kind="stable")[:cap]]] = True
    index = np.flatnonzero(chosen)
    stats = {"dynamic": int(index.size), "seeds": int(seeds.size), "count": n, "threshold": threshold,
             "score_p50": float(np.median(score)), "score_max": float(score.max(initial=0.0)),
             "probes": int(len(frames))}  # fmt: skip
    log.info("articulated fit: %d of %d Gaussians dynamic (%d seeds above %.4f)", index.size, n, seeds.size, threshold)
    return index, stats
