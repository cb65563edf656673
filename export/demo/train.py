"""Train the demo avatar's networks on the CPU in minutes and write the shipped checkpoint.

  python -m huma_rt.export.demo.train            # -> huma_rt/data/demo/ (the committed weights)
  python -m huma_rt.export.demo.train --quick    # a smoke run (seconds), for tests

1. Deformer + SpatialEncoder learn the head's articulation (articulation.py) from motion codes
   code = E @ params (codes.py), over random parameter mixes.
2. AudioEncoder learns code = E @ (jaw, round, spread, closure, 0) from espeak-ng speech with
   exact phoneme timing, augmented for recording conditions (data.py), through its bounded
   lookahead. Seeded; torch uses ``--threads`` threads (2: the CI machines' cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from huma_rt.model_config import DeformerConfig, EncoderConfig

from ..checkpoint import DEMO_CHECKPOINT_DIR, save_checkpoint
from ..models import AudioEncoder, Deformer, SpatialEncoder, build_models
from .articulation import PARAMS, Articulation
from .codes import embedding
from .data import Utterance, augmented, random_utterance
from .head import HeadSpec, build_head

log = logging.getLogger(__name__)

DEMO_JSON = "demo.json"


@dataclass
class TrainConfig:
    """Everything that decides the shipped weights (recorded in demo.json)."""

    seed: int = 0
    utterances: int = 320
    augmented_copies: int = 2
    deformer_steps: int = 2400
    deformer_batch: int = 8
    deformer_points: int = 3072
    encoder_steps: int = 1400
    encoder_batch: int = 16
    encoder_window: int = 40  # video frames of codes per training crop
    lr: float = 2e-3
    threads: int = 2
    plane_resolution: int = 64
    hidden: int = 64


def demo_deformer_config(head_means: np.ndarray, dynamic: np.ndarray, cfg: TrainConfig) -> DeformerConfig:
    """Tri-plane bounds hugging the dynamic Gaussians (margin for their motion)."""
    pts = head_means[dynamic]
    lo = (pts.min(0) - 0.06).round(3).tolist()
    hi = (pts.max(0) + 0.06).round(3).tolist()
    return DeformerConfig(code_dim=32, plane_resolution=cfg.plane_resolution, hidden=cfg.hidden,
                          layers=2, bbox_min=lo, bbox_max=hi)


def sample_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n,5] articulation mixes: jaw uniform, sparse round/spread/closure, occasional blink."""
    p = np.zeros((n, 5))
    p[:, 0] = rng.uniform(0, 1, n)
    for j, prob in ((1, 0.5), (2, 0.5), (3, 0.4), (4, 0.35)):
        on = rng.random(n) < prob
        p[on, j] = rng.uniform(0, 1, on.sum())
    return p


def _delta_loss(pred, target) -> torch.Tensor:
    # deltas in world units / quaternion units; scaled so ~1 px (0.003 units) errors count
    scales = (0.01, 0.03, 0.05)
    return sum(torch.mean(((p - t) / s) ** 2) for p, t, s in zip(pred, target, scales, strict=True))


def train_deformer(spatial: SpatialEncoder, deformer: Deformer, art: Articulation, means: np.ndarray,
                   emb: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> dict:
    """Fit spatial + deformer to the articulation; returns final losses."""
    pts = torch.from_numpy(means.astype(np.float32))
    emb_t = torch.from_numpy(emb)
    params = list(spatial.parameters()) + list(deformer.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.deformer_steps, pct_start=0.1)
    spatial.train()
    deformer.train()
    n = pts.shape[0]
    losses = []
    for step in range(cfg.deformer_steps):
        idx = rng.choice(n, size=min(cfg.deformer_points, n), replace=False)
        p = sample_params(rng, cfg.deformer_batch)
        if step % 4 == 0:
            p[0] = 0.0  # the rest pose must be exact
        target = [torch.from_numpy(a) for a in art.deform(p, rows=idx)]
        code = torch.from_numpy(p.astype(np.float32)) @ emb_t.T
        code = code + 0.05 * torch.randn_like(code)  # tolerate encoder error off the span
        feat = spatial(pts[idx])
        loss = _delta_loss(deformer(feat, code), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 250 == 0:
            log.info("deformer step %d loss %.4f", step, np.mean(losses[-50:]))
    spatial.eval()
    deformer.eval()
    # full evaluation on fresh mixes, all Gaussians
    with torch.no_grad():
        p = sample_params(rng, 8)
        target = art.deform(p)
        pred = deformer(spatial(pts), torch.from_numpy(p.astype(np.float32)) @ emb_t.T)
        err = np.abs(pred[0].numpy() - target[0])
    return {"deformer_loss": float(np.mean(losses[-100:])),
            "dmu_mean_abs_error": float(err.mean()), "dmu_p99_abs_error": float(np.percentile(err, 99)),
            "dmu_mean_abs": float(np.abs(target[0]).mean())}


def _mel_of(encoder: AudioEncoder, audio: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        a = torch.from_numpy(audio)[None]
        return encoder.logmel(encoder.pad_audio(a))[0]  # [T_mel, n_mels]


def build_encoder_data(encoder: AudioEncoder, cfg: TrainConfig, rng: np.random.Generator
                       ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(mels, targets): padded log-mel [4F + R - 4, 80] per clip and its targets [F, 4]."""
    mels, targets = [], []
    t0 = time.perf_counter()
    for i in range(cfg.utterances):
        u = random_utterance(rng)
        copies: list[Utterance] = [u] + [augmented(u, rng) for _ in range(cfg.augmented_copies)]
        for c in copies:
            mels.append(_mel_of(encoder, c.audio))
            targets.append(torch.from_numpy(c.targets))
        if i % 80 == 0:
            log.info("data: %d/%d utterances (%.1f s)", i, cfg.utterances, time.perf_counter() - t0)
    return mels, targets


def train_encoder(encoder: AudioEncoder, mels: list[torch.Tensor], targets: list[torch.Tensor],
                  emb: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> dict:
    """Fit the encoder to E @ targets on random crops; returns final losses."""
    allmel = torch.cat(mels)
    encoder.set_normalisation(allmel.mean(0), allmel.std(0).clamp_min(1e-3))
    emb4 = torch.from_numpy(emb[:, :4])  # blink is never driven by speech
    r = encoder.cfg.receptive_mels
    k = encoder.cfg.mels_per_frame
    w = cfg.encoder_window
    opt = torch.optim.Adam(encoder.parameters(), lr=cfg.lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.encoder_steps, pct_start=0.1)
    encoder.train()
    losses = []
    for step in range(cfg.encoder_steps):
        xb, yb = [], []
        for _ in range(cfg.encoder_batch):
            i = int(rng.integers(len(mels)))
            frames = targets[i].shape[0]
            f0 = int(rng.integers(0, max(frames - w, 0) + 1))
            n = min(w, frames)
            x = mels[i][k * f0: k * (f0 + n) + r - k]
            y = targets[i][f0:f0 + n]
            if n < w:  # short clip: pad with its own silence floor and rest targets
                x = torch.cat([x, x[-1:].expand(k * (w - n), -1)])
                y = torch.cat([y, y.new_zeros(w - n, 4)])
            xb.append(x)
            yb.append(y)
        x = torch.stack(xb)
        y = torch.stack(yb)
        code = encoder(x)  # [B, w, D]
        loss = torch.mean((code - y @ emb4.T) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 300 == 0:
            log.info("encoder step %d loss %.4f", step, np.mean(losses[-50:]))
    encoder.eval()
    return {"encoder_loss": float(np.mean(losses[-100:]))}


def train(out: Path, cfg: TrainConfig) -> dict:
    """Train everything and write the checkpoint + demo.json to ``out``; returns the summary."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    head_spec = HeadSpec(seed=cfg.seed)
    head = build_head(head_spec)
    art = Articulation.for_head(head)
    dynamic = head.region != 0
    def_cfg = demo_deformer_config(head.means, dynamic, cfg)
    encoder, spatial, deformer = build_models(EncoderConfig(), def_cfg, seed=cfg.seed)
    emb = embedding(def_cfg.code_dim, cfg.seed)
    summary: dict = {"train_config": asdict(cfg), "dynamic_gaussians": art.count}
    summary.update(train_deformer(spatial, deformer, art, head.means[dynamic], emb, cfg, rng))
    t1 = time.perf_counter()
    mels, targets = build_encoder_data(encoder, cfg, rng)
    t2 = time.perf_counter()
    summary.update(train_encoder(encoder, mels, targets, emb, cfg, rng))
    t3 = time.perf_counter()
    summary["seconds"] = {"deformer": round(t1 - t0, 1), "data": round(t2 - t1, 1),
                          "encoder": round(t3 - t2, 1), "total": round(t3 - t0, 1)}
    save_checkpoint(out, encoder, spatial, deformer)
    meta = {
        "format": "huma-rt-demo", "version": 1,
        "head": asdict(head_spec), "params": list(PARAMS),
        "code_embedding": emb.tolist(), "summary": summary,
    }
    (out / DEMO_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    log.info("wrote %s in %.0f s", out, t3 - t0)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", type=Path, default=DEMO_CHECKPOINT_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds) for smoke tests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig(seed=args.seed, threads=args.threads)
    if args.quick:
        cfg.utterances, cfg.deformer_steps, cfg.encoder_steps = 8, 20, 20
    summary = train(args.out, cfg)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
