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
and follows any person's articulation; the runtime deforms only these
rows (Gaussians.region != 0), so the count also sets the deformer's per-frame cost.

With landmarks (the fit data's 68 canonical anchors: every tracked video has them) the region
is instead the face parts articulation moves (:func:`landmark_region`): the lower face from
below the nose to the chin (lips, jaw, cheeks beside the mouth) and each eye with its lids and
brow, each the convex hull of its landmarks in the canonical front view (x, y) widened by a
margin, kept to a depth band about the landmarks' surface (the hair and skull behind the face
project into the same hull) and cut a few millimetres below the jaw line. On real video the
residual selection also picked the collar and the shoulders (they move with the torso, and
that motion correlates with speech), which the deformer then moved with the codes; the
landmark region cannot reach them, and its image footprint is a small part of the frame (the
runtime redraws only the rectangle bounding the moving Gaussians).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera

from .face_matte import rasterize
from .face_template import BROW_LEFT, BROW_RIGHT, CONTOUR, EYE_LEFT, EYE_RIGHT, MOUTH, NOSE_BASE
from .fit_pose import render_view
from .fit_views import Views
from .gaussian_init import project, quat_to_matrix_np

log = logging.getLogger(__name__)

# the parts articulation moves, as 68-point (iBUG) landmark indices; the lower face spans the
# jaw contour at and below the mouth (2..14), the nose base and the lips
PARTS = {"mouth": np.r_[CONTOUR[2:15], NOSE_BASE, MOUTH], "eye_right": np.r_[BROW_RIGHT, EYE_RIGHT],
         "eye_left": np.r_[BROW_LEFT, EYE_LEFT]}  # fmt: skip
# image footprints the metrics use: the lips and chin; both eyes with lids and brows
FOOTPRINTS = {"mouth": (np.r_[MOUTH[:12], CONTOUR[5:12]],), "eyes": (PARTS["eye_right"], PARTS["eye_left"])}
JAW = CONTOUR[2:15]


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


def landmark_frame(anchors: np.ndarray | None) -> np.ndarray | None:
    """The fit data's anchors as 68 canonical landmarks float64 [68,3], or None when they are
    not the 68-point set (no anchors, or other points)."""
    if anchors is None:
        return None
    a = np.asarray(anchors, np.float64)
    return a if a.shape == (68, 3) and np.isfinite(a).all() else None


def face_height(landmarks: np.ndarray) -> float:
    """Eyes' centre to chin (landmark 8) in canonical units: the unit of the region's margins."""
    return float(np.linalg.norm(landmarks[8] - landmarks[36:48].mean(0)))


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of 2D points [P,2], counter-clockwise (in x-right, y-down axes: as drawn) [H,2]."""
    pts = sorted(map(tuple, np.asarray(points, np.float64)))

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:  # fmt: skip
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.asarray(lower[:-1] + upper[:-1], np.float64)


def _outside_distance(xy: np.ndarray, hull: np.ndarray) -> np.ndarray:
    """Distance [N] of points xy [N,2] to the convex polygon ``hull`` [H,2]; 0 inside."""
    a, b = hull, np.roll(hull, -1, axis=0)
    e = b - a  # [H,2]
    rel = xy[:, None, :] - a[None]  # [N,H,2]
    cross = e[None, :, 0] * rel[..., 1] - e[None, :, 1] * rel[..., 0]
    inside = (cross >= 0).all(1) | (cross <= 0).all(1)
    t = np.clip((rel * e[None]).sum(-1) / np.maximum((e * e).sum(-1), 1e-12)[None], 0, 1)
    d = np.linalg.norm(rel - t[..., None] * e[None], axis=-1).min(1)
    return np.where(inside, 0.0, d)


def landmark_region(means: np.ndarray, landmarks: np.ndarray, *, margin: float = 0.06, below_jaw: float = 0.03,
                    depth_front: float = 0.15, depth_back: float = 0.2, parts: tuple[str, ...] | None = None) -> np.ndarray:
    """bool [N]: the Gaussians (canonical means [N,3]) on the face parts articulation moves
    (PARTS; see module), from the 68 canonical landmarks [68,3]. Each part: within ``margin``
    of its landmarks' convex hull in (x, y); for the mouth part also at most ``below_jaw``
    below the jaw line (landmarks 2..14, interpolated in x); and between ``depth_front`` in
    front of and ``depth_back`` behind the landmarks' depth there (inverse-distance weighted
    over the part's 4 nearest landmarks in x, y). All lengths are fractions of the face height
    (:func:`face_height`, ~112 mm on the mean face). parts: only these PARTS (None: all)."""
    lm = landmark_frame(landmarks)
    if lm is None:
        raise InputError(f"landmarks must be 68 finite canonical points [68,3]; got {np.asarray(landmarks).shape}")
    for name, v in (("margin", margin), ("below_jaw", below_jaw), ("depth_front", depth_front),
                    ("depth_back", depth_back)):  # fmt: skip
        if not np.isfinite(v) or v < 0:
            raise InputError(f"{name} must be a non-negative fraction of the face height; got {v!r}")
    m = np.asarray(means, np.float64)
    unit = face_height(lm)
    chosen = np.zeros(m.shape[0], bool)
    if parts is not None and not set(parts) <= set(PARTS):
        raise InputError(f"parts must be among {sorted(PARTS)}; got {parts!r}")
    for name, idx in PARTS.items():
        if parts is not None and name not in parts:
            continue
        part = lm[idx]
        near = _outside_distance(m[:, :2], _hull(part[:, :2])) <= margin * unit
        if name == "mouth":
            jaw = lm[JAW]
            order = np.argsort(jaw[:, 0])
            near &= m[:, 1] <= np.interp(m[:, 0], jaw[order, 0], jaw[order, 1]) + below_jaw * unit
        cand = np.flatnonzero(near)
        if cand.size == 0:
            continue
        d = np.linalg.norm(m[cand, None, :2] - part[None, :, :2], axis=-1)  # [C,P]
        k = min(4, part.shape[0])
        nn = np.argsort(d, axis=1)[:, :k]
        w = 1.0 / np.maximum(np.take_along_axis(d, nn, 1), 1e-3 * unit)
        z = (w * part[nn, 2]).sum(1) / w.sum(1)
        dz = m[cand, 2] - z
        chosen[cand[(dz >= -depth_front * unit) & (dz <= depth_back * unit)]] = True
    return chosen


def part_footprint(landmarks: np.ndarray, name: str, quat: np.ndarray, trans: np.ndarray,
                   camera: Camera, radius: int = 1) -> torch.Tensor:
    """[h,w] float32 0/1: the filled convex hull(s) of the FOOTPRINTS[name] landmarks projected
    under the pose (quat [4] wxyz, trans [3]) with ``camera``, dilated by ``radius`` px (the
    hull's edge runs through the outer landmarks)."""
    if name not in FOOTPRINTS:
        raise InputError(f"footprint must be one of {sorted(FOOTPRINTS)}; got {name!r}")
    px = project_canonical(np.asarray(landmarks, np.float64), quat, trans, camera)
    out = np.zeros((camera.height, camera.width), np.uint8)
    for idx in FOOTPRINTS[name]:
        out |= rasterize(_hull(px[idx]), camera.height, camera.width)
    m = torch.from_numpy((out > 0).astype(np.float32))
    if radius > 0:
        m = F.max_pool2d(m[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
    return m
