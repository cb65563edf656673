"""Articulated-fit benchmark (train/fit_articulated.py): a synthetic clip of the demo avatar
speaking, its static avatar (bench/train_static's fit, reused from its checkpoint beside the
clip), then the articulated fit driven by the clip's TRUE motion codes (truth.npz 'code'), and
optionally the same fit with the codes shuffled over frames (what the codes are worth).

Held-out frames (the static fit's split) are compared with the truth re-rendered without
compression (ClipTruth), pooled to the fit's size: PSNR/SSIM whole frame, face (matte) and
mouth (the pixels the demo's own dynamic Gaussians cover at the frame's pose), for the static
avatar, each fitted variant (true or shuffled codes) given each frame's true code, and
the first variant given the median training code on every frame ("@median": the codes
switched off at test time, same Gaussians and resolution);
split into speaking and silent frames. A contact sheet of held-out speaking frames: truth /
static / the first variant. The static fit may have another size than the articulated one
(its checkpoint is reused): then the static avatar is rendered at a size it was not fitted at
(3DGS's aliasing costs it many dB) and the fair baseline is "@median".
Wall and CPU time are both recorded (shared machines: CPU time is what the fit costs).

    python -m huma_rt.bench.train_articulated --clip /tmp/fs/clip30 --static-size 256 --size 128 [--variants true shuffled]
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
from huma_rt.bench.common import write_result
from huma_rt.bench.train_static import load_clip
from huma_rt.train.articulated_region import region_mask
from huma_rt.train.densify import DensifyConfig
from huma_rt.train.fit_articulated import (
    ArticulatedFitConfig,
    ArticulatedFitResult,
    canonical_params,
    fit_articulated,
    render_articulated,
)
from huma_rt.train.fit_pose import render_view
from huma_rt.train.fit_static import StaticFitConfig, StaticFitResult, fit_static
from huma_rt.train.losses import psnr, ssim

from huma_rt.media.png import write_png

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train-articulated-2026-12-06"
SHEET_FRAMES = 6


def static_fit(data, clip: Path, size: int, iters: int) -> StaticFitResult:
    """bench/train_static's fit at ``size`` px (the same config, so its checkpoint is reused)."""
    d = data.frames.shape[1] // size
    cfg = StaticFitConfig(iterations=iters, downscale=d, checkpoint_every=max(iters // 4, 1), log_every=100,
                          densify=DensifyConfig(start=300, stop=int(iters * 0.8), interval=100))  # fmt: skip
    return fit_static(data, cfg, clip / f"fit-checkpoint-{size}px", resume=True)


def _render_static(static: StaticFitResult, fit: ArticulatedFitResult, q, t) -> np.ndarray:
    """The static avatar at the articulated fit's size (its camera and plate)."""
    with torch.no_grad():
        out = render_view(canonical_params(static.gaussians), fit.camera, torch.tensor(q, dtype=torch.float32),
                          torch.tensor(t, dtype=torch.float32), torch.from_numpy(fit.background),
                          static.gaussians.sh_degree)  # fmt: skip
    return out.image.clamp(0, 1).numpy()


def evaluate(fits: dict[str, ArticulatedFitResult], static: StaticFitResult, data, truth: dict, clip: Path,
             out: Path, size: int) -> list[dict]:
    """Per held-out frame and avatar: PSNR/SSIM vs the uncompressed truth; writes the sheet."""
    from huma_rt.train.synthetic import ClipTruth, resolve_bundle

    from huma_rt.bundle.load import open_bundle

    demo = open_bundle(resolve_bundle(None)).gaussians()
    mouth_points = demo.means[demo.region != 0]
    main = next(iter(fits.values()))
    median_code = np.median(truth["code"][main.train_frames], 0)
    d = data.frames.shape[1] // size
    ct = ClipTruth(clip)
    rows, sheet = [], []
    speaking_held = [int(i) for i in main.held_out if truth["speaking"][i]]
    picks = set(np.asarray(speaking_held)[np.linspace(0, len(speaking_held) - 1, SHEET_FRAMES).round().astype(int)].tolist())
    try:
        for i in main.held_out:
            i = int(i)
            q, t = data.head_quat[i], data.head_trans[i]
            rgb, alpha = ct.frame(i)
            h, w = rgb.shape[0] // d, rgb.shape[1] // d
            t_img = torch.from_numpy(rgb[: h * d, : w * d].reshape(h, d, w, d, 3).mean((1, 3)) / 255.0).float()
            face = torch.from_numpy(alpha[: h * d, : w * d].reshape(h, d, w, d).mean((1, 3))).float()
            mouth = region_mask(mouth_points, q, t, main.camera, max(1, size // 64))
            imgs = {"static": _render_static(static, main, q, t)}
            imgs.update({k: render_articulated(r, q, t, truth["code"][i]) for k, r in fits.items()})
            first = next(iter(fits))  # the same avatar with the codes switched off (median code)
            imgs[f"{first}@median"] = render_articulated(fits[first], q, t, median_code)
            for k, img in imgs.items():
                x = torch.from_numpy(img)
                rows.append({"frame": i, "avatar": k, "speaking": bool(truth["speaking"][i]), "psnr": psnr(x, t_img),
                             "psnr_face": psnr(x, t_img, face), "psnr_mouth": psnr(x, t_img, mouth),
                             "ssim": ssim(x, t_img), "ssim_face": ssim(x, t_img, face),
                             "ssim_mouth": ssim(x, t_img, mouth)})  # fmt: skip
            if i in picks:
                sheet.append((t_img.numpy(), imgs["static"], imgs[next(iter(fits))]))
    finally:
        ct.close()
    img = np.concatenate([np.concatenate([s[k] for s in sheet], 1) for k in range(3)], 0)
    img = (img * 255).round().clip(0, 255).astype(np.uint8)
    img = img.repeat(max(1, 256 // size), 0).repeat(max(1, 256 // size), 1)
    write_png(out / f"heldout_sheet_{size}px_{'-'.join(fits)}.png", img)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Means per avatar over all / speaking / silent held-out frames."""
    table = []
    for avatar in dict.fromkeys(r["avatar"] for r in rows):
        for sel, name in ((None, "all"), (True, "speaking"), (False, "silent")):
            rs = [r for r in rows if r["avatar"] == avatar and (sel is None or r["speaking"] == sel)]
            if rs:
                table.append({"avatar": avatar, "frames": name, "n": len(rs),
                              **{k: float(np.mean([r[k] for r in rs])) for k in
                                 ("psnr", "psnr_face", "psnr_mouth", "ssim", "ssim_face", "ssim_mouth")}})  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=Path("/tmp/huma-bench-train-static-clip"), help="synthetic clip folder")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--static-size", type=int, default=128, help="the static fit's size (px)")
    ap.add_argument("--static-iters", type=int, default=3000)
    ap.add_argument("--size", type=int, default=128, help="the articulated fit's size (px)")
    ap.add_argument("--iters", type=int, default=1500)
    ap.add_argument("--variants", nargs="+", default=["true"], choices=["true", "shuffled"],
                    help="codes to fit with: the truth's, or shuffled over frames")  # fmt: skip
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    a.out.mkdir(parents=True, exist_ok=True)
    data, truth = load_clip(a.clip, a.duration, a.seed)
    with np.load(a.clip / "truth.npz") as z:
        truth["code"] = z["code"].astype(np.float32)
    w0, c0 = time.perf_counter(), time.process_time()
    static = static_fit(data, a.clip, a.static_size, a.static_iters)
    static_s = (time.perf_counter() - w0, time.process_time() - c0)
    cfg = ArticulatedFitConfig(iterations=a.iters, downscale=data.frames.shape[1] // a.size, log_every=100,
                               holdout_every=8, checkpoint_every=0)  # fmt: skip
    codes = truth["code"]
    variants = {"true": codes, "shuffled": codes[np.random.default_rng(0).permutation(len(codes))]}
    variants = {k: variants[k] for k in a.variants}
    fits, runs = {}, []
    for name, codes in variants.items():
        w0, c0 = time.perf_counter(), time.process_time()
        fits[name] = fit_articulated(data, static, codes, cfg)
        r = fits[name]
        runs.append({"codes": name, "size": a.size, "iterations": a.iters, "wall_s": time.perf_counter() - w0,
                     "cpu_s": time.process_time() - c0, "gaussians": r.gaussians.count, "dynamic": r.region["dynamic"],
                     "train_frames": int(r.train_frames.size), "held_out": int(r.held_out.size),
                     "psnr_vs_mp4": r.metrics.get("psnr"), "psnr_face_vs_mp4": r.metrics.get("psnr_face"),
                     "psnr_region_vs_mp4": r.metrics.get("psnr_region"),
                     "static_psnr_region_vs_mp4": r.metrics["static"].get("psnr_region")})  # fmt: skip
        log.info("fit %s: %s", name, runs[-1])
    rows = evaluate(fits, static, data, truth, a.clip, a.out, a.size)
    table = summarise(rows)
    extra = {"runs": runs, "static_fit": {"size": a.static_size, "iterations": a.static_iters,
                                          "gaussians": static.gaussians.count, "wall_s_here": static_s[0]},
             "config": cfg.to_dict(), "history": {k: f.history for k, f in fits.items()}, "frames": rows}  # fmt: skip
    write_result(a.out, f"train_articulated_{a.size}px_{'-'.join(fits)}", table, extra)
    print(json.dumps({"runs": runs, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
