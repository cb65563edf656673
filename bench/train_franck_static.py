"""Static fit of a real video (franck, FGNet talking face): tracks -> fit data -> fit_static, and
its held-out quality against the video's own frames (issue 14's target: face PSNR >= 28 dB).

1. tracking: the first ``--seconds`` of the clip (train/tracking.track_video), cached as a
   Tracks .npz at ``--tracks`` (made and timed when missing, reused otherwise).
2. fit data: every ``--step``-th frame of those seconds (train/fit_data.fit_data_from_tracks:
   the tracker's poses, mattes widened over ears and hair, the mean-face anchors).
3. fit: train/fit_static at ``--downscale`` for ``--iters`` iterations (the config below, or
   ``--config`` JSON); every 8th valid frame held out; PSNR/SSIM of the held-out renders
   against the frames at the fit's size, whole frame and face (the tracker's matte polygon:
   face, skull, neck) and on the inner face (the landmarks' outline: jaw line and brows); a
   contact sheet of held-out frames (top: the video, middle: the fit, bottom: |error| x4).

Wall and CPU (process) time are both recorded with the load average: the machines are shared,
and CPU time is what the fit costs.

    python -m huma_rt.bench.train_franck_static [--seconds 120] [--iters 3000] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from huma_rt.bench.common import write_result
from huma_rt.train.face_matte import rasterize
from huma_rt.train.fit_data import fit_data_from_tracks
from huma_rt.train.fit_static import StaticFitConfig, fit_static, render_fit
from huma_rt.train.losses import psnr, ssim
from huma_rt.train.media_fixtures import media_path
from huma_rt.train.tracking import track_video
from huma_rt.train.tracking_tracks import Tracks
from huma_rt.train.video import open_video

from huma_rt.media.png import write_png

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train-franck-2026-12-06"
SHEET_FRAMES = 6


def default_config(iters: int, downscale: int) -> StaticFitConfig:
    """The recommended real-video config (see the results README for how it was chosen)."""
    return StaticFitConfig(iterations=iters, downscale=downscale, checkpoint_every=max(iters // 4, 1), log_every=100,
                           densify={"start": 300, "stop": iters // 2, "interval": 100, "max_count": 25_000})  # fmt: skip


def tracks_of(video: Path, frames: int, cache: Path) -> tuple[Tracks, dict]:
    """The first ``frames`` frames' tracks (cached at ``cache``) and the tracking's cost."""
    if cache.is_file():
        tracks = Tracks.load(cache)
        if len(tracks) >= frames:
            return tracks, {"tracking": "cached", "tracks": str(cache)}
    w, c = time.perf_counter(), time.process_time()
    tracks = track_video(video, max_frames=frames)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    tracks.save(cache)
    return tracks, {"tracking_wall_s": wall, "tracking_cpu_s": cpu, "tracking_frames": len(tracks)}


def _pool(a: np.ndarray, d: int) -> np.ndarray:
    h, w = a.shape[0] // d, a.shape[1] // d
    return a[: h * d, : w * d].reshape(h, d, w, d, *a.shape[2:]).mean((1, 3))


def inner_face(tracks: Tracks, index: np.ndarray, held: np.ndarray, d: int) -> list[dict]:
    """PSNR/SSIM of held-out frames on the inner face only: the landmarks' outline (jaw line
    and brows), without the hair, ears and neck of the tracker's matte."""
    return [{"frame": int(i), "mask": _pool(rasterize(np.concatenate([tracks.landmarks[index[i], :17],
                                                                      tracks.landmarks[index[i], 26:16:-1]]),
                                                      tracks.height, tracks.width) / 255.0, d)} for i in held]  # fmt: skip


def sheet(data, result, picks: np.ndarray, d: int) -> np.ndarray:
    """Rows: held-out frames at the fit's size, the fit's renders, |error| x 4 -> uint8 image."""
    rows: list[list[np.ndarray]] = [[], [], []]
    for i in picks:
        h, w = data.frames.shape[1] // d, data.frames.shape[2] // d
        truth = data.frames[i][: h * d, : w * d].reshape(h, d, w, d, 3).mean((1, 3)) / 255.0
        fit = render_fit(result, data.head_quat[i], data.head_trans[i])
        rows[0].append(truth)
        rows[1].append(fit)
        rows[2].append(np.clip(4 * np.abs(fit - truth), 0, 1))
    img = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    img = (img * 255).round().clip(0, 255).astype(np.uint8)
    return img.repeat(2, 0).repeat(2, 1) if d > 1 else img


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=None, help="default: the media fixture franck.mp4")
    ap.add_argument("--tracks", type=Path, default=Path("/tmp/huma-bench-franck-tracks.npz"))
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--step", type=int, default=2, help="fit every step-th frame")
    ap.add_argument("--downscale", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--refine", action="store_true", help="re-solve the poses on the person's template")
    ap.add_argument("--config", type=str, default=None, help="StaticFitConfig as JSON (overrides the rest)")
    ap.add_argument("--checkpoints", type=Path, default=Path("/tmp/huma-bench-franck-fit"))
    ap.add_argument("--quick", action="store_true", help="4 s at downscale 4, 300 iterations (a smoke run)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.quick:
        a.seconds, a.step, a.downscale, a.iters = 4.0, 1, 4, 300
    video = a.video or media_path("franck.mp4")
    info = open_video(video).info
    n = min(int(round(a.seconds * info.fps)), info.frames)
    tracks, track_cost = tracks_of(video, n, a.tracks)
    index = np.arange(0, n, a.step)
    t0 = time.perf_counter()
    frames = np.stack([f for i, _, f in itertools.islice(open_video(video).frames(), n) if i % a.step == 0])
    data_index = index[: len(frames)]
    data = fit_data_from_tracks(frames, tracks, index=data_index, refine=a.refine)
    prep_s = time.perf_counter() - t0
    cfg = StaticFitConfig.from_dict(json.loads(a.config)) if a.config else default_config(a.iters, a.downscale)
    w, c = time.perf_counter(), time.process_time()
    result = fit_static(data, cfg, a.checkpoints)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    load = os.getloadavg()
    held = result.held_out
    picks = held[np.linspace(0, len(held) - 1, SHEET_FRAMES).round().astype(int)]
    a.out.mkdir(parents=True, exist_ok=True)
    write_png(a.out / "heldout_sheet.png", sheet(data, result, picks, cfg.downscale))
    m = result.metrics
    inner = []
    for r in inner_face(tracks, data_index, held, cfg.downscale):
        img = torch.from_numpy(render_fit(result, data.head_quat[r["frame"]], data.head_trans[r["frame"]]))
        truth = torch.from_numpy(_pool(data.frames[r["frame"]] / 255.0, cfg.downscale)).float()
        mask = torch.from_numpy(r["mask"]).float()
        inner.append((psnr(img, truth, mask), ssim(img, truth, mask)))
    row = {"video": video.name, "seconds": round(n / info.fps, 1), "frames": len(frames), "step": a.step,
           "valid": int(data.valid.sum()), "refine_poses": a.refine, "train_frames": int(result.train_frames.size),
           "held_out": int(held.size),
           "size": f"{result.camera.width}x{result.camera.height}", "iterations": cfg.iterations,
           "gaussians": result.gaussians.count, "fit_wall_s": round(wall, 1), "fit_cpu_s": round(cpu, 1),
           "load_avg_1m_at_end": round(load[0], 1), "psnr": round(m["psnr"], 2), "ssim": round(m["ssim"], 4),
           "psnr_face": round(m["psnr_face"], 2), "ssim_face": round(m["ssim_face"], 4),
           "psnr_inner_face": round(float(np.mean([x[0] for x in inner])), 2),
           "ssim_inner_face": round(float(np.mean([x[1] for x in inner])), 4),
           "decode_and_fit_data_s": round(prep_s, 1), **track_cost}  # fmt: skip
    write_result(a.out, "train_franck_static", [row], {"config": cfg.to_dict(), "sheet_frames": picks.tolist(),
                                                       "per_frame": m["frames"], "history": result.history})  # fmt: skip
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
