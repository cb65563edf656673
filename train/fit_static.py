"""Fit the static avatar: canonical Gaussians from video frames and per-frame head poses.

    data = StaticFitData(frames, head_quat, head_trans, K, mattes=alpha, valid=valid)
    result = fit_static(data, StaticFitConfig(iterations=3000), "run/static", resume=True)
    result.gaussians   # huma_rt.gaussians.Gaussians in head (canonical) space, exp scales

Each iteration renders one random training frame: the canonical Gaussians are moved by that
frame's rigid head pose (means R p + t, quaternions q ⊗ q_i, degree-1 SH turned with the head;
canonical space = head space, the pose is model-to-camera in the camera's OpenCV frame) and
rasterized by the kernels' own forward and backward (train/raster_autograd) with an identity
camera of the given intrinsics. Loss: 3DGS's 0.8 L1 + 0.2 D-SSIM on the whole frame, plus
``matte_weight`` x L1 between the rendered alpha and the matte (it keeps the head opaque where
the background plate happens to match it).

Background: a static plate estimated once, the per-pixel temporal median of training pixels
outside the matte (pixels the head covers in every frame take the nearest such pixel's value,
not the median of the head there: see fit_views._fill_unseen); the render is composited over
it. A fixed camera sees a fixed backdrop, and a plate measured from the pixels costs nothing to
learn; a plate cannot follow lighting changes (left for later).

Poses: each frame's tracked pose is corrected by a small rotation + shift in head space
(train/pose_refine.py, ``config.pose``), optimised with the Gaussians; the corrected poses are
the result's ``head_quat`` / ``head_trans``, which the later stages use.

Held-out frames: every ``holdout_every``-th valid frame is never trained on; PSNR/SSIM on them
at the fit's resolution (train/heldout_eval.py, the articulated fit's evaluator: whole frame,
face = the tracker's matte, face_wide = the training matte, head without the collar, mouth and
eyes) are in ``result.metrics``, at their poses refined after the fit with the avatar frozen
(``pose.holdout_steps``: a photometric tracker, pose only) and, under
``metrics["tracked_pose"]``, at the tracked poses.
Checkpoints (``static.ckpt.pt``: parameters, Adam state, densification statistics, random
states) every ``checkpoint_every`` iterations and at the end; ``resume=True`` continues from it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from huma_rt.config_checks import check_ints, check_numbers
from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import Camera, Gaussians

from .densify import DensifyConfig, densify_and_prune, reset_opacity
from .fit_pose import pose_gaussians, render_view
from .fit_views import StaticFitData, Views, background_plate, split_views
from .gaussian_init import init_gaussians
from .heldout_eval import evaluate
from .losses import photometric_loss
from .pose_refine import (
    PoseRefineConfig,
    RowAdam,
    apply_delta,
    corrected_poses,
    prior_loss,
    refine_poses,
)
from .raster_autograd import DensifyStats

__all__ = ["StaticFitConfig", "StaticFitData", "StaticFitResult", "fit_static", "render_fit", "pose_gaussians"]

log = logging.getLogger(__name__)

CHECKPOINT = "static.ckpt.pt"
STAGE = "static"
@dataclass
class StaticFitConfig:
    """iterations: optimizer steps (one frame each). downscale: integer factor the frames and
    intrinsics are reduced by (area average) for speed. seed: frame order, init, splits.
    holdout_every: every k-th valid frame is held out (0: none). init_count: initial Gaussians.
    sh_degree: final SH degree (0 or 1: degree-1 is turned with the head; higher degrees would
    need SH rotation), raised every ``sh_degree_every`` iterations. lr_*: Adam learning rates
    per parameter group as in 3DGS (means scaled by the scene extent and decayed
    exponentially to ``lr_means_final``; the higher SH bands at lr_sh / 20). ssim_weight: the
    D-SSIM share. matte_weight: L1 on alpha vs matte. densify: DensifyConfig. pose:
    PoseRefineConfig, the per-frame pose corrections (train/pose_refine.py).
    checkpoint_every: iterations between checkpoints (0: only at the end). log_every:
    iterations between progress reports. torch_threads: torch's intra-op threads during the
    fit, restored after (None: leave; 1 by default: per-iteration tensors are small and lose
    more to thread hand-off than they gain, 3x on a loaded 2-core machine; the rasterizer
    kernels keep their own threads)."""

    iterations: int = 3000
    downscale: int = 1
    seed: int = 0
    holdout_every: int = 8
    init_count: int = 4000
    sh_degree: int = 1
    sh_degree_every: int = 1000
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_sh: float = 2.5e-3
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    ssim_weight: float = 0.2
    matte_weight: float = 0.1
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    pose: PoseRefineConfig = field(default_factory=PoseRefineConfig)
    checkpoint_every: int = 500
    log_every: int = 50
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        if isinstance(self.densify, dict):
            self.densify = DensifyConfig(**self.densify)
        if isinstance(self.pose, dict):
            self.pose = PoseRefineConfig(**self.pose)
        owner = "StaticFitConfig"
        check_ints(self, {"iterations": 1, "downscale": 1, "seed": 0, "holdout_every": 0, "init_count": 4,
                          "sh_degree_every": 1, "checkpoint_every": 0, "log_every": 1}, owner=owner)  # fmt: skip
        check_ints(self, {"torch_threads": 1}, owner=owner, optional=True)
        if self.sh_degree not in (0, 1):
            raise InputError(f"sh_degree must be 0 or 1 (degree-1 SH turns with the head); got {self.sh_degree!r}")
        check_numbers(self, dict.fromkeys(("lr_means", "lr_means_final", "lr_sh", "lr_opacity", "lr_scales",
                                           "lr_quats", "ssim_weight", "matte_weight"), 0), owner=owner)  # fmt: skip
        if self.ssim_weight > 1:
            raise InputError(f"ssim_weight must be in [0, 1]; got {self.ssim_weight}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pose"] = self.pose.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StaticFitConfig:
        return cls(**d)

@dataclass
class StaticFitResult:
    """gaussians: canonical Gaussians (runtime layout, exp scales, region 0). background [h,w,3]
    float32: the plate at the fit's size. camera: the fit's camera (identity extrinsics).
    metrics: held-out PSNR/SSIM (whole, face) at the poses handed on and per-frame lists,
    ``tracked_pose``: the same at the tracked poses, ``pose_correction``: the corrections'
    size. history: progress records. head_quat [T,4] / head_trans [T,3] float32: every data
    row's pose after the refinement (training frames: the fit's; held-out frames: refined with
    the avatar frozen when ``pose.holdout_steps`` > 0, else tracked; frames left out: tracked);
    the later stages use these (None: read back from an older result)."""

    gaussians: Gaussians
    background: np.ndarray
    camera: Camera
    metrics: dict
    history: list
    train_frames: np.ndarray
    held_out: np.ndarray
    seconds: float
    head_quat: np.ndarray | None = None
    head_trans: np.ndarray | None = None

def _make_optimizer(params: dict[str, torch.nn.Parameter], cfg: StaticFitConfig, extent: float) -> torch.optim.Adam:
    lrs = {"means": cfg.lr_means * extent, "log_scales": cfg.lr_scales, "quats": cfg.lr_quats,
           "opacity_logits": cfg.lr_opacity, "sh_dc": cfg.lr_sh, "sh_rest": cfg.lr_sh / 20.0}  # fmt: skip
    return torch.optim.Adam([{"params": [p], "lr": lrs[n], "name": n} for n, p in params.items()], eps=1e-15)


def _means_lr(cfg: StaticFitConfig, extent: float, it: int) -> float:
    f = min(it / max(cfg.iterations, 1), 1.0)
    return extent * math.exp((1 - f) * math.log(cfg.lr_means) + f * math.log(max(cfg.lr_means_final, 1e-30)))


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise FormatError(f"{path} is not a readable static-fit checkpoint: {e}") from e


def fit_static(data: StaticFitData, config: StaticFitConfig | None = None, out_dir: str | Path | None = None, *,
               resume: bool = False, progress: Callable[[dict], None] | None = None) -> StaticFitResult:
    """Fit canonical Gaussians to the views (see module). out_dir: where checkpoints go (None:
    none). resume: continue from out_dir's checkpoint when there is one. progress: called with
    {stage, iteration, iterations, loss, count, elapsed_s, eta_s} every ``log_every`` iterations."""
    cfg = config or StaticFitConfig()
    data.validate()
    before = torch.get_num_threads()
    if cfg.torch_threads is not None:
        torch.set_num_threads(cfg.torch_threads)
    try:
        return _fit(data, cfg, out_dir, resume, progress)
    finally:
        torch.set_num_threads(before)


def _fit(data: StaticFitData, cfg: StaticFitConfig, out_dir, resume: bool, progress) -> StaticFitResult:
    views = Views(data, cfg.downscale)
    train, held = split_views(data.valid_mask(), cfg.holdout_every)
    plate = background_plate(views.frames, views.mattes, train)
    ckpt = None if out_dir is None else Path(out_dir) / CHECKPOINT
    if ckpt is not None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = _load(ckpt) if resume and ckpt is not None and ckpt.is_file() else None
    # per-frame pose corrections (pose_refine.py): zero = the tracked pose
    delta, pose_adam, pcfg = torch.zeros(views.quat.shape[0], 6), RowAdam(views.quat.shape[0], 6), cfg.pose
    if state is not None:
        if state["config"] != json.dumps(cfg.to_dict(), sort_keys=True):
            log.warning("%s was written with another config; continuing with the given one", ckpt)
        params = {k: torch.nn.Parameter(v) for k, v in state["params"].items()}
        extent = float(state["extent"])
        opt = _make_optimizer(params, cfg, extent)
        opt.load_state_dict(state["optimizer"])
        stats = DensifyStats(params["means"].shape[0])
        stats.grad_norm_sum, stats.view_count = state["grad_norm_sum"], state["view_count"]
        rng.bit_generator.state = json.loads(state["rng"])
        gen.set_state(state["torch_rng"])
        start, history = int(state["iteration"]), json.loads(state["history"])
        if "pose_delta" in state:  # a checkpoint from before the pose corrections: none yet
            delta = state["pose_delta"].clone()
            pose_adam.load_state_dict(state["pose_adam"])
        log.info("static fit: resumed from %s at iteration %d", ckpt, start)
    else:
        probes = train[np.linspace(0, train.size - 1, min(8, train.size)).round().astype(int)]
        m = views.mattes[probes].numpy() if views.mattes is not None else np.ones((len(probes),) + tuple(views.frames.shape[1:3]), np.float32)
        init, extent = init_gaussians(views.frames[probes].numpy(), m, views.quat[probes].numpy(), views.trans[probes].numpy(),
                                      views.camera.intrinsics.astype(np.float64), cfg.init_count, 4, cfg.seed, data.anchors)  # fmt: skip
        params = {k: torch.nn.Parameter(torch.from_numpy(init[k])) for k in ("means", "log_scales", "quats", "opacity_logits")}
        params["sh_dc"] = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(init["sh"][:, :1])))
        if cfg.sh_degree > 0:
            params["sh_rest"] = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(init["sh"][:, 1:4])))
        opt = _make_optimizer(params, cfg, extent)
        stats = DensifyStats(params["means"].shape[0])
        start, history = 0, []

    def checkpoint(it: int) -> None:
        if ckpt is None:
            return
        _save(ckpt, {"iteration": it, "params": {k: p.detach().clone() for k, p in params.items()},
                     "optimizer": opt.state_dict(), "extent": extent, "grad_norm_sum": stats.grad_norm_sum,
                     "view_count": stats.view_count, "rng": json.dumps(rng.bit_generator.state),
                     "torch_rng": gen.get_state(), "history": json.dumps(history),
                     "config": json.dumps(cfg.to_dict(), sort_keys=True), "pose_delta": delta.clone(),
                     "pose_adam": pose_adam.state_dict()})  # fmt: skip

    lr_pose = torch.tensor([pcfg.lr_rot] * 3 + [pcfg.lr_trans * extent] * 3)
    sweeps = {max(1, round(f * cfg.iterations)) for f in pcfg.sweeps} if pcfg.sweep_steps else set()

    def frame_loss(degree: int) -> Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]:
        frozen = {k: p.detach() for k, p in params.items()}
        return lambda i, q, t: photometric_loss(render_view(frozen, views.camera, q, t, plate, degree).image,
                                                views.target(i), cfg.ssim_weight)  # fmt: skip

    t0, loss_sum, loss_n = time.perf_counter(), 0.0, 0
    for it in range(start + 1, cfg.iterations + 1):
        for g in opt.param_groups:
            if g["name"] == "means":
                g["lr"] = _means_lr(cfg, extent, it)
        i = int(train[rng.integers(train.size)])
        degree = min(cfg.sh_degree, (it - 1) // cfg.sh_degree_every)
        if it in sweeps:
            log.info("static fit: iteration %d, refining the %d training frames' poses", it, train.size)
            delta = refine_poses(frame_loss(degree), views.quat, views.trans, delta, train, pcfg.sweep_steps,
                                 lr_pose, extent, pcfg.prior)  # fmt: skip
        pose_on = pcfg.joint and it > pcfg.start
        d = delta[i].clone().requires_grad_(pose_on)
        q, t = apply_delta(views.quat[i], views.trans[i], d)
        out = render_view(params, views.camera, q, t, plate, degree)
        loss = photometric_loss(out.image, views.target(i), cfg.ssim_weight)
        if pose_on:
            loss = loss + prior_loss(d, extent, pcfg.prior)
        m = views.matte(i)
        if m is not None and cfg.matte_weight > 0:
            loss = loss + cfg.matte_weight * (out.alpha - m).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        stats.add(out)
        opt.step()
        if pose_on:
            pose_adam.step(delta, i, d.grad, lr_pose)
        loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
        if cfg.densify.due(it):
            # DensifyStats counts pixels; 3DGS's threshold is in NDC units (resolution-free)
            ndc = stats.mean() * 0.5 * max(views.camera.width, views.camera.height)
            counts = densify_and_prune(params, opt, ndc, extent, cfg.densify, gen)
            stats = DensifyStats(params["means"].shape[0])
            log.info("static fit: iteration %d densify %s", it, counts)
        if cfg.densify.reset_due(it) and it < cfg.iterations:
            # a reset on the last iteration would hand back Gaussians at 1 % opacity (the
            # default 3000 iterations with resets every 3000 did: a see-through head)
            reset_opacity(params, opt)
        if it % cfg.log_every == 0 or it == cfg.iterations:
            elapsed = time.perf_counter() - t0
            rec = {"stage": STAGE, "iteration": it, "iterations": cfg.iterations, "loss": loss_sum / loss_n,
                   "count": int(params["means"].shape[0]), "elapsed_s": elapsed,
                   "eta_s": elapsed / (it - start) * (cfg.iterations - it)}  # fmt: skip
            history.append(rec)
            loss_sum, loss_n = 0.0, 0
            log.info("static fit: %d/%d loss %.4f, %d Gaussians, ETA %.0f s", it, cfg.iterations, rec["loss"],
                     rec["count"], rec["eta_s"])  # fmt: skip
            if progress is not None:
                progress(rec)
        if cfg.checkpoint_every and it % cfg.checkpoint_every == 0 and it != cfg.iterations:
            checkpoint(it)
    checkpoint(cfg.iterations)
    seconds = time.perf_counter() - t0
    metrics = _held_out(params, views, held, plate, cfg, delta, lr_pose, extent, data.anchors) if held.size else {}
    if held.size:
        delta = metrics.pop("delta")
    metrics["pose_correction"] = _correction_size(delta, train, held, extent)
    log.info("static fit: held-out PSNR %s dB (face %s); at the tracked poses %s (face %s); corrections %s",
             metrics.get("psnr"), metrics.get("psnr_face"), metrics.get("tracked_pose", {}).get("psnr"),
             metrics.get("tracked_pose", {}).get("psnr_face"), metrics["pose_correction"])  # fmt: skip
    rows = np.concatenate([train, held])
    head_quat = np.array(data.head_quat, np.float32, copy=True)
    head_trans = np.array(data.head_trans, np.float32, copy=True)
    head_quat[rows], head_trans[rows] = corrected_poses(views.quat[rows].numpy(), views.trans[rows].numpy(),
                                                        delta[rows].numpy())  # fmt: skip
    return StaticFitResult(_to_gaussians(params, cfg.sh_degree), plate.numpy(), views.camera, metrics, history,
                           train, held, seconds, head_quat, head_trans)  # fmt: skip


def _held_out(params: dict[str, torch.Tensor], views: Views, held: np.ndarray, plate: torch.Tensor,
              cfg: StaticFitConfig, delta: torch.Tensor, lr_pose: torch.Tensor, extent: float,
              anchors: np.ndarray | None) -> dict:
    """Held-out metrics (heldout_eval.py's regions) at the refined poses and, under
    ``tracked_pose``, at the tracked ones; "delta": the corrections [T,6] with the held-out rows
    refined (pose.holdout_steps > 0)."""
    frozen = {k: p.detach() for k, p in params.items()}
    pcfg = cfg.pose
    at_tracked = evaluate(lambda i: frozen, cfg.sh_degree, views, held, plate, anchors=anchors)
    if not pcfg.holdout_steps:
        return {**at_tracked, "tracked_pose": _means(at_tracked), "held_out_pose": "tracked", "delta": delta}
    # the refinement's renders leave out the nearly transparent Gaussians (a quarter of them on
    # franck; no score moved by 0.02 dB), its scores do not
    keep = torch.sigmoid(frozen["opacity_logits"]).reshape(-1) >= pcfg.holdout_min_opacity
    seen = frozen if bool(keep.all()) else {k: v[keep] for k, v in frozen.items()}

    def loss_of(i: int, q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        img = render_view(seen, views.camera, q, t, plate, cfg.sh_degree).image
        return photometric_loss(img, views.target(i), cfg.ssim_weight)

    # a photometric tracker on frames the Gaussians never saw (pose only, avatar frozen)
    refined = refine_poses(loss_of, views.quat, views.trans, delta, held, pcfg.holdout_steps, lr_pose, extent,
                           pcfg.prior)  # fmt: skip
    metrics = evaluate(lambda i: frozen, cfg.sh_degree, views, held, plate, anchors=anchors,
                       pose_of=lambda i: apply_delta(views.quat[i], views.trans[i], refined[i]))  # fmt: skip
    return {**metrics, "tracked_pose": _means(at_tracked), "held_out_pose": "refined", "delta": refined}


def _means(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "frames"}


def _correction_size(delta: torch.Tensor, train: np.ndarray, held: np.ndarray, extent: float) -> dict:
    """Median / 90th percentile of the corrections' angle (degrees) and shift (head units)."""
    out = {"extent": float(extent)}
    for name, rows in (("train", train), ("held_out", held)):
        if rows.size:
            d = delta[rows].numpy().astype(np.float64)
            a, s = np.degrees(np.linalg.norm(d[:, :3], axis=1)), np.linalg.norm(d[:, 3:], axis=1)
            out[name] = {"deg_p50": float(np.median(a)), "deg_p90": float(np.percentile(a, 90)),
                         "shift_p50": float(np.median(s)), "shift_p90": float(np.percentile(s, 90))}  # fmt: skip
    return out


def _to_gaussians(params: dict[str, torch.Tensor], sh_degree: int) -> Gaussians:
    sh = params["sh_dc"].detach()
    if sh_degree > 0:
        sh = torch.cat([sh, params["sh_rest"].detach()], 1)
    f = {k: np.ascontiguousarray(params[k].detach().numpy(), np.float32) for k in ("means", "log_scales", "opacity_logits")}
    q = params["quats"].detach()
    return Gaussians(means=f["means"], log_scales=f["log_scales"],
                     quats=np.ascontiguousarray((q / q.norm(dim=1, keepdim=True)).numpy(), np.float32),
                     opacity_logits=f["opacity_logits"], sh=np.ascontiguousarray(sh.numpy(), np.float32),
                     scale_activation="exp")  # fmt: skip


def render_fit(result: StaticFitResult, head_quat: np.ndarray, head_trans: np.ndarray) -> np.ndarray:
    """The fitted avatar at a head pose (quat [4] wxyz, trans [3]; model-to-camera) over the
    plate, at the fit's size -> rgb [h,w,3] float32 in [0,1] (held-out views, contact sheets)."""
    g = result.gaussians
    params = {"means": torch.from_numpy(g.means), "quats": torch.from_numpy(g.quats),
              "log_scales": torch.from_numpy(g.log_scales), "opacity_logits": torch.from_numpy(g.opacity_logits),
              "sh_dc": torch.from_numpy(g.sh[:, :1]), "sh_rest": torch.from_numpy(g.sh[:, 1:])}  # fmt: skip
    q = torch.tensor(np.asarray(head_quat, np.float64), dtype=torch.float32)
    t = torch.tensor(np.asarray(head_trans, np.float64), dtype=torch.float32)
    if q.shape != (4,) or t.shape != (3,):
        raise InputError(f"head pose must be quat [4] and trans [3]; got {tuple(q.shape)}, {tuple(t.shape)}")
    with torch.no_grad():
        out = render_view(params, result.camera, q, t, torch.from_numpy(result.background), g.sh_degree)
    return out.image.clamp(0, 1).numpy()
