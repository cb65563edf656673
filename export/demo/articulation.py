"""Articulation of the demo head: 5 parameters -> per-Gaussian (dmu, dquat, dscale).

Parameters (each in [0, 1], order fixed by PARAMS): ``jaw`` opening, lip ``round``-ing, lip
``spread``-ing, lip ``closure`` (p/b/m press), ``blink``. Deltas follow the runtime's contract:
means + dmu, quats + dquat (the kernels normalise), log_scales + dscale.

The displacement field is smooth in space (weights from canonical positions) except at the lip
seam, where the lower lip follows the jaw and the upper lip does not. The Deformer network is
trained to reproduce ``deform`` from motion codes (see codes.py).
"""

from __future__ import annotations

import numpy as np

from huma_rt.errors import InputError

from .head import (
    EYE_OPEN_HALF_HEIGHT,
    JAW_HINGE,
    LID_RADIUS,
    MOUTH_HALF_WIDTH,
    MOUTH_Y,
    REGION_JAW,
    REGION_LIDS,
    REGION_LIPS,
    REGION_MOUTH,
    REGION_STATIC,
    eye_centers,
)

PARAMS = ("jaw", "round", "spread", "closure", "blink")
JAW_MAX_DEG = 20.0
BLINK_EXTRA_DEG = 30.0  # how far below the opening's lower edge the lid edge travels
_MOVE_EPS = 1e-3  # weights below this leave a Gaussian static


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def weights(means: np.ndarray, part: np.ndarray) -> dict[str, np.ndarray]:
    """Per-Gaussian influence of each motion, from canonical means [N,3] and part ids [N].

    ``part`` holds the head builder's ids (lips, mouth interior, lids; 0 for everything else).
    Returns {"jaw", "mouth", "lips", "lids"} -> [N] float64 in [0, 1].
    """
    x, y, z = means[:, 0].astype(np.float64), means[:, 1].astype(np.float64), means[:, 2].astype(np.float64)
    lips = part == REGION_LIPS
    interior = part == REGION_MOUTH
    lids = part == REGION_LIDS
    skin = part == REGION_STATIC
    front = _smoothstep((z - 0.13) / 0.05)
    below = _smoothstep((MOUTH_Y + 0.0005 - y) / 0.001)  # the seam: lower lip vs upper lip
    below_soft = _smoothstep((MOUTH_Y + 0.01 - y) / 0.03)
    lateral = 1.0 - _smoothstep((np.abs(x) - 0.11) / 0.14)
    jaw = np.where(lips | interior, below, below_soft * lateral * front)
    jaw = np.where(skin | lips | interior, jaw, 0.0) * (y > -0.42)
    mouth = np.exp(-((x / 0.15) ** 2 + ((y - MOUTH_Y) / 0.075) ** 2)) * front
    mouth = np.where(skin | lips, mouth, 0.0)
    return {"jaw": jaw, "mouth": mouth, "lips": lips.astype(np.float64), "lids": lids.astype(np.float64)}


def assign_regions(means: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Region ids [N] uint8: the part id where the Gaussian moves, REGION_JAW for moving skin,
    REGION_STATIC for Gaussians no articulation touches."""
    w = weights(means, part)
    moves = np.maximum.reduce([w["jaw"], w["mouth"], w["lids"]]) > _MOVE_EPS
    region = np.where(moves, part, REGION_STATIC).astype(np.uint8)
    region[moves & (part == REGION_STATIC)] = REGION_JAW
    return region


def _rotate_x(p: np.ndarray, center: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate points p [B,N,3] about the x axis through ``center`` by ``angle`` [B,N] radians."""
    d = p - center
    c, s = np.cos(angle), np.sin(angle)
    y = d[..., 1] * c - d[..., 2] * s
    z = d[..., 1] * s + d[..., 2] * c
    return np.stack([d[..., 0], y, z], -1) + center


def _quat_rotate_x(q: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Left-multiply wxyz quaternions q [N,4] by a rotation about x by ``angle`` [B,N]."""
    h = angle / 2
    a, b = np.cos(h), np.sin(h)  # (a, b, 0, 0)
    w, x, y, z = (q[..., i] for i in range(4))
    return np.stack([a * w - b * x, a * x + b * w, a * y - b * z, a * z + b * y], -1)


class Articulation:
    """The articulation model bound to one head: ``deform(params [B,5]) -> deltas``.

    Only dynamic Gaussians (region != 0) are kept; ``index`` maps them into the full head.
    """

    def __init__(self, means: np.ndarray, quats: np.ndarray, region: np.ndarray) -> None:
        self.index = np.flatnonzero(region != REGION_STATIC)
        self.means = means[self.index].astype(np.float64)
        self.quats = quats[self.index].astype(np.float64)
        part = region[self.index].copy()
        part[part == REGION_JAW] = REGION_STATIC  # weights() wants the builder's part ids
        self.w = weights(self.means, part)
        self.eyes = eye_centers()
        self.eye_of = (self.means[:, 0] > 0).astype(int)
        open_angle = np.arcsin(EYE_OPEN_HALF_HEIGHT / LID_RADIUS)
        self.blink_angle = open_angle + np.radians(BLINK_EXTRA_DEG)

    @classmethod
    def for_head(cls, head) -> Articulation:
        return cls(head.means, head.quats, head.region)

    @property
    def count(self) -> int:
        return int(self.index.size)

    def deform(self, params: np.ndarray, rows: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """params [B,5] (or [5]) in [0,1] -> dmu [B,Nd,3], dquat [B,Nd,4], dscale [B,Nd,3] float32.

        ``rows`` (indices into the dynamic Gaussians) restricts the output to those rows.
        """
        sel = slice(None) if rows is None else np.asarray(rows)
        p = np.asarray(params, dtype=np.float64)
        single = p.ndim == 1
        p = np.atleast_2d(p)
        if p.shape[-1] != len(PARAMS) or not np.isfinite(p).all():
            raise InputError(f"params must be finite with shape [B, {len(PARAMS)}] ({PARAMS}); got {p.shape}")
        jaw, rnd, spr, clo, blink = (p[:, i : i + 1] for i in range(5))  # [B,1] each
        m = self.means[sel][None]  # [1,N,3]
        x = m[..., 0]
        wm, wl, wj = self.w["mouth"][sel][None], self.w["lips"][sel][None], self.w["jaw"][sel][None]
        d = np.zeros((p.shape[0],) + m.shape[1:])
        xr = x / MOUTH_HALF_WIDTH
        # rounding: corners pull in, lips push forward; spreading: corners out and up
        d[..., 0] += (-0.45 * rnd + 0.25 * spr) * x * wm
        d[..., 1] += 0.014 * spr * np.clip(xr, -1.5, 1.5) ** 2 * wm
        d[..., 2] += (0.030 * rnd * (0.4 + 0.6 * wl) - 0.006 * spr) * wm
        # closure: lips press together (upper down, lower up against the jaw opening below)
        upper = (m[..., 1] >= MOUTH_Y) * wl
        d[..., 1] -= 0.004 * clo * upper
        jaw_w = wj * (1.0 - 0.85 * clo * wl)  # a pressed lower lip resists the open jaw
        angle = np.radians(JAW_MAX_DEG) * jaw * jaw_w
        moved = _rotate_x(m + d, JAW_HINGE, angle)
        quats0 = self.quats[sel][None]
        quats = _quat_rotate_x(quats0, angle)
        # blink: upper lids rotate down about the eyeball centre
        lid = self.w["lids"][sel][None] > 0
        if lid.any():
            b_angle = self.blink_angle * blink * lid
            centres = self.eyes[self.eye_of[sel]][None]
            moved = np.where(lid[..., None], _rotate_x(moved, centres, b_angle), moved)
            quats = np.where(lid[..., None], _quat_rotate_x(quats, b_angle), quats)
        dmu = moved - m
        dquat = quats - quats0
        ds = (-0.10 * spr + 0.10 * rnd + 0.08 * clo)[..., None] * wl[..., None] * np.array([1.0, 1.0, 0.0])
        dscale = np.broadcast_to(ds, dmu.shape)
        out = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in (dmu, dquat, dscale))
        return tuple(a[0] for a in out) if single else out  # type: ignore[return-value]
