"""``huma-rt train VIDEO -o me.bundle [--audio speech.wav] [--resume]``: a person's avatar from a video.

  huma-rt train talk.mp4 -o me.bundle                 # the video's own speech track (or none)
  huma-rt train talk.mp4 --audio speech.wav -o me.bundle
  huma-rt train talk.mp4 -o me.bundle --resume        # after Ctrl-C or a crash
  huma-rt render --bundle me.bundle --text "Hello, this is me." -o hello.mp4   # printed at the end

Builds the same TrainConfig as the Python API (huma_rt.train.pipeline.train_avatar) and draws a
progress bar per stage. The work folder (me.train/) keeps every finished stage and the fits'
checkpoints; the report (me.report/) holds held-out frames, PSNR/SSIM, loss curves, the tracking
overlay and the time of every stage. Also ``python -m huma_rt.train.cli``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from huma_rt.errors import HumaError, InputError

log = logging.getLogger(__name__)

HELLO = "Hello, this is me."  # the sentence of the render command printed after training


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .pipeline import STAGES

    p.add_argument("video", type=Path, help="a talking-head video: one face, roughly facing a fixed camera, 10 s to 10 min")
    p.add_argument("-o", "--output", required=True, type=Path, help="the bundle to write (e.g. me.bundle)")
    p.add_argument("--audio", type=Path, metavar="WAV",
                   help="the video's speech as a separate recording, used instead of its own track")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (finished stages are kept)")
    p.add_argument("--overwrite", action="store_true", help="start again even if the work folder or bundle exists")
    p.add_argument("--until", choices=STAGES, help="stop after this stage (continue later with --resume)")
    p.add_argument("--preset", choices=("default", "quick"), default="default",
                   help="quick: tiny fits, a rough avatar in minutes (smoke runs)")  # fmt: skip
    p.add_argument("--config", type=Path, metavar="JSON",
                   help="TrainConfig fields over the preset, e.g. {\"static\": {\"iterations\": 2000}}")  # fmt: skip
    p.add_argument("--name", help="the avatar's name in the bundle (default: the video's file name)")
    p.add_argument("--threads", type=int, help="torch threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the log still says each stage)")


def build_config(args: argparse.Namespace):
    """The TrainConfig the options describe (preset, then --config, then --name / --threads)."""
    from .pipeline import TrainConfig

    base = TrainConfig.quick() if args.preset == "quick" else TrainConfig()
    d = base.to_dict()
    if args.config is not None:
        try:
            extra = json.loads(args.config.read_text())
        except OSError as exc:
            raise InputError(f"--config {args.config}: cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise InputError(f"--config {args.config}: not JSON ({exc})") from None
        if not isinstance(extra, dict):
            raise InputError(f"--config {args.config} must hold a JSON object of TrainConfig fields")
        for k, v in extra.items():
            d[k] = {**d[k], **v} if isinstance(d.get(k), dict) and isinstance(v, dict) else v
    if args.name is not None:
        d["name"] = args.name
    if args.threads is not None:
        d["threads"] = args.threads
    return TrainConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    from .pipeline import TrainError, train_avatar, work_paths
    from .progress import TerminalBar

    config = build_config(args)
    bar = None if args.no_progress else TerminalBar(sys.stderr)
    try:
        result = train_avatar(args.video, args.output, config, audio=args.audio, resume=args.resume,
                              overwrite=args.overwrite, until=args.until, progress=bar)  # fmt: skip
    except KeyboardInterrupt:
        log.warning("interrupted: finished stages and checkpoints are kept; continue with --resume")
        raise
    except HumaError as exc:
        if not _kept(args):
            raise
        raise TrainError(f"{exc} (the finished stages are kept in {work_paths(args.output)[0]}: "
                         "rerun with --resume to continue)") from None  # fmt: skip
    lines = [f"{name} {s['seconds']:.1f} s" + (" (earlier run)" if s["skipped"] else "")
             for name, s in result.stages.items()]  # fmt: skip
    print("stages: " + ", ".join(lines), file=sys.stderr)
    for name, m in result.metrics.items():
        if "psnr" in m:
            print(f"{name}: held-out PSNR {m['psnr']:.2f} dB, face {m.get('psnr_face', float('nan')):.2f} dB",
                  file=sys.stderr)  # fmt: skip
    print(f"bundle: {result.bundle or '(not packed: stopped after ' + str(args.until) + ')'}; "
          f"report: {result.report}", file=sys.stderr)  # fmt: skip
    if result.bundle:  # what a person does next with it
        b = shlex.quote(str(result.bundle))
        print(f"next: huma-rt render --bundle {b} --text {shlex.quote(HELLO)} -o hello.mp4\n"
              f"      huma-rt serve --bundle {b}", file=sys.stderr)  # fmt: skip
    return 0


def _kept(args: argparse.Namespace) -> bool:
    """Whether the failed run left finished stages to resume from."""
    from .pipeline import work_paths

    state = work_paths(args.output)[0] / "stages.json"
    try:
        return bool(json.loads(state.read_text()).get("stages"))
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m huma_rt.train.cli ARGS``: ``huma-rt train ARGS`` (the same parser, errors and exit codes)."""
    from huma_rt.cli import main as huma_rt_main

    return huma_rt_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
