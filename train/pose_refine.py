"""Photometric head-pose refinement: small per-frame corrections to the tracked poses.

The tracker's pose comes from 68 landmarks on a mean face; its jitter and its bias with the
expression (an open jaw pulls the chin landmarks) blur the static fit, which averages the face
over misaligned frames (closed loop: 30.9 dB from the tracked poses vs 39.5 dB from the true
ones). Each frame gets a correction ``delta`` [6] = (axis-angle [3] in radians, translation [3]
in head units), applied in head space after the tracked pose:

    x_cam = R_i (R_d p + t_d) + t_i   ->   q = q_i ⊗ q_d,  t = R_i t_d + t_i

so the rotation turns about the head origin (well conditioned: a turn about the camera would
need a large compensating shift) and the translation is in the same units as the Gaussians.

Two ways the corrections are optimised (fit_static drives both):

- jointly with the Gaussians: the drawn frame's correction gets the same loss's gradient and
  one step of :class:`RowAdam` (Adam whose state is per frame and moves only the rows that
  were drawn: torch's Adam would keep moving every frame on stale momentum);
- :func:`refine_poses`: the avatar frozen, a few Adam steps on the pose alone per frame (the
  static fit can sweep its training frames with it once the head has taken shape: a frame is
  drawn only a few times in a whole fit; off by default, it costs a fit iteration per frame
  and step).

Held-out frames are never trained on, but their poses may be refined after the fit with the
avatar frozen (pose only, 6 DoF): that is a photometric tracker, as fair as the landmark
tracker that already sees every frame. fit_static reports held-out quality with and without it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from huma_rt.config_checks import check_ints, check_numbers
from huma_rt.errors import InputError

from .densify import quat_to_matrix
from .fit_pose import quat_multiply

__all__ = ["PoseRefineConfig", "RowAdam", "apply_delta", "refine_poses", "rotvec_to_quat"]

log = logging.getLogger(__name__)


@dataclass
class PoseRefineConfig:
    """Per-frame pose corrections in the static fit. joint: optimise the drawn frame's
    correction with the Gaussians from iteration ``start`` on (before it the Gaussians are a
    blob that any pose fits). lr_rot: radians per step; lr_trans: per step, times the scene
    extent. prior: weight of |r|^2 + |t / extent|^2 (keeps the corrections small and the
    canonical space where the tracker put it). sweeps: fractions of the iterations at which
    every training frame's pose is refined alone for ``sweep_steps`` steps (the Gaussians
    frozen). holdout_steps: pose-only steps per held-out frame after the fit (0: held-out
    frames keep the tracked pose; see module). holdout_min_opacity: the held-out refinement
    renders only the Gaussians at least this opaque (the scores are the whole avatar's).

    Defaults (bench/results/train-pose-2026-12-06): joint steps and 16 held-out steps, no
    sweep. On the 30 s closed-loop clip they took the held-out static fit from 30.2 dB (face
    27.4; no corrections) to 35.3 (face 34.8), the head rotation's error against the truth from
    0.97 to 0.57 degrees (median). A sweep of 4 steps per frame costs about one fit iteration
    per frame and step (+90 % of the static stage at 30 s) and was not measured on a video.

    Fewer held-out steps lose quality: the refinement is still converging at 16 (franck 30 s, one
    avatar, all 89 held-out frames; whole / face dB: 16 steps 30.83 / 29.69; 10 steps at 2.5x
    falling to 0.5x the rates 30.76 / 29.59; 8 at 3x -> 0.5x 30.68 / 29.43; 8 at 2x 30.61 /
    29.37; bench/results/train-holdout-2026-12-07). Leaving the Gaussians under 2 % opacity out of
    the refinement's renders (24 % of them there) moved no score by more than 0.012 dB.
    """

    joint: bool = True
    start: int = 500
    lr_rot: float = 2e-3
    lr_trans: float = 2e-3
    prior: float = 1.0
    sweeps: tuple[float, ...] = ()
    sweep_steps: int = 4
    holdout_steps: int = 16
    holdout_min_opacity: float = 0.02

    def __post_init__(self) -> None:
        self.sweeps = tuple(self.sweeps)
        check_ints(self, {"start": 0, "sweep_steps": 0, "holdout_steps": 0}, owner="pose")
        check_numbers(self, {"lr_rot": 0, "lr_trans": 0, "prior": 0, "holdout_min_opacity": 0}, owner="pose")
        if self.holdout_min_opacity >= 1:
            raise InputError(f"pose.holdout_min_opacity must be in [0, 1); got {self.holdout_min_opacity}")
        for f in self.sweeps:
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
                raise InputError(f"pose.sweeps must be fractions of the iterations in (0, 1); got {self.sweeps!r}")

    @property
    def enabled(self) -> bool:
        return self.joint or (bool(self.sweeps) and self.sweep_steps > 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sweeps"] = list(self.sweeps)
        return d


def rotvec_to_quat(r: torch.Tensor) -> torch.Tensor:
    """Axis-angle [...,3] (radians) -> unit quaternion [...,4] wxyz; smooth through 0."""
    theta2 = (r * r).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-24)
    half = 0.5 * theta
    # sin(x/2)/x ~ 1/2 - x^2/48 near 0 (no 0/0 in the gradient)
    k = torch.where(theta2 < 1e-8, 0.5 - theta2 / 48.0, torch.sin(half) / theta)
    return torch.cat([torch.cos(half), k * r], -1)


def apply_delta(q: torch.Tensor, t: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tracked pose q [4] wxyz, t [3] corrected by delta [6] (see module) -> (q', t')."""
    qd = rotvec_to_quat(delta[:3])
    r = quat_to_matrix(q[None])[0]
    return quat_multiply(q, qd), r @ delta[3:] + t


def corrected_poses(quat: np.ndarray, trans: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """quat [T,4] unit, trans [T,3], delta [T,6] -> the corrected (quat [T,4], trans [T,3]) float32."""
    q = torch.tensor(np.asarray(quat, np.float64), dtype=torch.float32)
    t = torch.tensor(np.asarray(trans, np.float64), dtype=torch.float32)
    d = torch.tensor(np.asarray(delta, np.float64), dtype=torch.float32)
    if q.ndim != 2 or q.shape[1] != 4 or t.shape != (q.shape[0], 3) or d.shape != (q.shape[0], 6):
        raise InputError(f"poses must be quat [T,4], trans [T,3], delta [T,6]; got {tuple(q.shape)}, "
                         f"{tuple(t.shape)}, {tuple(d.shape)}")  # fmt: skip
    with torch.no_grad():
        qs, ts = zip(*(apply_delta(q[i], t[i], d[i]) for i in range(q.shape[0])), strict=True) if q.shape[0] else ((), ())
    if not qs:
        return np.zeros((0, 4), np.float32), np.zeros((0, 3), np.float32)
    # not renormalised: q ⊗ q_d of unit quaternions is unit, and a zero correction stays bit-exact
    return torch.stack(qs).numpy().astype(np.float32), torch.stack(ts).numpy().astype(np.float32)


class RowAdam:
    """Adam over the rows of a [T,D] tensor, one row per step, state per row (see module)."""

    def __init__(self, rows: int, dim: int, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-15) -> None:
        self.m = torch.zeros(rows, dim)
        self.v = torch.zeros(rows, dim)
        self.steps = torch.zeros(rows, dtype=torch.int64)
        self.betas, self.eps = betas, eps

    def step(self, value: torch.Tensor, row: int, grad: torch.Tensor, lr: torch.Tensor) -> None:
        """value[row] -= Adam step of ``grad`` [D] with per-entry ``lr`` [D] (in place)."""
        b1, b2 = self.betas
        self.steps[row] += 1
        n = int(self.steps[row])
        self.m[row] = b1 * self.m[row] + (1 - b1) * grad
        self.v[row] = b2 * self.v[row] + (1 - b2) * grad * grad
        mh = self.m[row] / (1 - b1**n)
        vh = self.v[row] / (1 - b2**n)
        value[row] -= lr * mh / (vh.sqrt() + self.eps)

    def state_dict(self) -> dict:
        return {"m": self.m.clone(), "v": self.v.clone(), "steps": self.steps.clone()}

    def load_state_dict(self, s: dict) -> None:
        self.m, self.v, self.steps = s["m"].clone(), s["v"].clone(), s["steps"].clone()


def prior_loss(delta: torch.Tensor, extent: float, weight: float) -> torch.Tensor:
    """weight x (|r|^2 + |t / extent|^2) of one correction [6]."""
    return weight * ((delta[:3] ** 2).sum() + ((delta[3:] / extent) ** 2).sum())


def refine_poses(loss_of: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor], quat: torch.Tensor,
                 trans: torch.Tensor, delta: torch.Tensor, index: np.ndarray, steps: int, lr: torch.Tensor,
                 extent: float, prior: float) -> torch.Tensor:
    """Pose-only refinement with the avatar frozen. For each frame i of ``index``, ``steps``
    Adam steps on delta[i] [6] (from its current value) of ``loss_of(i, q, t)`` (the
    photometric loss of frame i rendered at pose q [4], t [3]) + the prior. quat [T,4],
    trans [T,3]: the tracked poses; lr [6]: per-entry step. Returns the new delta [T,6]
    (a copy; rows outside ``index`` unchanged). Deterministic."""
    out = delta.detach().clone()
    if steps <= 0:
        return out
    t0 = time.perf_counter()
    for n, i in enumerate(np.asarray(index, np.int64)):
        i = int(i)
        adam = RowAdam(1, 6)  # fresh per frame: torch's Adam has one lr per group, ours one per entry
        d = out[i : i + 1].clone()
        for _ in range(steps):
            x = d[0].clone().requires_grad_(True)
            q, t = apply_delta(quat[i], trans[i], x)
            loss = loss_of(i, q, t) + prior_loss(x, extent, prior)
            (g,) = torch.autograd.grad(loss, x)
            adam.step(d, 0, g, lr)
        out[i] = d[0]
        if (n + 1) % 25 == 0 or n + 1 == len(index):  # minutes of work after the fit's last iteration
            elapsed = time.perf_counter() - t0
            log.info("pose refinement: %d/%d frames, ETA %.0f s", n + 1, len(index),
                     elapsed / (n + 1) * (len(index) - n - 1))  # fmt: skip
    return out
