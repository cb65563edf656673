"""What leaving the never-shown Gaussians out of a trained bundle buys and costs (issue 14: "the
trained bundle ... at the same per-frame speed" as the demo's).

For a finished ``huma-rt train`` work folder, every threshold of ``--below`` (the share of one
fit-size pixel a Gaussian must cover in some frame to be packed, train/prune_hidden.py; 0 packs
all) is packed as the pipeline packs it, then:

- fidelity: the pruned avatar against the whole one at the rest pose (what the runtime draws),
  over the fitted frames' codes (prune_hidden's own PSNR);
- truth: held-out frames of the video (the articulated fit's held-out rows, each at its own
  refined pose and tracked code, at the fit's size), whole frame and the landmarks' face box,
  for the whole and the pruned avatar (needs ``--video``);
- speed: each pruned bundle's frame against the whole bundle's, side by side in one process
  (bench/runtime_trained: alternating rounds of the same speech-like audio).

    python -m huma_rt.bench.train_prune --work me.train --video talk.mp4 --below 0.005 0.01 0.02 0.05 --out DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from huma_rt.bench import runtime_trained
from huma_rt.bench.common import write_result
from huma_rt.train.articulation_codes import blink_code
from huma_rt.train.fit_articulated import REGION_EYES, render_articulated
from huma_rt.train.pack_avatar import median_pose, pack_avatar
from huma_rt.train.pipeline_work import load_articulated, load_encoder, read_npz
from huma_rt.train.prune_hidden import prune_hidden
from huma_rt.train.tracking_tracks import Tracks
from huma_rt.train.video import open_video

log = logging.getLogger(__name__)


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b) ** 2
    mse = d.mean() if mask is None else d[mask].mean()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def _held_out(work: Path, video: Path, frames: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(quat, trans, code, truth [h,w,3] float32 at the fit's size, face box mask [h,w]) of
    ``frames`` held-out rows of the articulated fit."""
    result = load_articulated(work / "articulated")
    poses, codes = read_npz(work / "poses.npz"), read_npz(work / "codes.npz")["codes"]
    tracks = Tracks.load(work / "tracks.npz")
    cam = result.camera
    d = round(open_video(video).info.width / cam.width)  # the fit's downscale of the video
    rows = result.held_out[np.linspace(0, len(result.held_out) - 1, min(frames, len(result.held_out))).round().astype(int)]
    want = {int(poses["frame"][r]): int(r) for r in rows}
    out = []
    for index, _, rgb in open_video(video).frames():
        r = want.get(index)
        if r is None or not np.isfinite(codes[index]).all():
            continue
        x = torch.from_numpy(rgb[: cam.height * d, : cam.width * d].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        truth = torch.nn.functional.avg_pool2d(x, d)[0].permute(1, 2, 0).numpy()
        lm = tracks.landmarks[index] / d
        box = np.zeros(truth.shape[:2], bool)
        if np.isfinite(lm).all():
            x0, y0 = np.floor(lm.min(0)).astype(int)
            x1, y1 = np.ceil(lm.max(0)).astype(int)
            box[max(y0, 0) : y1, max(x0, 0) : x1] = True
        out.append((poses["head_quat"][r], poses["head_trans"][r], codes[index], truth, box))
    return out


def run(work: Path, out: Path, below: list[float], video: Path | None = None, frames: int = 24, seconds: float = 6.0,
        rounds: int = 4) -> list[dict]:  # fmt: skip
    result = load_articulated(work / "articulated")
    g = result.gaussians
    encoder, _ = load_encoder(work / "audio")
    poses, codes = read_npz(work / "poses.npz"), read_npz(work / "codes.npz")
    rest = median_pose(poses["head_quat"], poses["head_trans"], poses["valid"])
    blink = blink_code(codes["params"][np.isfinite(codes["params"]).all(1)])
    cam = result.camera
    upscale = max(1, 512 // max(cam.width, cam.height))
    plate = np.asarray(result.background, np.float32)
    held = _held_out(work, video, frames) if video is not None else []
    out.mkdir(parents=True, exist_ok=True)
    bundles = out / "bundles"
    rows = []
    for b in [0.0, *sorted(x for x in below if x > 0)]:
        pr = prune_hidden(g, result.spatial, result.deformer, cam, rest, plate, codes["codes"], below=b, blink_code=blink)
        kept = g.subset(pr.keep)
        eyes = [REGION_EYES] if blink is not None and (kept.region == REGION_EYES).any() else None
        path = pack_avatar(kept, result.spatial, result.deformer, encoder, cam, plate, bundles / f"below-{b:g}.bundle",
                           name="pruned", rest_pose=rest, upscale=upscale, overwrite=True, blink_code=blink,
                           blink_regions=eyes)  # fmt: skip
        row = {"below": b, "gaussians": kept.count, "dynamic": int(np.count_nonzero(kept.region)),
               "left_out": g.count - kept.count, "fidelity_psnr": None if not np.isfinite(pr.psnr) else pr.psnr,
               "bundle": str(path)}  # fmt: skip
        if held:
            shown = [render_articulated(result, q, t, c, gaussians=kept) for q, t, c, _, _ in held]
            row["truth_psnr"] = float(np.median([_psnr(s, h[3]) for s, h in zip(shown, held, strict=True)]))
            row["truth_psnr_face_box"] = float(np.median([_psnr(s, h[3], h[4]) for s, h in zip(shown, held, strict=True)
                                                          if h[4].any()]))  # fmt: skip
        rows.append(row)
        log.info("below %g: %s", b, {k: v for k, v in row.items() if k != "bundle"})
    whole = Path(rows[0]["bundle"])
    for row in rows[1:]:
        rec = runtime_trained.run(out / f"speed-below-{row['below']:g}", Path(row["bundle"]), whole, seconds=seconds,
                                  rounds=rounds)  # fmt: skip
        row["frame_ratio"] = rec["ratio_frame_p50"]
        row["frame_ratio_median_of_rounds"] = rec["ratio_median_of_rounds"]
        row["frame_p50_ms"] = rec["results"][1]["frame_p50_ms"]
        row["whole_frame_p50_ms"] = rec["results"][0]["frame_p50_ms"]
    for row in rows:
        row.pop("bundle")
    write_result(out, "train_prune", rows, {"work": str(work), "video": str(video), "held_out_frames": len(held),
                                            "fit_size": [cam.width, cam.height], "pack_size": [cam.width * upscale,
                                                                                               cam.height * upscale]})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m huma_rt.bench.train_prune", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a finished run's work folder (me.train)")
    p.add_argument("--video", type=Path, default=None, help="the video it was trained from (held-out truth)")
    p.add_argument("--below", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05],
                   help="thresholds: share of one fit-size pixel")
    p.add_argument("--frames", type=int, default=24, help="held-out frames scored")
    p.add_argument("--seconds", type=float, default=6.0, help="audio per speed round and bundle")
    p.add_argument("--rounds", type=int, default=4, help="alternating speed rounds per threshold")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(2)
    run(a.work, a.out, a.below, a.video, a.frames, a.seconds, a.rounds)
    print((a.out / "train_prune.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
