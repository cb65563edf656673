"""Soak benchmark: many sessions of one Avatar streaming in parallel for a long time.

Each of ``--sessions`` sessions (its own thread) streams ``--seconds`` of speech-like audio in
random chunk sizes (1..4000 samples) as fast as it can, and every frame is checked as it comes:

- frames lost: indices must run 0, 1, 2, ... with no gap or repeat, and ``finish()`` must end
  with ceil(samples / 640) frames in all;
- A/V drift: a frame's sample span must be [640 i, 640 (i + 1)) and its pts i / fps; after every
  push, the frames out must be exactly those whose audio plus lookahead has arrived (a frame
  held back or given early is drift, counted in frames);
- memory: a sampler thread reads the process's resident memory every ``--sample-s`` seconds;
  "flat" is judged on the second half of the run (after warm-up): the slope of a fitted line in
  MiB per minute and the growth from its first to its last sample;
- latency over time: frame time p50/p95 per tenth of the run (it must not grow either).

Targets: 0 lost, 0 drift, RSS flat. Full: 8 sessions x 600 s (about 20 minutes on 2 cores with
the demo avatar); quick: 8 sessions x 15 s.

    python -m huma_rt.bench.soak [--sessions 8] [--seconds 600] [--bundle B] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from huma_rt.bench.common import markdown_table, stats_ms, write_result
from huma_rt.bench.runtime import prepare, speech_like

log = logging.getLogger(__name__)

LOOP_S = 20.0  # the audio each session streams is a 20 s clip, looped from a per-session offset
MAX_CHUNK = 4000


def rss_mib() -> float:
    """Resident memory of this process now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmRSS in /proc/self/status")


@dataclass
class SessionLog:
    """What one session saw: counts of each kind of fault and its frame times with their clock."""

    frames: int = 0
    expected: int = 0
    lost: int = 0  # gaps and repeats in the index sequence, plus a short or long total
    span_errors: int = 0  # frames whose sample span or pts is not the one of their index
    drift_frames: int = 0  # largest |frames out - frames whose audio + lookahead arrived|, after a push
    # preallocated (one slot per expected frame) so the harness itself does not grow the RSS it measures
    frame_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_at: np.ndarray = field(default_factory=lambda: np.zeros(0))  # seconds since the soak started


def stream_one(session, audio: np.ndarray, offset: int, total: int, seed: int, t_start: float, out: SessionLog,
               lookahead: int, spf: int, fps: int) -> None:  # fmt: skip
    """Stream ``total`` samples of the looped ``audio`` from ``offset`` into ``session``, checking every frame."""
    rng = np.random.default_rng(seed)
    out.expected = math.ceil(total / spf)
    out.frame_s, out.frame_at = np.zeros(out.expected + 1), np.zeros(out.expected + 1)
    timed = 0
    sizes = rng.integers(1, MAX_CHUNK + 1, size=1024)  # drawn 1024 at a time: bounded memory
    loop = np.concatenate([audio, audio[:MAX_CHUNK]])  # a chunk never has to wrap around
    pushed, pos, want, k = 0, offset % audio.size, 0, 0

    def take(frame) -> None:
        nonlocal want
        if frame.index != want:
            out.lost += abs(frame.index - want)
        if (frame.sample_start, frame.sample_end) != (spf * frame.index, spf * (frame.index + 1)) or \
                frame.pts != frame.index / fps:  # fmt: skip
            out.span_errors += 1
        want = frame.index + 1
        out.frames += 1

    def drain() -> None:
        nonlocal timed
        t0 = time.perf_counter()
        for frame in session.frames():
            t1 = time.perf_counter()
            take(frame)
            if timed < out.frame_s.size:
                out.frame_s[timed], out.frame_at[timed] = t1 - t0, t1 - t_start
                timed += 1
            t0 = time.perf_counter()

    while pushed < total:
        if k == sizes.size:
            sizes, k = rng.integers(1, MAX_CHUNK + 1, size=1024), 0
        n = int(min(sizes[k], total - pushed))
        k += 1
        session.push_audio(loop[pos : pos + n])
        pushed += n
        pos = (pos + n) % audio.size
        drain()
        ready = max(0, (pushed - lookahead) // spf)
        out.drift_frames = max(out.drift_frames, abs(want - ready))
    session.finish()
    drain()
    out.frame_s, out.frame_at = out.frame_s[:timed], out.frame_at[:timed]
    out.lost += abs(out.expected - want)


def python_heap_mib() -> float | None:
    """Memory held by Python objects now (tracemalloc, when tracing), MiB."""
    import tracemalloc

    return tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None


def sample_rss(stop: threading.Event, every_s: float, t_start: float, samples: list[tuple[float, float]],
               logs: list[SessionLog], expected: int, report_s: float,
               heap: list[tuple[float, float]] | None = None) -> None:  # fmt: skip
    """Append (seconds, RSS MiB) every ``every_s`` until ``stop`` (and the Python heap to ``heap``
    when tracemalloc traces); log progress every ``report_s``."""
    last_report = 0.0
    while True:
        now = time.perf_counter() - t_start
        samples.append((now, rss_mib()))
        if heap is not None:
            heap.append((now, python_heap_mib()))
        if now - last_report >= report_s:
            last_report = now
            done = sum(g.frames for g in logs)
            eta = now * (expected - done) / done if done else float("nan")
            log.info("soak: %d/%d frames (%.0f %%), RSS %.0f MiB, %.0f s in, ETA %.0f s",
                     done, expected, 100 * done / expected, samples[-1][1], now, eta)  # fmt: skip
        if stop.wait(every_s):
            samples.append((time.perf_counter() - t_start, rss_mib()))
            return


def rss_trend(samples: list[tuple[float, float]]) -> dict:
    """Second half of the run: slope (MiB/min) of a fitted line and growth first -> last sample."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3:
        return {"rss_slope_mib_per_min": None, "rss_growth_second_half_mib": None}
    t = np.array([s[0] for s in half]) / 60.0
    r = np.array([s[1] for s in half])
    slope = float(np.polyfit(t, r, 1)[0]) if np.ptp(t) > 0 else 0.0
    return {"rss_slope_mib_per_min": slope, "rss_growth_second_half_mib": float(r[-1] - r[0])}


def latency_by_tenth(logs: list[SessionLog], duration: float) -> list[dict]:
    """Frame time p50/p95 (all sessions) in each tenth of the run's wall time."""
    at = np.concatenate([g.frame_at for g in logs]) if logs else np.zeros(0)
    dt = np.concatenate([g.frame_s for g in logs]) if logs else np.zeros(0)
    rows = []
    for i in range(10):
        lo, hi = duration * i / 10, duration * (i + 1) / 10
        sel = dt[(at >= lo) & (at < hi)] if i < 9 else dt[at >= lo]
        if sel.size:
            s = stats_ms(sel)
            rows.append({"tenth": i + 1, "from_s": round(lo, 1), "frames": int(sel.size),
                         "frame_p50_ms": s["p50_ms"], "frame_p95_ms": s["p95_ms"]})  # fmt: skip
    return rows


def run(quick: bool, out_dir: Path, device: str = "cpu", bundle: Path | None = None, sessions: int = 8,
        seconds: float | None = None, threads: int = 1, sample_s: float | None = None,
        trace_python: bool = False) -> dict:  # fmt: skip
    """Soak ``sessions`` parallel sessions for ``seconds`` of audio each; write ``soak.json``/``.md``.

    trace_python: also record the Python heap (tracemalloc, started after preload) beside the
    RSS, to tell growth of Python objects from growth below them (allocators, native buffers).
    """
    from huma_rt.runtime import Avatar
    out_dir, bundle, which = prepare(out_dir, device, bundle)
    seconds = seconds or (15.0 if quick else 600.0)
    sample_s = sample_s or (0.5 if quick else 5.0)
    avatar = Avatar.load(bundle, device=device, threads=threads)
    spf, fps, lookahead = avatar.sample_rate // avatar.fps, avatar.fps, avatar.lookahead_samples
    audio = speech_like(LOOP_S)
    total = int(round(seconds * avatar.sample_rate))
    live = [avatar.session() for _ in range(sessions)]
    logs = [SessionLog() for _ in range(sessions)]
    rss: list[tuple[float, float]] = []
    heap: list[tuple[float, float]] | None = [] if trace_python else None
    if trace_python:
        import tracemalloc

        tracemalloc.start()
    stop = threading.Event()
    t_start = time.perf_counter()
    expected = sessions * math.ceil(total / spf)
    sampler = threading.Thread(target=sample_rss, args=(stop, sample_s, t_start, rss, logs, expected,
                                                        5.0 if quick else 30.0, heap), daemon=True)  # fmt: skip
    sampler.start()
    workers = [
        threading.Thread(target=stream_one, args=(live[i], audio, i * 7919, total, i, t_start, logs[i], lookahead, spf, fps))
        for i in range(sessions)
    ]  # fmt: skip
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    duration = time.perf_counter() - t_start
    stop.set()
    sampler.join()
    for s in live:
        s.close()
    frames = sum(g.frames for g in logs)
    s_all = stats_ms(np.concatenate([g.frame_s for g in logs]))
    row = {
        "sessions": sessions, "audio_s_each": seconds, "frames": frames, "expected": sum(g.expected for g in logs),
        "frames_lost": sum(g.lost for g in logs), "span_errors": sum(g.span_errors for g in logs),
        "drift_frames_max": max(g.drift_frames for g in logs), "wall_s": duration, "fps_total": frames / duration,
        "frame_p50_ms": s_all["p50_ms"], "frame_p95_ms": s_all["p95_ms"], "frame_p99_ms": s_all["p99_ms"],
        "rss_start_mib": rss[0][1], "rss_end_mib": rss[-1][1], "rss_max_mib": max(r for _, r in rss),
        **rss_trend(rss),
    }  # fmt: skip
    extra = {"bundle": str(bundle), "bundle_kind": which, "device": device, "threads": threads,
             "size": list(avatar.size), "rss_samples": [[round(t, 2), round(r, 1)] for t, r in rss],
             "latency_by_tenth": latency_by_tenth(logs, duration)}  # fmt: skip
    if heap is not None:
        import tracemalloc

        tracemalloc.stop()
        extra["python_heap_samples"] = [[round(t, 2), round(h, 2)] for t, h in heap]
        row["python_heap_start_mib"], row["python_heap_end_mib"] = heap[0][1], heap[-1][1]
    record = write_result(out_dir, "soak", [row], extra)
    with open(out_dir / "soak.md", "a") as f:
        f.write("\nFrame time by tenth of the run (all sessions):\n\n" + markdown_table(extra["latency_by_tenth"]))
    plot_rss(rss, out_dir / "soak_rss.png", f"{sessions} sessions x {seconds:.0f} s, {which} avatar")
    return record


def plot_rss(rss: list[tuple[float, float]], path: Path, title: str, ylabel: str = "resident memory (MiB)") -> None:
    """Resident memory (MiB) against minutes, as a PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib missing: no %s", path.name)
        return
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.plot([t / 60 for t, _ in rss], [r for _, r in rss])
    ax.set_xlabel("minutes")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, help="bundle to soak (default: demo avatar, else synthetic)")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--sessions", type=int, default=8)
    p.add_argument("--seconds", type=float, default=None, help="audio each session streams (default 600; quick 15)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime + renderer threads per session")
    p.add_argument("--sample-s", type=float, default=None, help="RSS sampling period (default 5 s; quick 0.5 s)")
    p.add_argument("--trace-python", action="store_true", help="also sample the Python heap (tracemalloc)")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run(a.quick, a.out, device=a.device, bundle=a.bundle, sessions=a.sessions, seconds=a.seconds,
        threads=a.threads, sample_s=a.sample_s, trace_python=a.trace_python)  # fmt: skip
    print((a.out / "soak.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
