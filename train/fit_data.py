"""Tracks of a real video -> the static fit's input (:class:`StaticFitData`).

    tracks = track_video("talk.mp4")
    data = fit_data_from_tracks(frames, tracks)            # frames [T,H,W,3] uint8, all of them
    data = fit_data_from_tracks(frames[::2], tracks, index=np.arange(0, T, 2))   # every 2nd

- valid: the tracker's per-frame validity (refused frames are never trained on or held out).
- head pose: ``head_quat`` from the tracked axis-angle ``rotvec``, ``head_trans`` = the tracked
  translation, both template millimetres -> camera (OpenCV axes), so canonical space is the
  tracked head space of train/face_template (origin between the eyes, mm).
- intrinsics: the tracker's camera (the same K the poses were solved with).
- anchors: the 68 mean-face template points (train/face_template.MEAN_FACE), already in
  canonical space: extra initial Gaussians where the eyes, nose and mouth are.
- mattes: the tracker's matte polygons (face + skull + neck, train/face_matte) widened by
  ``widen`` about the face's centre, rasterised to uint8 0/255.

Why widen, and what stays in the background: the fit composites the head's Gaussians over a
static plate, the temporal median of the pixels outside the matte. The tracker's polygon hugs
the face contour, so the ears and the sides of the hair fall outside it; they would be smeared
into the plate at their median place and show as a ghost beside the head whenever it moves
(and the head's Gaussians would have to stop at the polygon's edge, a seam through the hair).
Widened sideways (x1.25) and upwards (x1.1), the matte takes the ears and the hair into the
moving head; the extra rim of backdrop it takes is fitted by head Gaussians that the
alpha-vs-matte loss keeps opaque, which costs a few pixels' error at the rim when the head
moves against a plain backdrop. The shoulders and the torso stay in the plate: they do not
move rigidly with the head, and a fixed camera with a seated speaker moves them a little.
``face_mattes`` keeps the tracker's own polygons (unwidened), the region the held-out face
PSNR is measured on.
"""

from __future__ import annotations

import logging

import numpy as np

from huma_rt.errors import InputError

from .face_matte import rasterize
from .face_pose import rodrigues, solve_pnp
from .face_template import MEAN_FACE
from .fit_views import StaticFitData
from .synthetic_pose import quat_from_rotvec
from .tracking_tracks import Tracks

log = logging.getLogger(__name__)

WIDEN = (1.25, 1.1)
# the points a pose is solved from when refined: the upper contour and the nose as the tracker
# uses, but only the eyes' corners (the lids move with blinks and smiles and pull the pitch)
POSE_POINTS = np.r_[0, 1, 15, 16, 27:36, 36, 39, 42, 45]


def person_template(landmarks: np.ndarray, rotvec: np.ndarray, trans: np.ndarray, k: np.ndarray,
                    points: np.ndarray = POSE_POINTS, prior: float = 1e-2) -> np.ndarray:
    """The mean face moved onto one person: each of ``points`` is the 3D point [mm] whose
    projections under the poses (rotvec [F,3], trans [F,3]) best meet its landmarks [F,68,2]
    (linear least squares on the projection equations, pulled towards the template with weight
    ``prior``). The rest of the 68 points keep the template's places. -> float64 [68,3]."""
    rot = np.stack([rodrigues(r) for r in rotvec])  # [F,3,3]
    out = MEAN_FACE.copy()
    z = trans[:, 2:3]
    for j in points:
        u = landmarks[:, j] - k[[0, 1], [2, 2]]  # [F,2] pixels from the principal point
        # (u - cx) (R3 X + tz) = fx (R1 X + tx), likewise for v: rows a X = b, scaled by 1 / tz
        a = np.concatenate([k[0, 0] * rot[:, 0] - u[:, :1] * rot[:, 2], k[1, 1] * rot[:, 1] - u[:, 1:] * rot[:, 2]]) \
            / np.concatenate([z, z])
        b = np.concatenate([u[:, 0] * trans[:, 2] - k[0, 0] * trans[:, 0], u[:, 1] * trans[:, 2] - k[1, 1] * trans[:, 1]]) \
            / np.concatenate([z, z])[:, 0]
        w = prior * len(a)
        out[j] = np.linalg.solve(a.T @ a + w * np.eye(3), a.T @ b + w * MEAN_FACE[j])
    # keep canonical space where the template's is: the best rigid fit back onto the template
    p, q = out[points], MEAN_FACE[points]
    u_, _, vt = np.linalg.svd((p - p.mean(0)).T @ (q - q.mean(0)))
    r = (u_ @ np.diag([1, 1, np.sign(np.linalg.det(u_ @ vt))]) @ vt).T
    return (out - p.mean(0)) @ r.T + q.mean(0)


def refine_poses(tracks: Tracks, index: np.ndarray, rounds: int = 3,
                 points: np.ndarray = POSE_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Head poses of the valid frames among ``index`` re-solved against the person's own template
    (:func:`person_template`, alternated with PnP ``rounds`` times). -> (rotvec [N,3], trans
    [N,3] (NaN on invalid frames), the template [68,3], the median reprojection error in px).
    The tracker's single mean face misses one person's proportions by millimetres, which turns
    into pose errors that change with the head's turn (3.9 px median reprojection on franck;
    0.74 px against the person's template); the static fit needs views aligned to a pixel."""
    ok = np.flatnonzero(tracks.valid[index])
    lm = np.asarray(tracks.landmarks, np.float64)[index[ok]]
    k = np.asarray(tracks.intrinsics, np.float64)
    rot = np.asarray(tracks.rotvec, np.float64)[index[ok]]
    trans = np.asarray(tracks.translation, np.float64)[index[ok]]
    model, err = MEAN_FACE, np.full(len(ok), np.nan)
    for _ in range(rounds):
        model = person_template(lm[::4], rot[::4], trans[::4], k, points)  # every 4th frame is plenty
        init = None
        for n in range(len(ok)):
            init = (rot[n], trans[n]) if init is None else init
            r, t, err[n] = solve_pnp(model[points], lm[n, points], k, init)
            rot[n], trans[n] = r, t
            init = (r, t)
    out_r = np.full((len(index), 3), np.nan)
    out_t = np.full((len(index), 3), np.nan)
    out_r[ok], out_t[ok] = rot, trans
    return out_r, out_t, model, float(np.median(err)) if len(ok) else float("nan")


def widen_polygon(polygon: np.ndarray, centre: np.ndarray, widen: tuple[float, float]) -> np.ndarray:
    """Scale polygon [V,2] about ``centre`` [2] by (sx, sy) in image axes; the part below the
    centre (jaw, neck) is scaled sideways only, so the neck does not reach further down."""
    p = np.asarray(polygon, np.float64) - centre
    sy = np.where(p[:, 1] < 0, widen[1], 1.0)
    return centre + p * np.stack([np.full(len(p), widen[0]), sy], 1)


def rasterize_mattes(tracks: Tracks, index: np.ndarray, widen: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """The matte polygons of frames ``index`` rasterised at the video's size -> uint8 [N,H,W]
    (255 inside; all 0 on invalid frames); ``widen`` as in :func:`widen_polygon` about the
    mean of the frame's landmarks."""
    out = np.zeros((len(index), tracks.height, tracks.width), np.uint8)
    for n, i in enumerate(index):
        poly = tracks.matte[i]
        if not tracks.valid[i] or not np.isfinite(poly).all():
            continue
        if widen != (1.0, 1.0):
            poly = widen_polygon(poly, np.asarray(tracks.landmarks[i], np.float64).mean(0), widen)
        out[n] = rasterize(poly, tracks.height, tracks.width)
    return out


def fit_data_from_tracks(frames: np.ndarray, tracks: Tracks, *, anchors: bool = True, index: np.ndarray | None = None,
                         widen: tuple[float, float] = WIDEN, refine: bool = False) -> StaticFitData:  # fmt: skip
    """StaticFitData (see module) from rgb frames [N,H,W,3] uint8 of the tracked video.

    index: int [N], the tracks' frame number of each given frame (None: the frames are the
    whole video, N = len(tracks)); lets a caller train on a subsample without decoding all.
    anchors: add the mean-face landmarks as initial Gaussians. widen: (sideways, upwards)
    scale of the matte polygons about the face centre; (1, 1) keeps the tracker's polygons.
    refine: re-solve the poses against the person's template (:func:`refine_poses`); the
    anchors are then that template's points. Off by default: on franck it cuts the landmark
    reprojection 3.9 -> 0.75 px but leaves the fit's held-out face PSNR where it was (24.2 vs
    24.3 dB), since what limits a static fit there is expression, not pose.
    The result's ``face_mattes`` attribute (uint8 [N,H,W]) holds the unwidened polygons."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be a uint8 array [N,H,W,3]; got {getattr(frames, 'dtype', type(frames).__name__)} "
                         f"{getattr(frames, 'shape', '')}")  # fmt: skip
    n, h, w = frames.shape[:3]
    if (h, w) != (tracks.height, tracks.width):
        raise InputError(f"frames are {w}x{h} but the tracks were made on {tracks.width}x{tracks.height} frames")
    idx = np.arange(len(tracks)) if index is None else np.asarray(index)
    if idx.ndim != 1 or idx.shape[0] != n or (idx.size and (idx.min() < 0 or idx.max() >= len(tracks))):
        raise InputError(f"index must give one tracked frame number in [0, {len(tracks)}) for each of the {n} frames; "
                         f"got shape {idx.shape}" + (f", range {idx.min()}..{idx.max()}" if idx.size else ""))  # fmt: skip
    idx = idx.astype(np.int64)
    if len(widen) != 2 or not all(np.isfinite(widen)) or min(widen) < 1.0:
        raise InputError(f"widen must be two factors >= 1 (sideways, upwards); got {widen!r}")
    valid = np.asarray(tracks.valid[idx], bool).copy()
    rot = np.asarray(tracks.rotvec[idx], np.float64)
    trans = np.asarray(tracks.translation[idx], np.float64)
    template = MEAN_FACE
    if refine and valid.sum() >= 2:
        rot, trans, template, err = refine_poses(tracks, idx)
        log.info("fit data: poses re-solved on the person's template: %.2f px median reprojection (tracker: %.2f)",
                 err, float(np.nanmedian(tracks.reprojection[idx])))  # fmt: skip
    valid &= np.isfinite(rot).all(1) & np.isfinite(trans).all(1)
    # invalid frames carry NaN poses; any finite placeholder keeps the arrays' contract
    quat = quat_from_rotvec(np.where(valid[:, None], rot, 0.0))
    trans = np.where(valid[:, None], trans, 0.0)
    mattes = rasterize_mattes(tracks, idx, tuple(float(x) for x in widen))
    face = rasterize_mattes(tracks, idx) if tuple(widen) != (1.0, 1.0) else mattes
    empty = valid & ~(face > 127).reshape(n, -1).any(1)
    if empty.any():  # a face entirely off-screen: nothing to fit there
        log.warning("fit data: %d valid frames have an empty matte (face off-screen); left out", int(empty.sum()))
        valid &= ~empty
    log.info("fit data: %d frames, %d valid (%.1f%%), matte widened %s", n, int(valid.sum()), 100 * valid.mean(), widen)
    data = StaticFitData(frames, quat, trans, np.asarray(tracks.intrinsics, np.float64), mattes=mattes, valid=valid,
                         anchors=np.array(template) if anchors else None, face_mattes=face)  # fmt: skip
    return data
