"""Leave out of the bundle the Gaussians a trained avatar never shows.

A fit ends with many Gaussians that no frame shows: inside the head, behind opaque ones, or so
faint that they never cover a hundredth of a pixel (the closed loop's 30 s fit: 32 % of 25,216
below 0.01 of a pixel, 0.14 % of the picture's alpha). The runtime still bins, sorts and blends
them: every pixel walks its tile's list until it is opaque, and a fitted face is seldom opaque
after its first splats. Packed without them the same avatar draws faster
(bench/results/train-prune-*).

A Gaussian's weight is the most of one pixel (at the fit's size) it ever covers: the max over
frames of sum over pixels of alpha_i T_i. One backward pass per frame gives every weight at once:
with every colour 1 over a black plate, d sum(image) / d colour_i = sum over pixels of
alpha_i T_i. The frames are the fitted frames' codes at the rest pose, the only pose the runtime
draws, and the same codes with the blink code added when the avatar blinks (lids that only show
shut). Pruning is judged at the rest pose too: :func:`prune_hidden` returns the PSNR of the
pruned avatar against the whole one over those frames.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians

from .fit_articulated import canonical_params
from .fit_pose import render_view
from .gaussian_init import SH_C0

log = logging.getLogger(__name__)

__all__ = ["PruneResult", "gaussian_weights", "keep_mask", "prune_hidden"]


@dataclass(frozen=True)
class PruneResult:
    """keep: int64 [M] the rows kept (ascending); weights: float64 [N] each Gaussian's most of a
    fit-size pixel covered in any frame; psnr: the pruned frames against the whole ones at the
    rest pose (median over the frames; inf when they are equal); frames: frames weighed."""

    keep: np.ndarray
    weights: np.ndarray
    psnr: float
    frames: int


def _deformed(g: Gaussians, spatial, deformer, code: np.ndarray, base: dict, rows: torch.Tensor,
              feat: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
    """``base`` (canonical_params of g) with the deformer's deltas for ``code`` [code_dim] on ``rows``."""
    p = dict(base)
    with torch.no_grad():
        dmu, dquat, dscale = deformer(feat, torch.from_numpy(np.asarray(code, np.float32))[None])
        for key, delta in (("means", dmu[0]), ("quats", dquat[0]), ("log_scales", dscale[0])):
            p[key] = base[key].index_add(0, rows, delta)
    return p


def _frame_codes(codes: np.ndarray, frames: int, blink_code: np.ndarray | None) -> np.ndarray:
    """``frames`` codes spread over ``codes`` [T, code_dim] (finite rows), then, for an avatar that
    blinks, every 4th of them with the blink code added -> [F, code_dim] float32."""
    c = np.asarray(codes, np.float32)
    c = c[np.isfinite(c).all(1)]
    if c.shape[0] == 0:
        raise InputError("prune_hidden: no finite code to weigh the Gaussians with (every fitted frame's code is NaN)")
    picked = c[np.unique(np.linspace(0, c.shape[0] - 1, min(frames, c.shape[0])).round().astype(int))]
    if blink_code is not None:
        picked = np.concatenate([picked, picked[::4] + np.asarray(blink_code, np.float32)[None]])
    return picked


def gaussian_weights(g: Gaussians, spatial, deformer, camera: Camera, rest_pose: tuple[np.ndarray, np.ndarray],
                     codes: np.ndarray) -> np.ndarray:  # fmt: skip
    """Each Gaussian's most of one ``camera`` pixel covered in any of the frames ``codes``
    [F, code_dim] at ``rest_pose`` (quat [4] wxyz, trans [3]; model-to-camera) -> float64 [N]."""
    q, t = (torch.tensor(np.asarray(v, np.float64), dtype=torch.float32) for v in rest_pose)
    base = canonical_params(g)
    base.pop("sh_rest", None)  # colour 1 everywhere: degree 0 is enough
    rows = torch.from_numpy(np.flatnonzero(g.region != 0))
    with torch.no_grad():
        feat = spatial(base["means"][rows])
    black = torch.zeros(camera.height, camera.width, 3)
    weights = np.zeros(g.count)
    for code in codes:
        p = _deformed(g, spatial, deformer, code, base, rows, feat)
        dc = torch.full((g.count, 1, 3), 0.5 / SH_C0, requires_grad=True)  # SH_C0 dc + 0.5 = 1
        p["sh_dc"] = dc
        render_view(p, camera, q, t, black, 0).image[..., 0].sum().backward()
        np.maximum(weights, dc.grad[:, 0, 0].double().numpy() / SH_C0, out=weights)
    return weights


def keep_mask(weights: np.ndarray, region: np.ndarray, below: float) -> np.ndarray:
    """bool [N]: the rows whose ``weights`` [N] reach ``below``, and every row of a dynamic region
    (``region`` [N] uint8, 0 static) that would otherwise lose them all (logged)."""
    keep = weights >= below
    for rid in np.unique(region[region != 0]):
        in_region = region == rid
        if not (keep & in_region).any():
            log.warning("prune: every Gaussian of region %d covers less than %.3f of a pixel; the region is kept whole",
                        rid, below)  # fmt: skip
            keep |= in_region
    return keep


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def prune_hidden(g: Gaussians, spatial, deformer, camera: Camera, rest_pose: tuple[np.ndarray, np.ndarray],
                 background: np.ndarray, codes: np.ndarray, *, below: float, frames: int = 96,
                 blink_code: np.ndarray | None = None) -> PruneResult:  # fmt: skip
    """The rows of ``g`` (canonical, region ids; the articulated fit's) worth packing: those that
    cover at least ``below`` of one ``camera`` pixel in some frame (see module). ``codes``
    [T, code_dim]: the fitted frames' codes (``frames`` of them are weighed); ``background``
    [h, w, 3] float32: the fit's plate, for the PSNR of the pruned avatar against the whole one.
    A dynamic region that would lose every Gaussian keeps them all (logged). ``below`` 0 keeps
    every row (weights are still measured)."""
    if not isinstance(below, (int, float)) or isinstance(below, bool) or not 0 <= below < 1:
        raise InputError(f"below must be a share of one pixel in [0, 1); got {below!r}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames must be an integer >= 1; got {frames!r}")
    picked = _frame_codes(codes, frames, blink_code)
    weights = gaussian_weights(g, spatial, deformer, camera, rest_pose, picked)
    keep = keep_mask(weights, g.region, below)
    kept = g.subset(np.flatnonzero(keep))
    psnr = _fidelity(g, kept, spatial, deformer, camera, rest_pose, background, picked[:: max(1, len(picked) // 16)])
    log.info("prune: %d of %d Gaussians cover less than %.3f of a pixel in any of %d frames; left out (PSNR against "
             "the whole avatar %.1f dB)", g.count - kept.count, g.count, below, len(picked), psnr)  # fmt: skip
    return PruneResult(np.flatnonzero(keep), weights, psnr, len(picked))


def _fidelity(whole: Gaussians, kept: Gaussians, spatial, deformer, camera: Camera,
              rest_pose: tuple[np.ndarray, np.ndarray], background: np.ndarray, codes: np.ndarray) -> float:  # fmt: skip
    """Median PSNR of ``kept`` drawn against ``whole`` drawn, over ``codes`` at the rest pose."""
    q, t = (torch.tensor(np.asarray(v, np.float64), dtype=torch.float32) for v in rest_pose)
    bg = torch.from_numpy(np.asarray(background, np.float32))
    if kept.count == whole.count:
        return float("inf")
    drawn = []
    for g in (whole, kept):
        base = canonical_params(g)
        rows = torch.from_numpy(np.flatnonzero(g.region != 0))
        with torch.no_grad():
            feat = spatial(base["means"][rows])
            drawn.append([render_view(_deformed(g, spatial, deformer, c, base, rows, feat), camera, q, t, bg,
                                      g.sh_degree).image for c in codes])  # fmt: skip
    return float(np.median([_psnr(a, b) for a, b in zip(*drawn, strict=True)]))
