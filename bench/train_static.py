"""Static-fit benchmark (train/fit_static.py): seconds per iteration by image size, and a whole
fit of a synthetic clip of the demo avatar with its held-out quality.

1. speed: ``--speed-iters`` iterations (after ``--warmup``) at each of ``--sizes`` (the clip's
   512 px frames area-downscaled), a fixed ``--speed-count`` Gaussians (no density control),
   wall and CPU (process) seconds per iteration: render + loss + backward + Adam step.
2. fit: the whole clip (``--duration`` s made by train/synthetic with ``--seed``, reused from
   ``--clip`` when there) at ``--fit-size`` px for ``--fit-iters`` iterations with the default
   StaticFitConfig otherwise; held-out PSNR/SSIM against the MP4 frames and against the truth
   re-rendered without compression (ClipTruth), whole frame and face (matte); a contact sheet
   of held-out frames (top: truth, bottom: fit).

The clip speaks (the mouth moves): a static fit can only blur the mouth, which the articulated
stage adds; the face numbers say how much that costs. Wall and CPU time are both recorded: the
machines are shared, and CPU time is what an iteration costs.

    python -m huma_rt.bench.train_static [--clip DIR] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from huma_rt.bench.common import stats_ms, write_result
from huma_rt.train.densify import DensifyConfig
from huma_rt.train.fit_static import StaticFitConfig, StaticFitData, fit_static, render_fit
from huma_rt.train.losses import psnr, ssim

from huma_rt.media.png import write_png

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train-static-2026-12-06"
SHEET_FRAMES = 6


def load_clip(folder: Path, duration: float, seed: int) -> tuple[StaticFitData, dict]:
    """The synthetic clip (made when ``folder`` lacks it) as StaticFitData, and its truth.npz."""
    from huma_rt.train.synthetic import SyntheticConfig, make_synthetic
    from huma_rt.train.video import VideoConfig, VideoReader

    if not (folder / "truth.npz").is_file():
        t0 = time.perf_counter()
        make_synthetic(SyntheticConfig(duration_s=duration, seed=seed), folder)
        log.info("made %s in %.0f s", folder, time.perf_counter() - t0)
    frames = np.stack([f for _, _, f in VideoReader(folder / "video.mp4", VideoConfig(min_seconds=0.04)).frames()])
    with np.load(folder / "truth.npz") as z:
        truth = {k: z[k] for k in ("head_quat", "head_trans", "camera_K", "alpha", "speaking")}
    data = StaticFitData(frames, truth["head_quat"], truth["head_trans"], truth["camera_K"].astype(np.float64),
                         mattes=truth["alpha"])  # fmt: skip
    return data, truth


def speed(data: StaticFitData, size: int, count: int, iters: int, warmup: int) -> dict:
    """Per-iteration wall and CPU time at ``size`` px with ``count`` Gaussians."""
    d = data.frames.shape[1] // size
    sub = StaticFitData(data.frames[:16], data.head_quat[:16], data.head_trans[:16], data.intrinsics,
                        mattes=data.mattes[:16])  # fmt: skip
    stamps: list[tuple[float, float]] = []
    cfg = StaticFitConfig(iterations=warmup + iters, downscale=d, init_count=count, holdout_every=0, log_every=1,
                          checkpoint_every=0, densify=DensifyConfig(start=10**9, stop=10**9, opacity_reset_every=0))  # fmt: skip
    result = fit_static(sub, cfg, progress=lambda rec: stamps.append((time.perf_counter(), time.process_time())))
    w = np.diff([s[0] for s in stamps])[warmup - 1:]
    c = np.diff([s[1] for s in stamps])[warmup - 1:]
    row = {"size": size, "gaussians": result.gaussians.count, **{f"wall_{k}": v for k, v in stats_ms(w).items()},
           "cpu_mean_ms": float(c.mean() * 1e3)}  # fmt: skip
    log.info("speed %d px: %s", size, row)
    return row


def whole_fit(data: StaticFitData, truth: dict, clip: Path, size: int, iters: int, out: Path) -> dict:
    """Fit the whole clip; held-out metrics vs MP4 and vs the uncompressed truth; contact sheet."""
    from huma_rt.train.synthetic import ClipTruth

    d = data.frames.shape[1] // size
    cfg = StaticFitConfig(iterations=iters, downscale=d, checkpoint_every=max(iters // 4, 1), log_every=100,
                          densify=DensifyConfig(start=300, stop=int(iters * 0.8), interval=100))  # fmt: skip
    w0, c0 = time.perf_counter(), time.process_time()
    result = fit_static(data, cfg, clip / f"fit-checkpoint-{size}px")  # beside the clip, not in results
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    ct = ClipTruth(clip)
    rows, sheet = [], []
    picks = set(result.held_out[np.linspace(0, len(result.held_out) - 1, SHEET_FRAMES).round().astype(int)].tolist())
    try:
        for i in result.held_out:
            rgb, alpha = ct.frame(int(i))
            h, w = rgb.shape[0] // d, rgb.shape[1] // d
            t_img = torch.from_numpy(rgb[: h * d, : w * d].reshape(h, d, w, d, 3).mean((1, 3)) / 255.0).float()
            matte = torch.from_numpy(alpha[: h * d, : w * d].reshape(h, d, w, d).mean((1, 3))).float()
            fit = torch.from_numpy(render_fit(result, data.head_quat[i], data.head_trans[i]))
            rows.append({"frame": int(i), "speaking": bool(truth["speaking"][i]), "psnr": psnr(fit, t_img),
                         "psnr_face": psnr(fit, t_img, matte), "ssim": ssim(fit, t_img),
                         "ssim_face": ssim(fit, t_img, matte)})  # fmt: skip
            if int(i) in picks:
                sheet.append((t_img.numpy(), fit.numpy()))
    finally:
        ct.close()
    top = np.concatenate([s[0] for s in sheet], 1)
    bottom = np.concatenate([s[1] for s in sheet], 1)
    img = (np.concatenate([top, bottom], 0) * 255).round().clip(0, 255).astype(np.uint8)
    img = img.repeat(max(1, 256 // size), 0).repeat(max(1, 256 // size), 1)
    write_png(out / f"heldout_sheet_{size}px.png", img)

    def mean(key, sel=None):
        v = [r[key] for r in rows if sel is None or r["speaking"] == sel]
        return float(np.mean(v)) if v else None

    m = result.metrics
    return {"size": size, "iterations": iters, "frames": int(data.frames.shape[0]), "train_frames": int(result.train_frames.size),
            "held_out": int(result.held_out.size), "gaussians": result.gaussians.count, "wall_s": wall, "cpu_s": cpu,
            "s_per_iter_wall": wall / iters, "psnr_vs_truth": mean("psnr"), "psnr_face_vs_truth": mean("psnr_face"),
            "ssim_vs_truth": mean("ssim"), "ssim_face_vs_truth": mean("ssim_face"),
            "psnr_face_silent": mean("psnr_face", False), "psnr_face_speaking": mean("psnr_face", True),
            "psnr_vs_mp4": m.get("psnr"), "psnr_face_vs_mp4": m.get("psnr_face"), "ssim_vs_mp4": m.get("ssim"),
            "history": result.history}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=Path("/tmp/huma-bench-train-static-clip"), help="synthetic clip folder")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--speed-count", type=int, default=20000)
    ap.add_argument("--speed-iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--fit-size", type=int, default=128)
    ap.add_argument("--fit-iters", type=int, default=3000)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--quick", action="store_true", help="2 s clip, 64-128 px, few iterations (a smoke run)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.quick:
        a.duration, a.sizes, a.speed_count, a.speed_iters, a.fit_size, a.fit_iters = 2.0, [64, 128], 2000, 5, 64, 100
    a.out.mkdir(parents=True, exist_ok=True)
    data, truth = load_clip(a.clip, a.duration, a.seed)
    if not a.skip_speed:
        rows = [speed(data, s, a.speed_count, a.speed_iters, a.warmup) for s in a.sizes]
        write_result(a.out, "train_static_speed", rows)
    if not a.skip_fit:
        row = whole_fit(data, truth, a.clip, a.fit_size, a.fit_iters, a.out)
        history = row.pop("history")
        write_result(a.out, f"train_static_fit_{a.fit_size}px", [row], {"history": history})
        print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
