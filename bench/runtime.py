"""Runtime benchmark: preload phases in a fresh process, per-stage frame latency, fps, sessions.

Scenarios (rows of the result table):
- ``preload``: ``Avatar.load`` + first frame in a fresh Python process (import, each preload
  phase, first frame, wall time of the whole child process, its peak RSS).
- ``sessions=K``: K sessions of one Avatar, each in its own thread, streaming the same speech-like
  audio in 40 ms chunks as fast as possible; per-frame latency of each stage (features, encode,
  deform, render; the renderer's project, sort, blend, composite; ``output_copy``: the frame's
  RGB copied out of the session's buffer into the caller's) and of the whole frame (until its
  copy is done) as p50/p95/p99, aggregate frames per second. Full mode: 1, 2, 4, 8 sessions of
  20 s of audio each. Quick mode: the same counts, 3 s of audio shared out (max(1 s, 3 s / K)
  per session), so each point costs about the same; ``audio_s`` says what each row streamed.

Bundle: ``--bundle``, else the demo avatar (built once into its cache when its checkpoint
ships), else a synthetic avatar (seeded random networks of the default size + a Gaussian
sphere) built into the output folder.

    python -m huma_rt.bench.runtime [--bundle B] [--seconds 10] [--sessions 1 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import frame_stage_times, stats_ms, write_result

log = logging.getLogger(__name__)

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np
from huma_rt.runtime import Avatar
t_import = time.perf_counter() - t0
avatar = Avatar.load(sys.argv[1], device=sys.argv[2], threads=None if sys.argv[3] == "0" else int(sys.argv[3]))
t_load = time.perf_counter() - t0
s = avatar.session()
s.push_audio(np.zeros(640 + avatar.lookahead_samples, np.float32))
frame = next(iter(s.frames()))
t_first = time.perf_counter() - t0
print(json.dumps({"import_s": t_import, "load_s": t_load - t_import, "first_frame_s": t_first - t_load,
                  "bundle_to_first_frame_s": t_first - t_import, "phases_ms": avatar.preload_report.to_dict()["phases_ms"],
                  "gaussians": avatar.preload_report.gaussians, "dynamic": avatar.preload_report.dynamic,
                  "size": list(avatar.size), "renderer": avatar.preload_report.renderer,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=t.size))).astype(np.float32)


def synthetic_bundle(out: Path, n: int = 46100, size: int = 512) -> Path:
    """Seeded random networks (default configs) + a sphere of ``n`` Gaussians, lower front = dynamic.

    Defaults match the demo head (46100 Gaussians, 512x512) so preload and frame times compare;
    splat size 0.008 = the mean spacing of 46100 points on the sphere (a surface, like a head).
    """
    from huma_rt.export.models import build_models
    from huma_rt.export.onnx_export import export_models

    from huma_rt.bundle import AvatarSource, pack
    from huma_rt.gaussians import Camera, Gaussians
    from huma_rt.model_config import DeformerConfig, EncoderConfig

    bundle = out / "synthetic-bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    export = out / "synthetic-export"
    export_models(export, *build_models(EncoderConfig(), DeformerConfig(), seed=0), source="bench: seeded random")
    rng = np.random.default_rng(0)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    g = Gaussians(
        means=(0.5 * d).astype(np.float32), log_scales=np.full((n, 3), np.log(0.008), np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32), opacity_logits=rng.normal(1, 0.5, n).astype(np.float32),
        sh=rng.uniform(-0.5, 0.5, (n, 1, 3)).astype(np.float32),
        region=((d[:, 2] < -0.6) & (d[:, 1] > 0.1)).astype(np.uint8),
    )  # fmt: skip
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 1.6
    cam = Camera(width=size, height=size, fx=size * 1.2, fy=size * 1.2, cx=size / 2, cy=size / 2, world_to_camera=w2c)
    return pack(AvatarSource(g, cam, (0.1, 0.1, 0.12), export, name="synthetic"), bundle, overwrite=True)


def default_bundle(out_dir: Path) -> tuple[Path, str]:
    from huma_rt.errors import HumaError

    try:
        from huma_rt.export.demo.bundle import ensure_bundle

        return ensure_bundle()[0], "demo"
    except (HumaError, ImportError) as exc:
        log.info("no demo bundle (%s): using a synthetic avatar", exc)
        return synthetic_bundle(out_dir), "synthetic"


def prepare(out_dir: Path, device: str, bundle: Path | None) -> tuple[Path, Path, str]:
    """A session scenario's start: the device checked (DeviceError before any work: 'cuda'
    without a GPU is a skip, not a failed child process), ``out_dir`` made, the bundle chosen
    (given, else the demo avatar, else synthetic). Returns (out_dir, bundle, which)."""
    from huma_rt.runtime.preload import resolve_device

    resolve_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if bundle is not None:
        return out_dir, Path(bundle), "given"
    return (out_dir, *default_bundle(out_dir))


SESSIONS = (1, 2, 4, 8)  # the concurrent-session curve, quick and full


def session_seconds(quick: bool, seconds: float, k: int) -> float:
    """Audio each of ``k`` sessions streams: ``seconds``; quick mode shares it out (>= 1 s each)."""
    return max(1.0, seconds / k) if quick else seconds


def preload_fresh(bundle: Path, device: str, threads: int) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(bundle), device, str(threads)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"preload child failed: {proc.stderr[-2000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    rec["process_wall_s"] = wall
    return rec


def run_sessions(avatar, k: int, audio: np.ndarray) -> dict:
    times: list[dict[str, list[float]]] = [{} for _ in range(k)]
    sessions = [avatar.session() for _ in range(k)]
    w, h = avatar.size
    outs = [np.empty((h, w, 3), np.uint8) for _ in range(k)]  # the caller's frame buffers
    barrier = threading.Barrier(k + 1)

    def work(i: int) -> None:
        s, rec, out = sessions[i], times[i], outs[i]
        barrier.wait()
        for start in range(0, audio.size, 640):
            s.push_audio(audio[start : start + 640])
            t0 = time.perf_counter()
            for frame in s.frames():
                t1 = time.perf_counter()
                np.copyto(out, frame.rgb)  # a Frame's rgb is the session's buffer until the next
                t2 = time.perf_counter()
                for st, v in frame_stage_times(s).items():
                    rec.setdefault(st, []).append(v)
                rec.setdefault("output_copy", []).append(t2 - t1)
                rec.setdefault("frame", []).append(t2 - t0)
                t0 = time.perf_counter()
        s.finish()
        for _ in s.frames():
            pass

    threads = [threading.Thread(target=work, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for s in sessions:
        s.close()
    frames = sum(len(r.get("frame", ())) for r in times)
    row: dict = {"sessions": k, "audio_s": audio.size / 16000, "frames": frames, "fps_total": frames / wall,
                 "fps_per_session": frames / wall / k, "realtime_x": frames / wall / avatar.fps}  # fmt: skip
    for st in dict.fromkeys(name for r in times for name in r):
        s = stats_ms([x for r in times for x in r[st]])
        row.update({f"{st}_p50_ms": s["p50_ms"], f"{st}_p95_ms": s["p95_ms"], f"{st}_p99_ms": s["p99_ms"]})
    return row


def run(quick: bool, out_dir: Path, device: str = "cpu", bundle: Path | None = None, seconds: float | None = None,
        sessions: tuple[int, ...] | None = None, threads: int = 1) -> dict:  # fmt: skip
    """Measure and write ``runtime.json`` / ``runtime.md`` into ``out_dir``; returns the record."""
    from huma_rt.bench.suite import peak_rss_mb

    from huma_rt.runtime import Avatar
    out_dir, bundle, which = prepare(out_dir, device, bundle)
    seconds = seconds or (3.0 if quick else 20.0)
    # the scaling curve vs concurrent sessions (1..8), in quick mode too, with less audio each
    sessions = sessions or SESSIONS
    pre = preload_fresh(bundle, device, threads)
    pre_row = {"bundle_to_first_frame_ms": 1e3 * pre["bundle_to_first_frame_s"], "import_ms": 1e3 * pre["import_s"],
               "process_wall_ms": 1e3 * pre["process_wall_s"], **{f"{k}_ms": v for k, v in pre["phases_ms"].items()},
               "first_frame_ms": 1e3 * pre["first_frame_s"], "peak_rss_mb": pre["peak_rss_mb"]}  # fmt: skip
    write_result(out_dir, "runtime_preload", [pre_row], {"bundle": str(bundle)})
    rows = []
    avatar = Avatar.load(bundle, device=device, threads=threads)
    audio = speech_like(seconds)
    for k in sessions:
        rows.append(run_sessions(avatar, k, audio[: int(16000 * session_seconds(quick, seconds, k))]))
        rows[-1]["peak_rss_mb"] = peak_rss_mb()
    extra = {"bundle": str(bundle), "bundle_kind": which, "gaussians": pre["gaussians"], "dynamic": pre["dynamic"],
             "size": pre["size"], "renderer": pre["renderer"], "device": device, "threads": threads,
             "audio_s": seconds, "cpu_count": os.cpu_count(), "preload": pre_row}  # fmt: skip
    return write_result(out_dir, "runtime", rows, extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, help="bundle to measure (default: demo avatar, else synthetic)")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--seconds", type=float, default=None, help="audio per session (default 20; quick 3, shared out among K sessions, >= 1 s each)")
    p.add_argument("--sessions", type=int, nargs="+", default=None,
                   help="concurrent session counts (default 1 2 4 8)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime + renderer threads per session (0: library default)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rec = run(a.quick, a.out, device=a.device, bundle=a.bundle, seconds=a.seconds, sessions=tuple(a.sessions) if a.sessions else None,
              threads=a.threads)  # fmt: skip
    print((a.out / "runtime_preload.md").read_text())
    print((a.out / "runtime.md").read_text())
    print(f"bundle: {rec['bundle']} ({rec['bundle_kind']}, {rec['gaussians']} Gaussians, {rec['dynamic']} dynamic, "
          f"{rec['size'][0]}x{rec['size'][1]}, renderer {rec['renderer']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
