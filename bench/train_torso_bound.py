"""Where a trained avatar's held-out face error lies, and how much a moving torso layer could win
(issue 14: franck's face region, the tracker's matte, scores under its head alone).

For the held-out rows of a finished ``huma-rt train`` work folder, the articulated avatar is drawn
at the fit's size at its refined pose and tracked code (as the report scores it) and the error is
split over the face matte: the head (the matte above ``CHIN_MARGIN`` below the chin, the report's
``head``) and the band under it (neck, collar, sweater). Then an estimate of what a 2D torso model
would win: every frame's torso shift is found by phase correlation of the rows under the chin
against the training frames' median; the training frames shifted back give an aligned torso
(their median); drawn shifted to each held-out frame's own shift in front of the render below
``margin`` face heights under the chin, it replaces the render there. The shift is measured on
the held-out frame itself, as its head pose is: an optimistic bound for a translating torso.

    python -m huma_rt.bench.train_torso_bound --work me.train --video talk.mp4 [--margins 0.1,0.2,0.35] --out DIR
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
from huma_rt.train.fit_data import fit_data_from_tracks
from huma_rt.train.fit_views import Views
from huma_rt.train.heldout_eval import chin_axis, head_mask
from huma_rt.train.pipeline_work import load_articulated, read_npz
from huma_rt.train.tracking_tracks import Tracks
from huma_rt.train.video import open_video

log = logging.getLogger(__name__)
GREY = np.array([0.299, 0.587, 0.114], np.float32)


def _db(mse: float) -> float:
    return float(-10 * np.log10(max(mse, 1e-12)))


def phase_shift(ref: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    """(dy, dx) px that move grey ``ref`` [h,w] onto ``img`` [h,w]: phase correlation, Hann
    window, the peak refined by a parabola through its neighbours."""
    win = np.hanning(ref.shape[0])[:, None] * np.hanning(ref.shape[1])[None]
    a, b = (x * win for x in (ref, img))
    cross = np.fft.fft2(b - b.mean()) * np.conj(np.fft.fft2(a - a.mean()))
    c = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    iy, ix = np.unravel_index(np.argmax(c), c.shape)

    def vertex(m: float, c0: float, p: float) -> float:
        den = m - 2 * c0 + p
        return 0.0 if abs(den) < 1e-12 else 0.5 * (m - p) / den

    h, w = c.shape
    dy = iy + vertex(c[iy - 1, ix], c[iy, ix], c[(iy + 1) % h, ix])
    dx = ix + vertex(c[iy, ix - 1], c[iy, ix], c[iy, (ix + 1) % w])
    return (dy - h if dy > h / 2 else dy), (dx - w if dx > w / 2 else dx)


def run(work: Path, video: Path, out: Path, margins: tuple[float, ...] = (0.1, 0.2, 0.35),
        box_from: float = 0.15) -> dict:  # fmt: skip
    from scipy import ndimage

    result = load_articulated(work / "articulated")
    poses = read_npz(work / "poses.npz")
    codes = read_npz(work / "codes.npz")["codes"]
    tracks = Tracks.load(work / "tracks.npz")
    index = poses["frame"].astype(np.int64)
    row_of = {int(f): r for r, f in enumerate(index)}
    frames = np.empty((index.size, tracks.height, tracks.width, 3), np.uint8)
    for i, _, rgb in open_video(video).frames():
        if i > index[-1]:
            break
        if i in row_of:
            frames[row_of[i]] = rgb
    data = fit_data_from_tracks(frames, tracks, index=index)
    views = Views(data, round(tracks.width / result.camera.width))
    cam = views.camera
    held, train = np.asarray(result.held_out), np.asarray(result.train_frames)
    f = views.frames.numpy().astype(np.float32) / 255.0
    h, w = f.shape[1:3]
    everywhere = torch.ones(h, w)

    def chin(r: int) -> tuple[np.ndarray, np.ndarray, float]:
        return chin_axis(data.anchors, poses["head_quat"][r], poses["head_trans"][r], cam)

    some = train[:: max(1, len(train) // 200)]
    y0 = int(np.median([chin(r)[0][1] for r in some]) + box_from * np.median([chin(r)[2] for r in some]))
    if y0 > h - 8:
        raise SystemExit(f"the chin is too low in the frame for a torso box (from row {y0} of {h})")
    ref = np.median(f[some, y0:], 0) @ GREY
    shift = {int(r): phase_shift(ref, f[r, y0:] @ GREY) for r in np.concatenate([train, held])}
    pick = train[np.linspace(0, len(train) - 1, min(200, len(train))).round().astype(int)]
    torso = np.median([ndimage.shift(f[r], (-shift[int(r)][0], -shift[int(r)][1], 0), order=1, mode="nearest")
                       for r in pick], 0)  # fmt: skip
    rows = []
    with torch.no_grad():
        for r in held:
            r = int(r)
            q, t = poses["head_quat"][r], poses["head_trans"][r]
            img = render_articulated(result, q, t, np.nan_to_num(codes[index[r]]))
            err = ((img - f[r]) ** 2).mean(-1)
            face = (views.face_matte(r) > 0.5).numpy()
            head = (head_mask(views.face_matte(r), data.anchors, q, t, cam) > 0.5).numpy()
            band = face & ~head
            row = {"row": r, "frame": int(index[r]), "shift_px": [float(s) for s in shift[r]],
                   "psnr_face": _db(err[face].mean()), "psnr_head": _db(err[head].mean()),
                   "psnr_band": _db(err[band].mean()) if band.any() else None,
                   "band_share_of_face": float(band.sum() / max(face.sum(), 1)), "psnr": _db(err.mean())}  # fmt: skip
            layer = ndimage.shift(torso, (*shift[r], 0), order=1, mode="nearest")
            for m in margins:
                below = (head_mask(everywhere, data.anchors, q, t, cam, chin_margin=m) < 0.5).numpy()
                e2 = ((np.where(below[..., None], layer, img) - f[r]) ** 2).mean(-1)
                row[f"torso_{m:g}"] = {"psnr_face": _db(e2[face].mean()), "psnr": _db(e2.mean())}
            rows.append(row)
    mean = lambda key: float(np.mean([x[key] for x in rows if x[key] is not None]))  # noqa: E731
    summary = [{"drawn": "the avatar (as the report scores it)", "psnr_face": mean("psnr_face"),
                "psnr_head": mean("psnr_head"), "psnr_band": mean("psnr_band"), "psnr": mean("psnr"),
                "band_share_of_face": mean("band_share_of_face")}]  # fmt: skip
    for m in margins:
        summary.append({"drawn": f"torso layer below {m:g} face heights under the chin",
                        "psnr_face": float(np.mean([x[f"torso_{m:g}"]["psnr_face"] for x in rows])),
                        "psnr": float(np.mean([x[f"torso_{m:g}"]["psnr"] for x in rows]))})  # fmt: skip
    s = np.array([x["shift_px"] for x in rows])
    meta = {"work": str(work), "video": str(video), "fit_size": [w, h], "torso_box_from_row": y0,
            "held_out_shift_px_p5_p50_p95": np.percentile(s, [5, 50, 95], axis=0).T.round(2).tolist(),
            "per_frame": rows}  # fmt: skip
    write_result(out, "train_torso_bound", summary, meta)
    return {"summary": summary, **meta}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m huma_rt.bench.train_torso_bound", description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, required=True, help="a finished run's work folder (me.train)")
    p.add_argument("--video", type=Path, required=True, help="the video it was trained from")
    p.add_argument("--margins", default="0.1,0.2,0.35", help="torso layer below these face heights under the chin")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(2)
    run(a.work, a.video, a.out, tuple(float(x) for x in a.margins.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
