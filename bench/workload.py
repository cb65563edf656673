"""A steady frame loop for profilers: load a bundle, stream audio through one session.

Used by the Nsight recipes (bench/nsight.md): every stage runs inside its NVTX range
(huma/encode, huma/deform, huma/project, huma/sort, huma/blend, huma/composite).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def default_bundle() -> Path:
    """The demo avatar's bundle (built once into its cache); without the trained demo checkpoint,
    the demo head with seeded random networks packed into a temporary folder."""
    import tempfile

    from huma_rt.bench.reference import prepare_bundle

    bundle, _, source = prepare_bundle(Path(tempfile.mkdtemp(prefix="huma-workload-")))
    log.info("workload avatar: %s", source)
    return bundle


def run_frames(bundle: Path, device: str, frames: int, seed: int = 0) -> dict:
    """Render ``frames`` frames of seeded noise-modulated audio; return wall time and count."""
    from huma_rt import Avatar

    avatar = Avatar.load(bundle, device=device)
    rng = np.random.default_rng(seed)
    spf = avatar.sample_rate // avatar.fps
    audio = (0.1 * rng.standard_normal(frames * spf)).astype(np.float32)
    session = avatar.session()
    t0 = time.perf_counter()
    count = 0
    for start in range(0, audio.size, spf):
        session.push_audio(audio[start : start + spf])
        for _ in session.frames():
            count += 1
    session.finish()
    for _ in session.frames():
        count += 1
    return {"frames": count, "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bundle (default: demo avatar)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--frames", type=int, default=250)
    args = parser.parse_args(argv)
    result = run_frames(args.bundle or default_bundle(), args.device, args.frames)
    print(f"{result['frames']} frames in {result['seconds']:.2f} s "
          f"({result['frames'] / result['seconds']:.1f} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
