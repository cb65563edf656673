"""A trained avatar packed larger than its fit (issue 14: users want their avatar at their
video's size; the fit runs at ~180 px to stay within the CPU budget).

For held-out frames of a finished ``huma-rt train`` work folder (its refined poses and tracked
codes, the fit's own held-out rows), the articulated avatar is drawn three ways at ``upscale``
times the fit's size: the fit's frame upsampled (bilinear), the same Gaussians drawn at the
larger size as they are (what packing at the video's size did before), and widened by
train/pack_avatar.lowpass_for_upscale (what the pipeline packs now). Scored against the video's
own frames at that size (whole frame, and the face box of the tracked landmarks) and against
the fit's frame upsampled (how far each is from the fit's look). ``train_pack_size.png``: the
first frame drawn the three ways, then the video's.

    python -m huma_rt.bench.train_pack_size --work me.train --video talk.mp4 [--upscale U] [--frames 16] --out DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from huma_rt.bench.common import write_result
from huma_rt.train.fit_articulated import render_articulated
from huma_rt.train.pack_avatar import (
    lowpass_for_upscale,
    median_pose,
    plate_for_camera,
    rest_camera,
    upscale_camera,
)
from huma_rt.train.pipeline_work import load_articulated, read_npz
from huma_rt.train.tracking_tracks import Tracks
from huma_rt.train.video import open_video

log = logging.getLogger(__name__)


def _upsample(img: np.ndarray, u: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(img, np.float32)).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(x, scale_factor=u, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b) ** 2
    mse = d.mean() if mask is None else d[mask].mean()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def run(work: Path, video: Path, out: Path, upscale: int | None = None, frames: int = 16) -> list[dict]:
    result = load_articulated(work / "articulated")
    poses = read_npz(work / "poses.npz")
    codes = read_npz(work / "codes.npz")["codes"]
    tracks = Tracks.load(work / "tracks.npz")
    cam = result.camera
    info = open_video(video).info
    u = upscale or max(1, max(info.width, info.height) // max(cam.width, cam.height))
    d = round(info.width / cam.width)  # the fit's downscale of the video
    big = upscale_camera(cam, u)
    bg_big = plate_for_camera(np.asarray(result.background, np.float32), big)
    g = result.gaussians
    # widened at the rest pose's depths, as train/pipeline packs it
    rest = median_pose(poses["head_quat"], poses["head_trans"], poses["valid"])
    wide = lowpass_for_upscale(g, rest_camera(cam, *rest), u)
    rows = result.held_out[np.linspace(0, len(result.held_out) - 1, min(frames, len(result.held_out))).round().astype(int)]
    want = {int(poses["frame"][r]): int(r) for r in rows}
    out_rows = []
    for index, _, rgb in open_video(video).frames():
        if index not in want:
            continue
        r = want[index]
        q, t, code = poses["head_quat"][r], poses["head_trans"][r], codes[index]
        if not np.isfinite(code).all():
            continue
        fit = render_articulated(result, q, t, code)
        shown = {"fit upsampled": _upsample(fit, u),
                 "as fitted, larger": render_articulated(result, q, t, code, camera=big, background=bg_big),
                 "widened, larger": render_articulated(result, q, t, code, gaussians=wide, camera=big, background=bg_big)}  # fmt: skip
        # the video at the larger size: its pixels when u equals the fit's downscale, else area-resized
        truth = rgb[: big.height * d // u, : big.width * d // u].astype(np.float32) / 255.0
        if d != u:
            x = torch.from_numpy(truth).permute(2, 0, 1)[None]
            truth = torch.nn.functional.interpolate(x, size=(big.height, big.width), mode="area")[0].permute(1, 2, 0).numpy()
        lm = tracks.landmarks[index] * (u / d)
        box = np.zeros(truth.shape[:2], bool)
        if np.isfinite(lm).all():
            x0, y0 = np.floor(lm.min(0)).astype(int)
            x1, y1 = np.ceil(lm.max(0)).astype(int)
            box[max(y0, 0) : y1, max(x0, 0) : x1] = True
        if not out_rows:  # one sheet: the three drawings and the video, side by side
            sheet = np.concatenate([*shown.values(), truth], 1)
            out.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray((np.clip(sheet, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out / "train_pack_size.png")
        for name, img in shown.items():
            out_rows.append({"frame": index, "drawn": name, "psnr": _psnr(img, truth),
                             "psnr_face_box": _psnr(img, truth, box) if box.any() else None,
                             "psnr_vs_fit_look": None if name == "fit upsampled" else _psnr(img, shown["fit upsampled"])})  # fmt: skip
        log.info("frame %d: %s", index, {r["drawn"]: round(r["psnr"], 2) for r in out_rows[-3:]})
    summary = []
    for name in ("fit upsampled", "as fitted, larger", "widened, larger"):
        sel = [r for r in out_rows if r["drawn"] == name]
        row = {"drawn": name, "frames": len(sel), "size": f"{big.width}x{big.height}"}
        for k in ("psnr", "psnr_face_box", "psnr_vs_fit_look"):
            v = [r[k] for r in sel if r[k] is not None]
            row[f"{k}_median"] = float(np.median(v)) if v else None
        summary.append(row)
    write_result(out, "train_pack_size", summary, {"work": str(work), "video": str(video), "upscale": u,
                                                   "fit_size": [cam.width, cam.height], "per_frame": out_rows})  # fmt: skip
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m huma_rt.bench.train_pack_size", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a finished run's work folder (me.train)")
    p.add_argument("--video", type=Path, required=True, help="the video it was trained from")
    p.add_argument("--upscale", type=int, default=None, help="times the fit's size (default: the video's size)")
    p.add_argument("--frames", type=int, default=16, help="held-out frames scored")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(2)
    run(a.work, a.video, a.out, a.upscale, a.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
