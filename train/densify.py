"""3DGS adaptive density control over the fit's parameters and their Adam state.

Every ``interval`` iterations between ``start`` and ``stop``, from the mean screen-space gradient
of each Gaussian since the last step (train/raster_autograd.DensifyStats, pixels):
- clone: gradient >= threshold and small (largest scale <= percent_dense * extent): a copy;
- split: gradient >= threshold and large: two children sampled from the Gaussian, scales / 1.6;
  the parent goes;
- prune: opacity < min_opacity, or largest scale > max_world_size * extent (nothing is added
  for a pruned Gaussian).
New rows start with zero Adam moments, kept rows keep theirs (as 3DGS does). Every
``opacity_reset_every`` iterations opacities are clamped to 0.01 and their moments zeroed, so
that Gaussians which are not needed fade and get pruned. 3DGS's screen-size prune is left out:
the rasterizer does not report radii.

Parameters are a dict name -> torch.nn.Parameter, every one with N rows: means [N,3] and
log_scales [N,3] (exp activation) are required; the rest (quats [N,4] wxyz, opacity_logits [N],
SH, ...) are copied to new rows. The optimizer holds one param group per name (``group["name"]``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

from huma_rt.config_checks import check_ints, check_numbers
from huma_rt.errors import InputError

log = logging.getLogger(__name__)

RESET_OPACITY = 0.01


@dataclass
class DensifyConfig:
    """start/stop/interval: iterations of density control. grad_threshold: mean |dL/d 2D mean|
    over views above which a Gaussian is cloned or split, in 3DGS's NDC units (the pixel
    gradient x half the image's larger side, so it does not depend on the resolution).
    percent_dense: the scale (fraction of the scene extent) between clone and split.
    min_opacity / max_world_size: prune limits (max_world_size a fraction of the extent).
    opacity_reset_every: iterations between opacity resets (0: never). max_count: no clone or
    split once the count reaches it."""

    start: int = 200
    stop: int = 5000
    interval: int = 100
    grad_threshold: float = 2e-4
    percent_dense: float = 0.01
    min_opacity: float = 0.005
    max_world_size: float = 0.5
    opacity_reset_every: int = 3000
    max_count: int = 100_000

    def __post_init__(self) -> None:
        check_ints(self, {"start": 0, "stop": 0, "interval": 1, "opacity_reset_every": 0, "max_count": 0},
                   owner="DensifyConfig")  # fmt: skip
        check_numbers(self, dict.fromkeys(("grad_threshold", "percent_dense", "min_opacity", "max_world_size"), 0),
                      owner="DensifyConfig")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    def due(self, iteration: int) -> bool:
        """Density control after this (1-based) iteration?"""
        return self.start <= iteration <= self.stop and iteration % self.interval == 0

    def reset_due(self, iteration: int) -> bool:
        return (self.opacity_reset_every > 0 and iteration <= self.stop
                and iteration % self.opacity_reset_every == 0)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N,3,3] of quaternions [N,4] wxyz (any non-zero norm)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def _group(optimizer: torch.optim.Optimizer, name: str) -> dict:
    for g in optimizer.param_groups:
        if g.get("name") == name:
            return g
    raise InputError(f"the optimizer has no param group named {name!r}")


def rebuild(params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
            keep: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> None:
    """Replace every parameter by its rows ``keep`` (bool [N] or indices) followed by ``extra``
    rows (new Gaussians, zero Adam moments); kept rows keep their moments. In place on the dict
    and the optimizer."""
    for name in list(params):
        old = params[name]
        rows = old.detach()[keep]
        add = None if extra is None else extra[name].to(old.dtype)
        new = torch.nn.Parameter(rows if add is None else torch.cat([rows, add]))
        group = _group(optimizer, name)
        state = optimizer.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                kept = state[key][keep]
                state[key] = kept if add is None else torch.cat([kept, torch.zeros_like(add)])
            optimizer.state[new] = state
        group["params"] = [new]
        params[name] = new


def densify_and_prune(params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer,
                      grad_mean: torch.Tensor, extent: float, cfg: DensifyConfig,
                      generator: torch.Generator | None = None) -> dict[str, int]:
    """One 3DGS density-control step (see module) from the mean screen-space gradient [N].
    Returns the counts {"cloned", "split", "pruned", "count"}."""
    with torch.no_grad():
        n = params["means"].shape[0]
        if grad_mean.shape != (n,):
            raise InputError(f"grad_mean must have shape ({n},); got {tuple(grad_mean.shape)}")
        scales = params["log_scales"].exp().max(dim=1).values
        opacity = torch.sigmoid(params["opacity_logits"])
        prune = (opacity < cfg.min_opacity) | (scales > cfg.max_world_size * extent)
        hot = (grad_mean.to(scales.dtype) >= cfg.grad_threshold) & ~prune
        if n >= cfg.max_count:
            hot[:] = False
        small = scales <= cfg.percent_dense * extent
        clone, split = hot & small, hot & ~small
        extra = {k: [p.detach()[clone]] for k, p in params.items()}
        if split.any():
            idx = torch.nonzero(split).squeeze(1).repeat(2)
            s = params["log_scales"].detach()[idx].exp()
            noise = torch.randn(s.shape, generator=generator, dtype=s.dtype)
            rot = quat_to_matrix(params["quats"].detach()[idx])
            extra["means"].append(params["means"].detach()[idx] + (rot @ (noise * s)[..., None])[..., 0])
            extra["log_scales"].append(torch.log(s / 1.6))
            for k in params.keys() - {"means", "log_scales"}:
                extra[k].append(params[k].detach()[idx])
        rebuild(params, optimizer, ~(prune | split), {k: torch.cat(v) for k, v in extra.items()})
        counts = {"cloned": int(clone.sum()), "split": int(split.sum()),
                  "pruned": int(prune.sum()), "count": int(params["means"].shape[0])}
    log.debug("densify: %s", counts)
    return counts


def reset_opacity(params: dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
    """Clamp opacities to at most 0.01 and zero their Adam moments (3DGS's periodic reset)."""
    with torch.no_grad():
        p = params["opacity_logits"]
        cap = math.log(RESET_OPACITY / (1.0 - RESET_OPACITY))
        p.clamp_(max=cap)
        state = optimizer.state.get(p)
        if state:
            state["exp_avg"].zero_()
            state["exp_avg_sq"].zero_()
