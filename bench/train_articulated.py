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

Work-folder mode (``--work``, issue 14 on real video): the articulated stage refitted on a
``huma-rt train`` work folder's own static avatar, fit frames, poses and codes (tracks.npz,
poses.npz, static/, codes.npz; the video decoded again), under the pipeline's default
ArticulatedFitConfig with the JSON overrides of each ``--variant NAME=JSON``; the work folder's
own articulated result (``articulated/``) is measured too, as ``saved``. Nothing in the work
folder is changed, so variants are compared on one static fit whatever the stage keys say.
Held-out metrics per region (train/heldout_eval.py: face = the tracker's matte as the
static fit measures it, face_wide = the widened matte, head, mouth, eyes) for the static
avatar and each variant, and a contact sheet of the held-out frames with the most
articulation (video / static / each variant).

    python -m huma_rt.bench.train_articulated --work /tmp/w/franck_30s/me.train --video /tmp/w/franck-30s.mp4 \
        --variant residual='{"region_source": "residual"}' --variant landmarks='{}' --out DIR --tag franck_30s
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def _deformed_of(result: ArticulatedFitResult, codes: np.ndarray):
    """frame -> render_view's parameter dict of ``result`` (a saved fit) given codes[frame]."""
    rows = torch.from_numpy(result.dynamic)
    base = canonical_params(result.gaussians)
    with torch.no_grad():
        feat = result.spatial(base["means"][rows])

    def params_of(i: int) -> dict:
        p = dict(base)
        with torch.no_grad():
            d = result.deformer(feat, torch.from_numpy(np.asarray(codes[i], np.float32))[None])
        for key, delta in zip(("means", "quats", "log_scales"), d, strict=True):
            p[key] = p[key].index_add(0, rows, delta[0])
        return p

    return params_of


def work_mode(a) -> int:
    """--work: refit the articulated stage's variants on a work folder (module docstring)."""
    from huma_rt.train.articulated_region import landmark_frame
    from huma_rt.train.fit_data import fit_data_from_tracks
    from huma_rt.train.fit_views import Views
    from huma_rt.train.heldout_eval import evaluate as evaluate_regions
    from huma_rt.train.pipeline import TrainConfig
    from huma_rt.train.pipeline_work import load_articulated, load_static, read_npz
    from huma_rt.train.tracking_tracks import Tracks
    from huma_rt.train.video import VideoConfig, open_video

    work = a.work
    tracks = Tracks.load(work / "tracks.npz")
    poses = read_npz(work / "poses.npz")
    index = poses["frame"].astype(np.int64)
    row = {int(f): r for r, f in enumerate(index)}
    frames = np.empty((index.size, tracks.height, tracks.width, 3), np.uint8)
    for i, _, rgb in open_video(a.video, VideoConfig()).frames():
        if i > index[-1]:
            break
        if i in row:
            frames[row[i]] = rgb
    data = fit_data_from_tracks(frames, tracks, index=index)
    data.head_quat, data.head_trans = poses["head_quat"], poses["head_trans"]  # the static fit's (maybe refined)
    data.valid = poses["valid"].astype(bool)
    static = load_static(work / "static")
    if (work / "codes.npz").is_file():
        all_codes = read_npz(work / "codes.npz")["codes"]
    else:  # a folder stopped after the static stage: the codes stage's computation (pipeline_stages)
        from huma_rt.train.articulation_codes import calibrate, params_to_codes, tracked_params

        params = tracked_params(tracks, calibrate(tracks.articulation, tracks.valid))
        all_codes = params_to_codes(np.nan_to_num(params))
    codes = np.nan_to_num(all_codes[index]).astype(np.float32)
    train_cfg = TrainConfig.quick() if a.preset == "quick" else TrainConfig()
    base = train_cfg.articulated.to_dict()
    base["downscale"] = max(1, int(round(max(tracks.width, tracks.height) / train_cfg.fit_side)))
    fits: dict[str, ArticulatedFitResult] = {}
    runs = []
    for spec in a.variant:
        name, _, js = spec.partition("=")
        cfg = ArticulatedFitConfig.from_dict({**base, **json.loads(js or "{}")})
        w0, c0 = time.perf_counter(), time.process_time()
        fits[name] = r = fit_articulated(data, static, codes, cfg)
        runs.append({"variant": name, "overrides": json.loads(js or "{}"), "wall_s": time.perf_counter() - w0,
                     "cpu_s": time.process_time() - c0, "dynamic": int(r.region["dynamic"]),
                     "gaussians": int(r.gaussians.count), "region": r.region})  # fmt: skip
        log.info("variant %s: %s", name, runs[-1])
    views = Views(data, base["downscale"])
    first = next(iter(fits.values())) if fits else None
    held = first.held_out if first is not None else None
    landmarks = landmark_frame(data.anchors)
    radius = max(1, views.camera.width // 48)
    results: dict[str, dict] = {}
    params_of: dict = {}
    if (work / "articulated" / "result.npz").is_file():
        saved = load_articulated(work / "articulated")
        held = saved.held_out if held is None else held
        params_of["saved"] = _deformed_of(saved, codes)
        fits_eval = {"saved": saved, **fits}
    else:
        fits_eval = dict(fits)
    plate = torch.from_numpy(np.asarray(next(iter(fits_eval.values())).background, np.float32))
    for name, r in fits.items():
        params_of[name] = _deformed_of(r, codes)
    static_params = canonical_params(static.gaussians)
    results["static"] = evaluate_regions(lambda i: static_params, static.gaussians.sh_degree, views, held, plate,
                                         np.zeros((0, 3)), radius, landmarks)  # fmt: skip
    for name, r in fits_eval.items():
        results[name] = evaluate_regions(params_of[name], r.gaussians.sh_degree, views, held, plate,
                                         r.gaussians.means[r.dynamic], radius, landmarks)  # fmt: skip
    rect = {k: _rect_fraction(r.gaussians.means[r.dynamic], views, held) for k, r in fits_eval.items()}
    keys = ("psnr", "psnr_face", "psnr_face_wide", "psnr_head", "psnr_mouth", "psnr_eyes", "psnr_region", "ssim_face")
    table = [{"avatar": k, "dynamic": int(fits_eval[k].dynamic.size) if k in fits_eval else 0,
              "redraw_fraction": rect.get(k), **{key: m.get(key) for key in keys}}
             for k, m in results.items()]  # fmt: skip
    _work_sheet(results, params_of, static_params, static.gaussians.sh_degree, views, plate, codes, a.out, a.tag)
    extra = {"work": str(work), "video": str(a.video), "runs": runs, "held_out": int(len(held)),
             "base_config": base, "load_1min": os.getloadavg()[0],
             "frames": {k: m["frames"] for k, m in results.items()}}  # fmt: skip
    write_result(a.out, f"articulated_{a.tag}", table, extra)
    print(json.dumps({"runs": runs, "table": table}, indent=1, default=str))
    return 0


def _rect_fraction(points: np.ndarray, views, index) -> float:
    """Mean share of the frame taken by the rectangle bounding the projected points [N,3] over
    frames ``index`` (the runtime's CPU renderer redraws that rectangle of the dynamic rows)."""
    from huma_rt.train.articulated_region import project_canonical

    cam, out = views.camera, []
    for i in index:
        px = project_canonical(points, views.quat[int(i)].numpy(), views.trans[int(i)].numpy(), cam)
        lo = np.clip(px.min(0), 0, [cam.width, cam.height])
        hi = np.clip(px.max(0), 0, [cam.width, cam.height])
        out.append(float(np.prod(hi - lo)) / (cam.width * cam.height))
    return float(np.mean(out))


def _work_sheet(results, params_of, static_params, sh_degree, views, plate, codes, out: Path, tag: str) -> None:
    """Held-out frames with the most articulation (|code - median| largest, spread over the
    clip): video / static / each fit, 3x enlarged, with each tile's face PSNR in the log."""
    frames = [r["frame"] for r in results["static"]["frames"]]
    dist = np.linalg.norm(codes[frames] - np.median(codes[frames], 0), axis=1)
    top = sorted(np.asarray(frames)[np.argsort(-dist)[: 3 * SHEET_FRAMES]].tolist())
    picks = top[:: max(1, len(top) // SHEET_FRAMES)][:SHEET_FRAMES]
    rows = []
    with torch.no_grad():
        truth = [views.target(i).numpy() for i in picks]
        rows.append(np.concatenate(truth, 1))
        for name in ("static", *params_of):
            pf = (lambda i: static_params) if name == "static" else params_of[name]
            imgs = [render_view(pf(i), views.camera, views.quat[i], views.trans[i], plate, sh_degree).image.clamp(0, 1)
                    .numpy() for i in picks]  # fmt: skip
            rows.append(np.concatenate(imgs, 1))
            by = {r["frame"]: r for r in results[name]["frames"]}
            log.info("sheet row %s: face PSNR %s", name, [round(by[i].get("psnr_face", float("nan")), 2) for i in picks])
    img = (np.concatenate(rows, 0) * 255).round().clip(0, 255).astype(np.uint8).repeat(3, 0).repeat(3, 1)
    write_png(out / f"heldout_{tag}.png", img)
    (out / f"heldout_{tag}.txt").write_text("rows: video, static, " + ", ".join(params_of) + f"\nframes: {picks}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="a huma-rt train work folder (me.train): work-folder mode")
    ap.add_argument("--video", type=Path, help="--work: the video the work folder was made from")
    ap.add_argument("--variant", action="append", default=[], help="--work: NAME=JSON of ArticulatedFitConfig fields")
    ap.add_argument("--tag", default="work", help="--work: the result files' name")
    ap.add_argument("--preset", choices=("default", "quick"), default="default",
                    help="--work: the TrainConfig preset the work folder was made with")  # fmt: skip
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
    if a.work is not None:
        torch.set_num_threads(1)
        return work_mode(a)
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
