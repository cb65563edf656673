"""Per-frame speed of a trained avatar against the demo avatar, side by side in one run.

Issue 14: "the trained bundle passes every runtime test the demo bundle passes, at the same
per-frame speed". Both bundles are loaded once; then rounds alternate their order (demo,
trained, trained, demo, ...) so a load change on a shared machine falls on both alike. Each
round streams the same speech-like audio through one fresh session in 40 ms chunks as fast as
it goes and times every frame (push + frames + the copy out of the session's buffer, as
bench/runtime.py does) and its stages. Reported per bundle: Gaussian counts (all, dynamic; they
and the size decide the cost), frame p50/p95 and stage p50s over all rounds; and the ratio
trained / demo of the frame p50, over all frames and as the median of the per-round ratios.

    python -m huma_rt.bench.runtime_trained --trained me.bundle [--demo B] [--seconds 6] [--rounds 4]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import frame_stage_times, stats_ms, write_result
from huma_rt.bench.runtime import speech_like

log = logging.getLogger(__name__)


def stream_once(avatar, audio: np.ndarray) -> dict[str, list[float]]:
    """One session streaming ``audio`` in 640-sample pushes -> per-frame seconds by stage."""
    w, h = avatar.size
    out = np.empty((h, w, 3), np.uint8)
    rec: dict[str, list[float]] = {}
    s = avatar.session()
    try:
        for start in range(0, audio.size, 640):
            t0 = time.perf_counter()
            s.push_audio(audio[start : start + 640])
            for frame in s.frames():
                np.copyto(out, frame.rgb)
                t1 = time.perf_counter()
                for st, v in frame_stage_times(s).items():
                    rec.setdefault(st, []).append(v)
                rec.setdefault("frame", []).append(t1 - t0)
                t0 = time.perf_counter()
        s.finish()
        for _ in s.frames():
            pass
    finally:
        s.close()
    return rec


def _describe(avatar) -> dict:
    r = avatar.preload_report
    return {"gaussians": int(r.gaussians), "dynamic": int(r.dynamic), "size": f"{avatar.size[0]}x{avatar.size[1]}"}


def run(out_dir: Path, trained: Path, demo: Path | None = None, *, seconds: float = 6.0, rounds: int = 4,
        threads: int = 1, device: str = "cpu") -> dict:  # fmt: skip
    """Measure and write ``runtime_trained.json`` / ``.md`` into ``out_dir``; returns the record."""
    from huma_rt.runtime import Avatar

    if demo is None:
        from huma_rt.export.demo.bundle import ensure_bundle

        demo = ensure_bundle()[0]
    paths = {"demo": Path(demo), "trained": Path(trained)}
    avatars = {k: Avatar.load(p, device=device, threads=threads or None) for k, p in paths.items()}
    audio = speech_like(seconds)
    times: dict[str, dict[str, list[float]]] = {k: {} for k in paths}
    per_round: list[float] = []
    try:
        for a in avatars.values():  # warm-up: first-frame costs stay out of the medians
            stream_once(a, audio[:16000])
        for r in range(rounds):
            order = ["demo", "trained"] if r % 2 == 0 else ["trained", "demo"]
            p50 = {}
            for k in order:
                rec = stream_once(avatars[k], audio)
                for st, v in rec.items():
                    times[k].setdefault(st, []).extend(v)
                p50[k] = float(np.median(rec["frame"]))
            per_round.append(p50["trained"] / p50["demo"])
            log.info("round %d: frame p50 demo %.2f ms, trained %.2f ms", r + 1, 1e3 * p50["demo"], 1e3 * p50["trained"])
        rows = []
        for k, a in avatars.items():
            row = {"bundle": k, **_describe(a), "frames": len(times[k]["frame"])}
            f = stats_ms(times[k]["frame"])
            row.update(frame_p50_ms=f["p50_ms"], frame_p95_ms=f["p95_ms"], fps=1e3 / f["mean_ms"])
            for st, v in times[k].items():
                if st != "frame":
                    row[f"{st}_p50_ms"] = stats_ms(v)["p50_ms"]
            rows.append(row)
    finally:
        for a in avatars.values():
            a.close()
    ratio = rows[1]["frame_p50_ms"] / rows[0]["frame_p50_ms"]
    extra = {"bundles": {k: str(p) for k, p in paths.items()}, "device": device, "threads": threads,
             "audio_s": seconds, "rounds": rounds, "ratio_frame_p50": ratio,
             "ratio_per_round": per_round, "ratio_median_of_rounds": float(np.median(per_round))}  # fmt: skip
    rec = write_result(out_dir, "runtime_trained", rows, extra)
    with open(Path(out_dir) / "runtime_trained.md", "a") as md:
        md.write(f"\ntrained / demo frame p50: {ratio:.3f} (median of {rounds} per-round ratios "
                 f"{float(np.median(per_round)):.3f}; rounds {', '.join(f'{x:.3f}' for x in per_round)})\n")
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trained", type=Path, required=True, help="the trained bundle (huma-rt train / train.pack_avatar)")
    p.add_argument("--demo", type=Path, default=None, help="the bundle to compare with (default: the demo avatar)")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--seconds", type=float, default=6.0, help="audio streamed per round and bundle")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds (order flips every round)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime + renderer threads (0: library default)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(a.out, a.trained, a.demo, seconds=a.seconds, rounds=a.rounds, threads=a.threads, device=a.device)
    print((a.out / "runtime_trained.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
