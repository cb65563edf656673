"""The audio path of a person's avatar: the shipped demo AudioEncoder, adapted on the video's speech.

Audio -> articulation is person-independent: the demo encoder (trained on espeak-ng speech with
exact phoneme timing, export/demo/train.py) maps any speech to codes ``E @ (jaw, round, spread,
closure, 0)``. A silent video keeps it as it is. When the video has a speech track,
:func:`adapt_encoder` fine-tunes it on that speech against the person's own articulation
(tracked, calibrated to the demo scale: articulation_codes.py, resampled to the 25 fps code
timeline: :func:`resample_params`), so the codes follow how this person moves for these sounds.

Only weights change: the module, its config (valid convolutions, past context, lookahead) and
so the streaming contract and the exported graphs' shapes are the demo's.

The data are split by time into blocks; every ``holdout_every``-th block is held out, and the
held-out blocks alternate between a validation set and a test set. Training stops early when
the validation score (mean Pearson r of the speech parameters that vary) stops improving; the
best copy then replaces the original only if it beats it on the test set, which no choice
has seen, by at least ``min_improvement`` and with the 5th percentile of a bootstrap of the
gain (resampling ``chunk_s`` chunks of the test frames) above zero: a score picked as the best
of several looks on one set, or a gain within the noise of a few hundred frames, would accept
an encoder fitted to noise (measured: articulation unrelated to the sound was "adapted" in 3
of 6 seeds with a plain held-out threshold of 0.005).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from huma_rt.config_checks import check_ints, check_numbers
from huma_rt.errors import InputError

log = logging.getLogger(__name__)

SPEECH = ("jaw", "round", "spread", "closure")  # the parameters speech drives (blink is not)


@dataclass
class AudioAdaptConfig:
    """Options of the adaptation.

    steps: most optimiser steps. batch, window: crops per step and code frames per crop.
    lr: Adam learning rate (small: the demo weights are a good start). weight_decay: Adam's.
    eval_every: steps between validation evaluations; patience: evaluations without a better
    validation score before stopping. block_s, holdout_every: the time split (blocks of block_s
    seconds; every holdout_every-th one, starting with the second, is held out; held-out blocks
    alternate validation, test). min_improvement: the test score gain the adapted encoder needs
    to replace the original; chunk_s, bootstrap: the gain's bootstrap (chunks of chunk_s
    seconds, that many resamples; its 5th percentile must be > 0).
    min_frames: fewest known code frames (training + held out) worth adapting on.
    seed: crop sampling and torch. threads: torch intra-op threads during adaptation (restored).
    """

    steps: int = 600
    batch: int = 8
    window: int = 40
    lr: float = 2e-4
    weight_decay: float = 1e-5
    eval_every: int = 25
    patience: int = 4
    block_s: float = 1.0
    holdout_every: int = 5
    min_improvement: float = 0.01
    chunk_s: float = 0.4
    bootstrap: int = 500
    min_frames: int = 100
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        owner = "AudioAdaptConfig"
        check_ints(self, {name: 1 for name in ("steps", "batch", "window", "eval_every", "patience", "min_frames",
                                               "bootstrap")} | {"holdout_every": 2}, owner=owner)  # fmt: skip
        check_numbers(self, {"lr": 0, "block_s": 0, "chunk_s": 0}, owner=owner, positive=True)
        check_numbers(self, {"weight_decay": 0, "min_improvement": 0}, owner=owner)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AudioAdaptConfig:
        return cls(**d)


@dataclass
class AudioAdaptResult:
    """encoder: the adapted AudioEncoder, or the original one (same object) when adaptation did
    not help; adapted: which. metrics: r_before / r_after {param: Pearson r on the test blocks},
    score_before / score_after (their mean over parameters that vary), gain_p05 (the bootstrap's
    5th percentile of score_after - score_before), mse_before / mse_after (test code error),
    val_score_before / val_score_best, steps, best_step, history [(step, train loss, val score)],
    train_frames, val_frames, test_frames, held_out_frames, seconds, reason."""

    encoder: object
    adapted: bool
    metrics: dict = field(default_factory=dict)


def load_demo_encoder():
    """The shipped demo AudioEncoder (huma_rt/data/demo weights), eval mode, on the CPU."""
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint

    return load_checkpoint(DEMO_CHECKPOINT_DIR)[0]


def resample_params(params: np.ndarray, times: np.ndarray, frames: int, fps: float = 25.0) -> np.ndarray:
    """Video-frame params float [T, P] shown at ``times`` [T] s (NaN rows = unknown) -> float32
    [frames, P] at code times t / fps (code t covers the audio [t / fps, (t + 1) / fps), as a
    video frame at pts t / fps does). Linear between the two video frames around each code time
    when both are known and at most 1.5 median frame intervals apart; NaN otherwise."""
    p = np.asarray(params, np.float64)
    ts = np.asarray(times, np.float64)
    if p.ndim != 2 or ts.shape != (p.shape[0],) or frames < 0 or not fps > 0:
        raise InputError(f"params must be [T, P] with times [T], frames >= 0, fps > 0; got {p.shape}, "
                         f"{ts.shape}, {frames}, {fps}")  # fmt: skip
    out = np.full((frames, p.shape[1]), np.nan)
    if p.shape[0] == 0 or frames == 0:
        return out.astype(np.float32)
    step = float(np.median(np.diff(ts))) if ts.size > 1 else 1.0 / fps
    tc = np.arange(frames) / fps
    hi = np.clip(np.searchsorted(ts, tc, side="left"), 0, ts.size - 1)
    lo = np.clip(hi - 1, 0, ts.size - 1)
    exact = np.abs(ts[hi] - tc) < 1e-6 * step
    lo[exact] = hi[exact]
    span = ts[hi] - ts[lo]
    w = np.where(span > 0, (tc - ts[lo]) / np.where(span > 0, span, 1.0), 0.0)
    inside = (tc >= ts[lo] - 1e-6 * step) & (tc <= ts[hi] + 1e-6 * step) & (span <= 1.5 * step)
    out[inside] = (p[lo] * (1 - w[:, None]) + p[hi] * w[:, None])[inside]  # NaN neighbours stay NaN
    return out.astype(np.float32)


def encoder_params(encoder, pcm: np.ndarray) -> np.ndarray:
    """audio float32 [S] 16 kHz -> the encoder's params float32 [ceil(S / 640), 5] (its codes
    projected on the demo embedding, export/demo/codes.py)."""
    import torch
    from huma_rt.export.demo.codes import codes_to_params

    from .synthetic import demo_embedding

    with torch.no_grad():
        codes = encoder.encode_audio(torch.from_numpy(np.ascontiguousarray(pcm, np.float32))[None])[0].numpy()
    return codes_to_params(codes, demo_embedding())


def holdout_mask(frames: int, fps: float, block_s: float, every: int) -> np.ndarray:
    """bool [frames]: True on the held-out blocks (block k with k % every == 1)."""
    block = max(1, int(round(block_s * fps)))
    return (np.arange(frames) // block) % every == 1


def split_frames(frames: int, fps: float, block_s: float, every: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) bool [frames]: held-out blocks alternate validation / test."""
    block = max(1, int(round(block_s * fps)))
    held = holdout_mask(frames, fps, block_s, every)
    test = held & ((np.arange(frames) // block // every) % 2 == 1)
    return ~held, held & ~test, test


VARIES = 0.02  # a held-out target steadier than this (demo scale) has no timeline to score


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() < 1e-6 or b.std() < VARIES:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _gain_p05(before: np.ndarray, after: np.ndarray, target: np.ndarray, mask: np.ndarray, chunk: int,
              draws: int, seed: int) -> float:  # fmt: skip
    """5th percentile of score(after) - score(before) over a bootstrap of ``chunk``-frame chunks
    of the rows ``mask`` selects (the parameters scored are those that vary on all of them)."""
    rows = np.flatnonzero(mask)
    names = [i for i in range(len(SPEECH)) if target[rows, i].std() >= VARIES]
    if not names or rows.size < 2 * chunk:
        return float("nan")
    groups = [rows[i : i + chunk] for i in range(0, rows.size, chunk)]
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(draws):
        pick = np.concatenate([groups[j] for j in rng.integers(len(groups), size=len(groups))])
        t = target[pick][:, names]
        g = [np.mean([_pearson(x[pick, i], t[:, k]) for k, i in enumerate(names)]) for x in (before, after)]
        if np.isfinite(g).all():
            gains.append(g[1] - g[0])
    return float(np.percentile(gains, 5)) if gains else float("nan")


def _scores(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, emb: np.ndarray) -> tuple[dict, float, float]:
    """({param: r}, mean r over parameters that vary, code MSE) on the rows ``mask`` selects."""
    r = {name: _pearson(pred[mask, i], target[mask, i]) for i, name in enumerate(SPEECH)}
    finite = [v for v in r.values() if np.isfinite(v)]
    code_err = (pred[mask, :4] - target[mask, :4]) @ emb[:, :4].T
    mse = float(np.mean(code_err**2)) if code_err.size else float("nan")
    return r, float(np.mean(finite)) if finite else float("nan"), mse


def _check(pcm: np.ndarray, params: np.ndarray, spf: int) -> tuple[np.ndarray, np.ndarray]:
    pcm = np.asarray(pcm)
    p = np.asarray(params, np.float32)
    if pcm.ndim != 1 or pcm.dtype != np.float32 or pcm.size == 0:
        raise InputError(f"pcm must be non-empty float32 [S] at 16 kHz; got {pcm.dtype} {pcm.shape}")
    frames = -(-pcm.size // spf)
    if p.ndim != 2 or p.shape[1] != 5 or p.shape[0] != frames:
        raise InputError(f"params must be [F, 5] at 25 fps with F = ceil(S / {spf}) = {frames} for {pcm.size} "
                         f"samples; got {p.shape}")  # fmt: skip
    return pcm, p


def adapt_encoder(encoder, pcm: np.ndarray, params: np.ndarray, config: AudioAdaptConfig | None = None) -> AudioAdaptResult:
    """Fine-tune ``encoder`` (an export.models.AudioEncoder, left untouched) on speech ``pcm``
    float32 [S] at 16 kHz against ``params`` float32 [ceil(S / 640), 5] on the demo scale at 25
    fps (NaN rows: unknown, e.g. frames where tracking failed; column 4, blink, is ignored).

    Returns the adapted copy, or the original encoder when there are too few known frames or
    the adapted one does not beat it on the held-out blocks (module docstring)."""
    import torch

    from .synthetic import demo_embedding

    cfg = config or AudioAdaptConfig()
    enc_cfg = encoder.cfg
    pcm, p = _check(pcm, params, enc_cfg.samples_per_frame)
    t0 = time.perf_counter()
    emb = demo_embedding()
    if emb.shape[0] != enc_cfg.code_dim:
        raise InputError(f"the encoder's code_dim is {enc_cfg.code_dim}; the demo embedding needs {emb.shape[0]}")
    frames = p.shape[0]
    known = np.isfinite(p[:, :4]).all(1)
    train, val, test = (known & m for m in split_frames(frames, enc_cfg.fps, cfg.block_s, cfg.holdout_every))
    metrics: dict = {"train_frames": int(train.sum()), "val_frames": int(val.sum()), "test_frames": int(test.sum()),
                     "held_out_frames": int((val | test).sum()), "config": cfg.to_dict()}  # fmt: skip
    before = encoder_params(encoder, pcm)
    metrics["r_before"], metrics["score_before"], metrics["mse_before"] = _scores(before, p, test, emb)
    chunk = max(1, int(round(cfg.chunk_s * enc_cfg.fps)))
    if known.sum() < cfg.min_frames or min(val.sum(), test.sum()) < 2 * chunk or train.sum() < cfg.window:
        metrics.update(reason=f"too few known frames ({int(known.sum())} known: {metrics['train_frames']} "
                              f"training, {metrics['val_frames']} validation, {metrics['test_frames']} test; at "
                              f"least {cfg.min_frames}, and {2 * chunk} in each held-out set)",
                       seconds=time.perf_counter() - t0)  # fmt: skip
        log.info("audio adaptation skipped: %s", metrics["reason"])
        return AudioAdaptResult(encoder, False, metrics)

    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        _, val_before, _ = _scores(before, p, val, emb)
        best, history = _fit(encoder, pcm, p, train, val, emb, cfg, val_before)
    finally:
        torch.set_num_threads(threads)
    model, best_step, best_score = best
    after = encoder_params(model, pcm)
    metrics["r_after"], metrics["score_after"], metrics["mse_after"] = _scores(after, p, test, emb)
    metrics.update(val_score_before=val_before, val_score_best=best_score, steps=history[-1][0] if history else 0,
                   best_step=best_step, history=history)  # fmt: skip
    gain = metrics["score_after"] - metrics["score_before"]
    metrics["gain_p05"] = _gain_p05(before, after, p, test, chunk, cfg.bootstrap, cfg.seed) if best_step else 0.0
    adapted = bool(best_step > 0 and gain >= cfg.min_improvement and metrics["gain_p05"] > 0)
    metrics["reason"] = ("adapted" if adapted else
                         f"kept the demo encoder: test score {metrics['score_before']:.3f} -> {metrics['score_after']:.3f} "
                         f"(bootstrap 5th percentile of the gain {metrics['gain_p05']:.3f}; needs a gain >= "
                         f"{cfg.min_improvement} with that percentile > 0)")  # fmt: skip
    metrics["seconds"] = time.perf_counter() - t0
    log.info("audio adaptation: test r %s -> %s (%s) in %.1f s", _fmt(metrics["r_before"]),
             _fmt(metrics["r_after"]), metrics["reason"], metrics["seconds"])  # fmt: skip
    return AudioAdaptResult(model if adapted else encoder, adapted, metrics)


def _fmt(r: dict) -> str:
    return "{" + ", ".join(f"{k}: {v:.3f}" for k, v in r.items()) + "}"


def _fit(encoder, pcm, p, train_rows, val_rows, emb, cfg: AudioAdaptConfig, score0: float):
    """Adam on random crops with the loss on known training frames only; the best copy by the
    validation score -> ((model, step, score), history [(step, loss, score)])."""
    import torch
    from huma_rt.export.demo.codes import codes_to_params

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = copy.deepcopy(encoder)
    ecfg = model.cfg
    with torch.no_grad():
        mel = model.logmel(model.pad_audio(torch.from_numpy(pcm)[None]))[0]  # [4F + R - 4, n_mels]
    k, r = ecfg.mels_per_frame, ecfg.receptive_mels
    frames = p.shape[0]
    target = torch.from_numpy(np.nan_to_num(p[:, :4]) @ emb[:, :4].T)  # [F, D]
    weight = torch.from_numpy(train_rows.astype(np.float32))
    starts = np.flatnonzero(np.convolve(train_rows, np.ones(cfg.window), "valid") > 0)  # crops with a train frame
    w = min(cfg.window, frames)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best = (encoder, 0, score0)
    history, stale, losses = [], 0, []
    for step in range(1, cfg.steps + 1):
        model.train()
        f0s = rng.choice(starts, size=cfg.batch) if starts.size else np.zeros(cfg.batch, int)
        x = torch.stack([mel[k * f0 : k * (f0 + w) + r - k] for f0 in f0s])
        idx = torch.from_numpy(np.stack([np.arange(f0, f0 + w) for f0 in f0s]))
        code = model(x)  # [B, w, D]
        err = ((code - target[idx]) ** 2).mean(-1) * weight[idx]
        loss = err.sum() / weight[idx].sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % cfg.eval_every and step != cfg.steps:
            continue
        model.eval()
        with torch.no_grad():
            pred = codes_to_params(model(mel[None])[0].numpy(), emb)
        _, score, _ = _scores(pred, p, val_rows, emb)
        history.append((step, float(np.mean(losses[-cfg.eval_every:])), score))
        if np.isfinite(score) and score > best[2]:
            best, stale = (copy.deepcopy(model).eval(), step, score), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    return best, history
