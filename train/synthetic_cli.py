"""``python -m huma_rt.train.synthetic_cli -o synth/``: a closed-loop clip of the demo avatar.

  python -m huma_rt.train.synthetic_cli -o synth/ --duration 30 --seed 1
  python -m huma_rt.train.synthetic_cli -o still/ --rotation-deg 0 --translation 0 --background bundle

Writes video.mp4, speech.wav, truth.npz, config.json and sheet.png (see huma_rt.train.synthetic)
and prints the seconds spent per stage and the real-time factor.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from huma_rt.errors import HumaError

from .synthetic import SyntheticConfig, make_synthetic

_DEFAULTS = SyntheticConfig()


def _background(text: str):
    if text in ("textured", "bundle"):
        return text
    try:
        rgb = tuple(float(v) for v in text.split(","))
    except ValueError:
        rgb = (text,)
    return rgb  # SyntheticConfig refuses anything but a triple in [0, 1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m huma_rt.train.synthetic_cli", description=__doc__.split("\n")[0])
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--duration", type=float, default=_DEFAULTS.duration_s, help="seconds (default %(default)s)")
    p.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of every random choice")
    p.add_argument("--text", help="what to say (default: seeded held-out sentences of the demo corpus)")
    p.add_argument("--lead", type=float, default=_DEFAULTS.lead_s, help="silence before the first sentence (s)")
    p.add_argument("--gap", type=float, nargs=2, default=_DEFAULTS.gap_s, metavar=("MIN", "MAX"),
                   help="pause after each sentence (s)")  # fmt: skip
    p.add_argument("--rotation-deg", type=float, default=_DEFAULTS.rotation_deg, help="most nod/turn/tilt (degrees)")
    p.add_argument("--translation", type=float, default=_DEFAULTS.translation,
                   help="most head shift per axis (world units; the demo head is ~1 unit = ~25 cm tall)")  # fmt: skip
    p.add_argument("--motion-hz", type=float, default=_DEFAULTS.motion_hz, help="fastest motion frequency (Hz)")
    p.add_argument("--background", type=_background, default=_DEFAULTS.background,
                   help="textured, bundle, or r,g,b in [0, 1] (default %(default)s)")  # fmt: skip
    p.add_argument("--no-rotate-sh", action="store_true", help="keep view-dependent colour in world space")
    p.add_argument("--tts-noise", action="store_true",
                   help="keep Piper's sampling noise (livelier voice; the clip then differs on every run)")  # fmt: skip
    p.add_argument("--crf", type=int, default=_DEFAULTS.crf, help="H.264 quality (default %(default)s)")
    p.add_argument("--threads", type=int, help="onnxruntime and renderer threads")
    p.add_argument("--bundle", help="avatar bundle (default: the demo bundle)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = SyntheticConfig(
            duration_s=args.duration, seed=args.seed, text=args.text, lead_s=args.lead, gap_s=tuple(args.gap),
            rotation_deg=args.rotation_deg, translation=args.translation, motion_hz=args.motion_hz,
            background=args.background, rotate_sh=not args.no_rotate_sh, tts_noise=args.tts_noise, crf=args.crf,
            threads=args.threads, bundle=args.bundle,
        )  # fmt: skip
        t0 = time.perf_counter()
        result = make_synthetic(config, args.out)
    except HumaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = time.perf_counter() - t0
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    print(f"{result.frames} frames ({config.duration_s:g} s of video) in {total:.1f} s: {stages}")
    print(f"real-time factor {total / max(config.duration_s, 1e-9):.2f}; wrote {result.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
