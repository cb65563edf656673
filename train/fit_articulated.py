"""Fit the articulated avatar: the runtime's SpatialEncoder + Deformer on the video frames.

    result = fit_articulated(data, static, codes, ArticulatedFitConfig(iterations=1500), "run/articulated")
    img = render_articulated(result, head_quat, head_trans, code)

After the static fit (canonical Gaussians, per-frame rigid head pose, background plate) each
frame's motion code (code = E @ (jaw, round, spread, closure, blink) with the demo's embedding
E, export/demo/codes.py; any code_dim works) drives the export/models.py pair the runtime runs: SpatialEncoder
(tri-plane features at the canonical means, once at preload) and Deformer (feat + code -> dmu,
dquat, dscale). Deltas follow the runtime's contract exactly (huma_rt/runtime, export/demo/
articulation.py): means + dmu, quats + dquat (normalised by the kernels), log_scales + dscale,
on the dynamic Gaussians only (region != 0), in canonical (head) space, then the frame's head
pose; rendered through the kernels' forward and backward (train/fit_pose.render_view).

Decisions:
- Which Gaussians move: a region, not all. With the data's 68 landmark anchors (every tracked
  video) it is the face parts articulation moves (articulated_region.landmark_region: lower face
  from the nose to a few mm below the jaw line, eyes with lids and brows; ``region_source``
  "landmarks"); without them (or "residual") the Gaussians where the static avatar's residual
  follows the codes (dilated over the head's surface). On franck the residual selection also
  took the collar and the shoulders, which move with the torso. Either way what the codes do
  not explain (hair, the rigid skull, the backdrop) cannot drift, and the runtime deforms a few
  thousand rows, not the whole head. A small L2 on the
  deltas (``delta_weight``) keeps the rest of the region still where the code says nothing.
- The canonical Gaussians are refined jointly at a small rate (``canonical_lr_scale`` x the
  static fit's rates, colours, opacities, scales and rotations; 0 freezes them): the static
  avatar's mouth is the average of open and closed, and only a joint fit can give the teeth and
  lips their own colours. Canonical means stay where the static fit put them (motion is the
  deformer's; moving both would let the rest shape drift). No density control: the count is
  fixed, so the runtime's cost is known after the static fit.
- Loss: the static fit's (1 - w) L1 + w D-SSIM, each pixel weighted 1 + ``region_weight``
  inside the dynamic region's image footprint (the mouth is a few % of the frame), plus
  ``eye_weight`` inside the eyes' landmark footprint (the lids are a few pixels at the fit's size).
- Frames: training frames are drawn with probability proportional to 1 + ``articulated_boost``
  x their code's distance from the median code (relative to the mean distance), so speech and
  extreme articulation are not drowned by rest frames. Codes get N(0, ``code_noise``) noise, as
  the demo deformer was trained, so the audio encoder's error off the code span is tolerated.
  Frames whose code is not finite (articulation unknown) are left out, as invalid frames are.
- Motion scale: dmu is learnt in units of ``motion_scale`` x the head size (the Deformer's head
  starts with ~1e-2 outputs; a millimetre head would otherwise need huge weights) and the scale
  is folded into the head's dmu rows at the end, so the exported Deformer is the plain class.
- Network size: the demo deformer's (DeformerConfig plane_resolution 64, hidden 64, 2 layers),
  tri-plane box = the dynamic Gaussians' bounds plus ``bbox_margin`` x their extent; the
  learning rate warms up over 5 % of the iterations and decays by a cosine to 5 %.
- Held-out frames: every ``holdout_every``-th usable frame (the static fit's split when the
  same k), never trained on; metrics (heldout_eval.py, the static fit's evaluator): PSNR/SSIM
  whole, face (the face mattes), face_wide (the widened training matte), head, mouth, eyes and
  region (the dynamic footprint), for the articulated avatar and for the static one (zero
  deltas) on the same frames.
- Checkpoints (``articulated.ckpt.pt``: networks, canonical parameters, Adam state, random
  states, history) every ``checkpoint_every`` iterations; ``resume=True`` continues from it and
  ends where an uninterrupted run ends. torch runs 1 intra-op thread by default (as fit_static:
  small per-iteration tensors lose more to hand-off than they gain).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from huma_rt.export.models import Deformer, SpatialEncoder

from huma_rt.config_checks import check_ints, check_numbers
from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig

from .articulated_region import (
    dynamic_gaussians,
    face_height,
    head_size,
    landmark_frame,
    landmark_region,
    part_footprint,
    region_mask,
)
from .fit_pose import render_view
from .fit_static import StaticFitConfig, StaticFitResult
from .fit_views import StaticFitData, Views, background_plate, split_views
from .heldout_eval import evaluate
from .losses import ssim_map

__all__ = ["ArticulatedFitConfig", "ArticulatedFitResult", "fit_articulated", "render_articulated", "CHECKPOINT"]

log = logging.getLogger(__name__)

CHECKPOINT = "articulated.ckpt.pt"
STAGE = "articulated"
REGION_DYNAMIC = 1  # any non-zero region id is deformed by the runtime
REGION_EYES = 2  # the dynamic Gaussians on the eye parts (the lids: what a blink may move)
REGION_SOURCES = ("landmarks", "residual")
_CANONICAL = ("log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest")


@dataclass
class ArticulatedFitConfig:
    """iterations: optimizer steps (one frame each). downscale: integer factor frames and
    intrinsics are reduced by. seed: init, frame draws, code noise. holdout_every: every k-th
    usable frame held out (0: none). lr: Adam rate of the networks (peak; 1e-2 until 2026-12-07:
    on the 30 s closed loop its fit stalled by seed, held-out mouth 29.0 / 31.1 dB for seeds 0 / 1,
    where 3e-3 gives 32.0 / 32.1 and franck 2 min's mouth 28.6 for 28.1; bench/results/
    train-lr-2026-12-07). canonical_lr_scale:
    the canonical Gaussians' rates as a multiple of StaticFitConfig's (0: frozen).
    ssim_weight: the D-SSIM share. region_weight: extra loss weight inside the dynamic region.
    delta_weight: L2 on the deltas (dmu in motion units, dquat, dscale). motion_scale: dmu's
    unit as a fraction of the head size. code_noise: std of the noise added to training codes.
    articulated_boost: how much more a frame far from the median code is drawn.
    eye_weight: extra loss weight inside the eyes' landmark footprint (lids, brows; needs the
    landmark anchors). On franck 30 s, 4 vs 0: held-out eyes 32.6 vs 31.8 dB, mouth 30.6 vs 30.0,
    face 28.2 vs 28.1 (bench/results/train-articulated-face-2026-12-06).
    region_source: "landmarks" (the face parts around the data's 68 anchors; the residual
    selection when the data has none) or "residual". region_margin, region_below_jaw,
    region_depth_front, region_depth_back: landmark_region's bounds (fractions of the face height).
    region_max_extent: landmark region only: a Gaussian whose 3-sigma extent (3 x its largest
    scale) passes this fraction of the face height stays static (0: no cap). Such splats are too
    coarse to shape a lip or a lid, yet the runtime's CPU renderer redraws every tile the dynamic
    Gaussians cover: on the 30 s closed loop at 512 px, 0.25 leaves 141 of 4,528 static, those
    tiles go from 437 to 255 (the demo's: 168) and a frame from 1.45-1.50 to 1.17 x the demo's;
    held-out mouth -0.02 dB there, -0.22 on franck 2 min (bench/results/runtime-trained-2026-12-07).
    region_ratio, region_dilate, region_max_fraction, region_probes, region_blur: the residual
    selection (articulated_region.dynamic_gaussians; probes = training frames it looks at).
    region_radius: the region's image footprint radius in px (None: width // 48, at least 1).
    plane_resolution, plane_channels, hidden, layers: DeformerConfig. bbox_margin: tri-plane
    box margin as a fraction of the dynamic Gaussians' extent. checkpoint_every: iterations
    between checkpoints (0: only the end). log_every: iterations between progress reports.
    torch_threads: intra-op threads during the fit, restored after (None: leave)."""

    iterations: int = 1500
    downscale: int = 4
    seed: int = 0
    holdout_every: int = 8
    lr: float = 3e-3
    canonical_lr_scale: float = 0.1
    ssim_weight: float = 0.2
    region_weight: float = 2.0
    delta_weight: float = 1e-3
    motion_scale: float = 0.05
    code_noise: float = 0.05
    articulated_boost: float = 2.0
    eye_weight: float = 4.0
    region_source: str = "landmarks"
    region_margin: float = 0.06
    region_below_jaw: float = 0.03
    region_depth_front: float = 0.15
    region_depth_back: float = 0.2
    region_max_extent: float = 0.25
    region_ratio: float = 3.0
    region_dilate: float = 0.04
    region_max_fraction: float = 0.3
    region_probes: int = 64
    region_blur: int = 1
    region_radius: int | None = None
    plane_resolution: int = 64
    plane_channels: int = 8
    hidden: int = 64
    layers: int = 2
    bbox_margin: float = 0.15
    checkpoint_every: int = 250
    log_every: int = 50
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        owner = "ArticulatedFitConfig"
        check_ints(self, {"iterations": 1, "downscale": 1, "seed": 0, "holdout_every": 0, "region_probes": 1,
                          "region_blur": 0, "plane_resolution": 2, "plane_channels": 1, "hidden": 1, "layers": 0,
                          "checkpoint_every": 0, "log_every": 1}, owner=owner)  # fmt: skip
        check_ints(self, {"region_radius": 0, "torch_threads": 1}, owner=owner, optional=True)
        check_numbers(self, dict.fromkeys(("lr", "canonical_lr_scale", "ssim_weight", "region_weight", "delta_weight",
                                           "motion_scale", "code_noise", "articulated_boost", "eye_weight",
                                           "region_margin", "region_below_jaw", "region_depth_front",
                                           "region_depth_back", "region_max_extent", "region_ratio", "region_dilate",
                                           "region_max_fraction", "bbox_margin"), 0), owner=owner)  # fmt: skip
        if self.region_source not in REGION_SOURCES:
            raise InputError(f"region_source must be one of {REGION_SOURCES}; got {self.region_source!r}")
        if self.ssim_weight > 1:
            raise InputError(f"ssim_weight must be in [0, 1]; got {self.ssim_weight}")
        if not 0 < self.region_max_fraction <= 1:
            raise InputError(f"region_max_fraction must be in (0, 1]; got {self.region_max_fraction}")
        if self.lr <= 0 or self.motion_scale <= 0:
            raise InputError(f"lr and motion_scale must be > 0; got {self.lr}, {self.motion_scale}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ArticulatedFitConfig:
        return cls(**d)


@dataclass
class ArticulatedFitResult:
    """gaussians: canonical Gaussians (exp scales; region != 0 on the dynamic rows, the rows the
    runtime deforms). spatial, deformer: the export/models.py classes in eval mode (deltas in
    canonical units: the motion scale is folded in). deformer_config: their DeformerConfig.
    background [h,w,3] float32: the plate at the fit's size. camera: the fit's camera.
    metrics: held-out {psnr, ssim, psnr_face, ssim_face, psnr_region, ssim_region, frames,
    static: the same for the static fit's avatar as it was given}. region: the dynamic selection's statistics.
    history: progress records. train_frames, held_out: frame indices. seconds: fit time."""

    gaussians: Gaussians
    spatial: SpatialEncoder
    deformer: Deformer
    deformer_config: DeformerConfig
    background: np.ndarray
    camera: Camera
    metrics: dict
    region: dict
    history: list
    train_frames: np.ndarray
    held_out: np.ndarray
    seconds: float

    @property
    def dynamic(self) -> np.ndarray:
        """Indices [Nd] of the dynamic Gaussians (the rows the deformer moves)."""
        return np.flatnonzero(self.gaussians.region != 0)


def _check_inputs(data: StaticFitData, static: StaticFitResult, codes: np.ndarray) -> np.ndarray:
    """codes as float32 [T,D]; InputError naming the bad argument."""
    if not isinstance(static, StaticFitResult):
        raise InputError(f"static must be a StaticFitResult (fit_static's result); got {type(static).__name__}")
    data.validate()
    t = data.frames.shape[0]
    c = np.asarray(codes) if isinstance(codes, np.ndarray) else None
    if c is None or c.ndim != 2 or c.shape[0] != t or c.shape[1] < 1 or not np.issubdtype(c.dtype, np.floating):
        raise InputError(f"codes must be a float array [T, code_dim] with T = {t} frames; got "
                         f"{getattr(codes, 'dtype', type(codes).__name__)} {getattr(codes, 'shape', '')}")  # fmt: skip
    g = static.gaussians
    if not isinstance(g, Gaussians) or g.count < 1:
        raise InputError("static.gaussians must hold at least one Gaussian")
    return c.astype(np.float32)


def _lr_factor(it: int, iterations: int) -> float:
    """Warm-up over 5 % of the iterations, then a cosine from 1 to 0.05."""
    warm = max(1, int(0.05 * iterations))
    if it <= warm:
        return it / warm
    f = (it - warm) / max(iterations - warm, 1)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * f))


def deformer_config(means: np.ndarray, code_dim: int, cfg: ArticulatedFitConfig) -> DeformerConfig:
    """The DeformerConfig whose tri-plane box hugs the dynamic Gaussians' means [Nd,3]."""
    lo, hi = means.min(0), means.max(0)
    pad = cfg.bbox_margin * np.maximum(hi - lo, 1e-3 * max(head_size(means), 1e-6))
    return DeformerConfig(code_dim=int(code_dim), plane_channels=cfg.plane_channels,
                          plane_resolution=cfg.plane_resolution, hidden=cfg.hidden, layers=cfg.layers,
                          bbox_min=[float(x) for x in lo - pad], bbox_max=[float(x) for x in hi + pad])  # fmt: skip


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise FormatError(f"{path} is not a readable articulated-fit checkpoint: {e}") from e


def canonical_params(g: Gaussians) -> dict[str, torch.Tensor]:
    """Copies of the Gaussians' arrays as fit_pose.render_view's parameter dict (torch float32)."""
    p = {"means": g.means, "log_scales": g.log_scales, "quats": g.quats, "opacity_logits": g.opacity_logits,
         "sh_dc": g.sh[:, :1]}  # fmt: skip
    if g.sh.shape[1] > 1:
        p["sh_rest"] = g.sh[:, 1:]
    # copies: the optimizer steps these in place and the static result must stay as it was
    return {k: torch.from_numpy(np.array(v, np.float32, copy=True, order="C")) for k, v in p.items()}


class _Model:
    """The trainable pieces: canonical parameters, the dynamic rows and the two networks."""

    def __init__(self, g: Gaussians, dynamic: np.ndarray, dcfg: DeformerConfig, scale: float, seed: int):
        self.params = canonical_params(g)
        for k in _CANONICAL:
            if k in self.params:
                self.params[k] = torch.nn.Parameter(self.params[k])
        self.sh_degree = g.sh_degree
        self.dynamic = torch.from_numpy(dynamic.astype(np.int64))
        self.scale = float(scale)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(seed)
            self.spatial, self.deformer = SpatialEncoder(dcfg), Deformer(dcfg)

    def deltas(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """code [D] -> (dmu in canonical units, dquat, dscale), each [Nd, k]."""
        feat = self.spatial(self.params["means"][self.dynamic])
        dmu, dquat, dscale = self.deformer(feat, code[None])
        return dmu[0] * self.scale, dquat[0], dscale[0]

    def deformed(self, code: torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple]:
        """(the canonical parameters with the deltas of ``code`` [D] added, the deltas)."""
        p = dict(self.params)
        # the runtime adds dquat to unit quaternions (the bundle stores them normalised)
        p["quats"] = p["quats"] / p["quats"].norm(dim=1, keepdim=True)
        d = self.deltas(code)
        idx = self.dynamic
        for key, delta in zip(("means", "quats", "log_scales"), d, strict=True):
            p[key] = p[key].index_add(0, idx, delta)
        return p, d


def _optimizer(model: _Model, cfg: ArticulatedFitConfig) -> torch.optim.Adam:
    groups = [{"params": list(model.spatial.parameters()), "lr": cfg.lr, "name": "spatial"},
              {"params": list(model.deformer.parameters()), "lr": cfg.lr, "name": "deformer"}]  # fmt: skip
    if cfg.canonical_lr_scale > 0:
        s = StaticFitConfig()
        lrs = {"log_scales": s.lr_scales, "quats": s.lr_quats, "opacity_logits": s.lr_opacity, "sh_dc": s.lr_sh,
               "sh_rest": s.lr_sh / 20.0}  # fmt: skip
        groups += [{"params": [model.params[k]], "lr": cfg.canonical_lr_scale * lrs[k], "name": k}
                   for k in _CANONICAL if k in model.params]  # fmt: skip
    return torch.optim.Adam(groups, eps=1e-15)


def _weighted_loss(img: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """(1 - w) weighted L1 + w weighted D-SSIM of images [h,w,3]; weight [h,w] (mean-normalised)."""
    wn = weight / weight.mean()
    l1 = ((img - target).abs().mean(-1) * wn).mean()
    if ssim_weight == 0:
        return l1
    return (1 - ssim_weight) * l1 + ssim_weight * ((1 - ssim_map(img, target)) * wn).mean()


def fit_articulated(data: StaticFitData, static: StaticFitResult, codes: np.ndarray,
                    config: ArticulatedFitConfig | None = None, out_dir: str | Path | None = None, *,
                    resume: bool = False, progress: Callable[[dict], None] | None = None) -> ArticulatedFitResult:
    """Train SpatialEncoder + Deformer (and refine the canonical Gaussians) on the frames of
    ``data`` with ``static``'s avatar and per-frame codes [T, code_dim] float32 (see module).
    out_dir: checkpoints (None: none). resume: continue from out_dir's checkpoint. progress:
    called with {stage, iteration, iterations, loss, count, elapsed_s, eta_s} every
    ``log_every`` iterations (fit_static's protocol; count = dynamic Gaussians)."""
    cfg = config or ArticulatedFitConfig()
    if not isinstance(cfg, ArticulatedFitConfig):
        raise InputError(f"config must be an ArticulatedFitConfig; got {type(cfg).__name__}")
    codes = _check_inputs(data, static, codes)
    before = torch.get_num_threads()
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    try:
        return _fit(data, static, codes, cfg, out_dir, resume, progress)
    finally:
        torch.set_num_threads(before)


def _fit(data, static, codes, cfg: ArticulatedFitConfig, out_dir, resume, progress) -> ArticulatedFitResult:
    views = Views(data, cfg.downscale)
    landmarks = landmark_frame(data.anchors)
    usable = data.valid_mask() & np.isfinite(codes).all(1)
    if usable.sum() < 2:
        raise InputError(f"the articulated fit needs at least 2 valid frames with finite codes; got {int(usable.sum())}")
    train, held = split_views(usable, cfg.holdout_every)
    plate = background_plate(views.frames, views.mattes, train)
    codes_t = torch.from_numpy(np.nan_to_num(codes))
    ckpt = None if out_dir is None else Path(out_dir) / CHECKPOINT
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    state = _load(ckpt) if resume and ckpt is not None and ckpt.is_file() else None

    if state is not None:
        dynamic, region = state["dynamic"].numpy(), json.loads(state["region"])
    else:
        dynamic, region = _select(static, views, train, codes, plate, landmarks, cfg)
    means = static.gaussians.means
    dcfg = deformer_config(means[dynamic], codes.shape[1], cfg)
    scale = cfg.motion_scale * head_size(means)
    model = _Model(static.gaussians, dynamic, dcfg, scale, cfg.seed)
    opt = _optimizer(model, cfg)
    dyn_means = means[dynamic]
    radius = cfg.region_radius if cfg.region_radius is not None else max(1, views.camera.width // 48)
    use_eyes = cfg.eye_weight > 0 and landmarks is not None

    # draw weights: 1 + boost x (distance from the median code / the mean distance)
    dist = np.linalg.norm(codes[train] - np.median(codes[train], 0), axis=1)
    p = 1.0 + cfg.articulated_boost * dist / max(float(dist.mean()), 1e-12)
    p = p / p.sum()
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, history = 0, []
    if state is not None:
        if state["config"] != json.dumps(cfg.to_dict(), sort_keys=True):
            log.warning("%s was written with another config; continuing with the given one", ckpt)
        model.spatial.load_state_dict(state["spatial"])
        model.deformer.load_state_dict(state["deformer"])
        with torch.no_grad():
            for k, v in state["params"].items():
                model.params[k].copy_(v)
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = json.loads(state["rng"])
        gen.set_state(state["torch_rng"])
        start, history = int(state["iteration"]), json.loads(state["history"])
        log.info("articulated fit: resumed from %s at iteration %d", ckpt, start)

    def checkpoint(it: int) -> None:
        if ckpt is None:
            return
        _save(ckpt, {"iteration": it, "spatial": model.spatial.state_dict(), "deformer": model.deformer.state_dict(),
                     "params": {k: model.params[k].detach().clone() for k in _CANONICAL if k in model.params},
                     "optimizer": opt.state_dict(), "dynamic": torch.from_numpy(dynamic),
                     "region": json.dumps(region), "rng": json.dumps(rng.bit_generator.state),
                     "torch_rng": gen.get_state(), "history": json.dumps(history),
                     "config": json.dumps(cfg.to_dict(), sort_keys=True)})  # fmt: skip

    model.spatial.train()
    model.deformer.train()
    t0, loss_sum, loss_n = time.perf_counter(), 0.0, 0
    for it in range(start + 1, cfg.iterations + 1):
        f = _lr_factor(it, cfg.iterations)
        for g in opt.param_groups:
            if g["name"] in ("spatial", "deformer"):
                g["lr"] = cfg.lr * f
        i = int(rng.choice(train, p=p))
        code = codes_t[i] + cfg.code_noise * torch.randn(codes_t.shape[1], generator=gen)
        params, (dmu, dquat, dscale) = model.deformed(code)
        out = render_view(params, views.camera, views.quat[i], views.trans[i], plate, model.sh_degree)
        weight = 1.0 + cfg.region_weight * region_mask(dyn_means, views.quat[i].numpy(), views.trans[i].numpy(),
                                                       views.camera, radius)  # fmt: skip
        if use_eyes:
            weight = weight + cfg.eye_weight * part_footprint(landmarks, "eyes", views.quat[i].numpy(),
                                                              views.trans[i].numpy(), views.camera)  # fmt: skip
        loss = _weighted_loss(out.image, views.target(i), weight, cfg.ssim_weight)
        if cfg.delta_weight > 0:
            loss = loss + cfg.delta_weight * ((dmu / scale).square().mean() + dquat.square().mean()
                                              + dscale.square().mean())  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
        if it % cfg.log_every == 0 or it == cfg.iterations:
            elapsed = time.perf_counter() - t0
            rec = {"stage": STAGE, "iteration": it, "iterations": cfg.iterations, "loss": loss_sum / loss_n,
                   "count": int(dynamic.size), "elapsed_s": elapsed,
                   "eta_s": elapsed / (it - start) * (cfg.iterations - it)}  # fmt: skip
            history.append(rec)
            loss_sum, loss_n = 0.0, 0
            log.info("articulated fit: %d/%d loss %.4f, ETA %.0f s", it, cfg.iterations, rec["loss"], rec["eta_s"])
            if progress is not None:
                progress(rec)
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it != cfg.iterations:
            checkpoint(it)
    checkpoint(cfg.iterations)
    seconds = time.perf_counter() - t0
    model.spatial.eval()
    model.deformer.eval()
    metrics: dict = {}
    if held.size:
        metrics = evaluate(lambda i: model.deformed(codes_t[i])[0], model.sh_degree, views, held, plate,
                           dyn_means, radius, landmarks)  # fmt: skip
        before = canonical_params(static.gaussians)  # the static avatar as fitted, not refined
        metrics["static"] = evaluate(lambda i: before, model.sh_degree, views, held, plate, dyn_means, radius,
                                     landmarks)  # fmt: skip
        log.info("articulated fit: held-out PSNR %.2f dB (face %s, region %s); static %.2f (region %s)",
                 metrics["psnr"], metrics.get("psnr_face"), metrics.get("psnr_region"), metrics["static"]["psnr"],
                 metrics["static"].get("psnr_region"))  # fmt: skip
    eyes = None
    if landmarks is not None and region.get("source") == "landmarks":
        eyes = landmark_region(means, landmarks, margin=cfg.region_margin, below_jaw=cfg.region_below_jaw,
                               depth_front=cfg.region_depth_front, depth_back=cfg.region_depth_back,
                               parts=("eye_right", "eye_left"))  # fmt: skip
    return ArticulatedFitResult(_to_gaussians(model, eyes), model.spatial, _folded(model.deformer, scale), dcfg,
                                plate.numpy(), views.camera, metrics, region, history, train, held, seconds)  # fmt: skip


def _select(static: StaticFitResult, views: Views, train: np.ndarray, codes: np.ndarray, plate: torch.Tensor,
            landmarks: np.ndarray | None, cfg: ArticulatedFitConfig) -> tuple[np.ndarray, dict]:
    """The dynamic Gaussians' indices [Nd] int64 and the selection's statistics (see module)."""
    means = static.gaussians.means
    if cfg.region_source == "landmarks" and landmarks is not None:
        chosen = landmark_region(means, landmarks, margin=cfg.region_margin, below_jaw=cfg.region_below_jaw,
                                 depth_front=cfg.region_depth_front, depth_back=cfg.region_depth_back)  # fmt: skip
        unit = face_height(landmarks)
        coarse = np.zeros_like(chosen)
        if cfg.region_max_extent > 0:
            coarse = chosen & (3.0 * static.gaussians.scales().max(1) > cfg.region_max_extent * unit)
        dynamic = np.flatnonzero(chosen & ~coarse)
        region = {"source": "landmarks", "dynamic": int(dynamic.size), "count": int(means.shape[0]),
                  "face_height": unit, "coarse_left_static": int(coarse.sum())}  # fmt: skip
        log.info("articulated fit: %d of %d Gaussians on the landmarks' face parts (%d coarser than %.2f face "
                 "heights left static)", dynamic.size, means.shape[0], int(coarse.sum()), cfg.region_max_extent)  # fmt: skip
        if dynamic.size == 0:
            raise InputError("no Gaussian lies on the landmarks' face parts (mouth, eyes): are the anchors in the "
                             "Gaussians' canonical space? or set region_source='residual'")  # fmt: skip
        return dynamic, region
    probes = train[np.linspace(0, train.size - 1, min(cfg.region_probes, train.size)).round().astype(int)]
    dynamic, region = dynamic_gaussians(canonical_params(static.gaussians), views, probes, codes[probes], plate,
                                        static.gaussians.sh_degree,
                                        ratio=cfg.region_ratio, dilate=cfg.region_dilate,
                                        max_fraction=cfg.region_max_fraction, blur=cfg.region_blur)  # fmt: skip
    if dynamic.size == 0:
        raise InputError("no Gaussian is dynamic: no residual of the static avatar follows the codes (none "
                         f"above {cfg.region_ratio} x the median); lower region_ratio or skip this stage")
    return dynamic, {"source": "residual", **region}


def _folded(deformer: Deformer, scale: float) -> Deformer:
    """A copy of ``deformer`` whose dmu rows emit canonical units (the motion scale folded in)."""
    d = copy.deepcopy(deformer).eval()
    with torch.no_grad():
        d.head.weight[0:3] *= scale
        d.head.bias[0:3] *= scale
    return d


def _to_gaussians(model: _Model, eyes: np.ndarray | None = None) -> Gaussians:
    """The fitted Gaussians; region REGION_DYNAMIC on the dynamic rows, REGION_EYES on those of
    them ``eyes`` [N] bool marks (the bundle names that region as the one a blink moves)."""
    p = {k: v.detach() for k, v in model.params.items()}
    sh = p["sh_dc"] if "sh_rest" not in p else torch.cat([p["sh_dc"], p["sh_rest"]], 1)
    region = np.zeros(p["means"].shape[0], np.uint8)
    region[model.dynamic.numpy()] = REGION_DYNAMIC
    if eyes is not None:
        region[model.dynamic.numpy()[eyes[model.dynamic.numpy()]]] = REGION_EYES
    q = p["quats"] / p["quats"].norm(dim=1, keepdim=True)
    f = {k: np.ascontiguousarray(v.numpy(), np.float32) for k, v in (("means", p["means"]), ("log_scales", p["log_scales"]),
                                                                      ("opacity_logits", p["opacity_logits"]),
                                                                      ("quats", q), ("sh", sh))}  # fmt: skip
    return Gaussians(**f, region=region, scale_activation="exp")


def render_articulated(result: ArticulatedFitResult, head_quat: np.ndarray, head_trans: np.ndarray,
                       code: np.ndarray, *, gaussians: Gaussians | None = None, camera: Camera | None = None,
                       background: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """The articulated avatar with motion code [code_dim] at a head pose (quat [4] wxyz, trans
    [3]; model-to-camera) over the plate, at the fit's size -> rgb [h,w,3] float32 in [0,1].
    Uses the result's own SpatialEncoder and Deformer exactly as the runtime applies them.
    ``gaussians`` (the same rows, e.g. pack_avatar.lowpass_for_upscale's), ``camera`` and its
    ``background`` [h,w,3] replace the result's (drawn at another size)."""
    if (camera is None) != (background is None):
        raise InputError("render_articulated: give camera and background together (the plate at that camera's size)")
    g = result.gaussians if gaussians is None else gaussians
    c = np.asarray(code, np.float64)
    if c.shape != (result.deformer_config.code_dim,) or not np.isfinite(c).all():
        raise InputError(f"code must be finite with shape ({result.deformer_config.code_dim},); got {c.shape}")
    q = torch.tensor(np.asarray(head_quat, np.float64), dtype=torch.float32)
    t = torch.tensor(np.asarray(head_trans, np.float64), dtype=torch.float32)
    if q.shape != (4,) or t.shape != (3,):
        raise InputError(f"head pose must be quat [4] and trans [3]; got {tuple(q.shape)}, {tuple(t.shape)}")
    rows = torch.from_numpy(np.flatnonzero(g.region != 0))
    params = canonical_params(g)
    with torch.no_grad():
        feat = result.spatial(params["means"][rows])
        dmu, dquat, dscale = result.deformer(feat, torch.tensor(c, dtype=torch.float32)[None])
        for key, delta in (("means", dmu[0]), ("quats", dquat[0]), ("log_scales", dscale[0])):
            params[key] = params[key].index_add(0, rows, delta)
        cam, bg = (result.camera, result.background) if camera is None else (camera, background)
        out = render_view(params, cam, q, t, torch.from_numpy(np.asarray(bg, np.float32)), g.sh_degree)
    return out.image.clamp(0, 1).numpy()
