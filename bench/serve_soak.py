"""Serving soak: one visitor's conversation (or a silent / noisy microphone) for many minutes.

    python -m huma_rt.bench.serve_soak [--minutes 30] [--mic question|silence|noise] [--out DIR]

One ``huma-rt serve`` (scripted responder, default ASR), one headless Chromium. With
``--mic question`` its microphone loops 0.5 s quiet, a spoken question and quiet, so a question
comes every ``--every`` s (12 by default) and is answered; with ``silence`` it sends digital
silence; with ``noise`` synthetic noise (``--noise white|pink|babble``, ``--noise-rms``). The
visit's idle timeout is set past the run, so only a fault ends it.

Every ``--sample-s`` s (5) it reads the worker's resident memory and CPU seconds from /proc;
every 30 s the page's receive counters. At the end it takes every turn the page measured (end of
speech -> first answer frame / audio) with the server's stage times, and the page's events.

Verdict, on the second half of the run (after warm-up: caches, the allocator's arenas):

- memory: ``rss_slope_mib_per_10min`` (a line fitted to the worker's RSS) must stay under
  ``--max-slope`` (1 MiB per 10 min by default). A conversation here has ~50 turns per 10 min, so
  a leak of ~20 KiB per turn (one 512x512 frame is 768 KiB) would cross it; RSS sampling noise
  and glibc's arena steps are below it once the run is past its first half;
- latency: the slope of the first-frame latency over turns (ms per 10 min) is reported beside
  the p50 of each tenth of the run (judged by eye: a loaded shared machine moves it by 100s of ms);
- silence / noise: the counts of turns started, utterances heard (with and without text),
  barge-ins and errors; a turn must never start without recognised text.

Writes ``serve_soak.json`` and ``serve_soak.md`` (and ``serve_soak_rss.png`` with matplotlib).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from huma_rt.bench import _proc
from huma_rt.bench._browser import Page, Server, noise, silence, tree_state, write_wav48
from huma_rt.bench.common import markdown_table, write_result
from huma_rt.bench.serve_latency import REPLY, page_turns, pct, question_wav, stage_names
from huma_rt.bench.soak import plot_rss

log = logging.getLogger(__name__)


def slope_per_10min(t_s, values) -> float | None:
    """Slope of a line fitted to (t_s, values), in value units per 10 minutes."""
    t, v = np.asarray(t_s, float), np.asarray(values, float)
    ok = np.isfinite(v)
    if ok.sum() < 3 or np.ptp(t[ok]) <= 0:
        return None
    return float(np.polyfit(t[ok] / 600.0, v[ok], 1)[0])


def mic_wav(work: Path, mic: str, every: float, kind: str, rms: float) -> Path:
    """The fake microphone's looping file for ``mic`` (question every ``every`` s, silence, noise)."""
    if mic == "question":
        probe, loop = question_wav(work, 0.0)
        return question_wav(work, max(3.0, every - loop))[0]
    if mic == "silence":
        return write_wav48(work / "mic.wav", silence(10.0))
    return write_wav48(work / "mic.wav", noise(kind, 30.0, rms=rms))


def by_tenth(turns: list[dict], t_run: float) -> list[dict]:
    """First-frame and first-audio p50 of the turns in each tenth of the run (by when they ended)."""
    rows = []
    for i in range(10):
        lo, hi = t_run * i / 10, t_run * (i + 1) / 10
        sel = [t for t in turns if lo <= t["at_s"] < hi]
        if sel:
            rows.append({"tenth": i + 1, "from_min": round(lo / 60, 1), "turns": len(sel),
                         "frame_p50_ms": pct([t["frame_ms"] for t in sel], 50),
                         "audio_p50_ms": pct([t["audio_ms"] for t in sel], 50),
                         "first_frame_server_p50_ms": pct([t.get("server", {}).get("first_frame") for t in sel], 50)})  # fmt: skip
    return rows


def run(quick: bool, out_dir: Path, minutes: float | None = None, mic: str = "question", every: float = 12.0,
        noise_kind: str = "babble", noise_rms: float = 0.05, sample_s: float = 5.0, max_slope: float = 1.0,
        arena_max: int | None = None) -> dict:  # fmt: skip
    """Soak one visit for ``minutes`` (quick: 1) with the microphone ``mic``; see the module doc."""
    from playwright.sync_api import sync_playwright

    minutes = minutes if minutes is not None else (1.0 if quick else 30.0)
    seconds = 60.0 * minutes
    work = Path(tempfile.mkdtemp(prefix="huma-serve-soak-"))
    wav = mic_wav(work, mic, every, noise_kind, noise_rms)
    load, tree = [os.getloadavg()], tree_state()
    srv = Server("--max-visitors", "1", "--warm", "1", "--responder", "scripted", "--reply", REPLY,
                 "--idle-timeout", str(seconds + 300),
                 env={"MALLOC_ARENA_MAX": str(arena_max)} if arena_max else None)  # fmt: skip
    samples, receive, health_end = [], [], None
    try:
        with sync_playwright() as p:
            page = Page(p, srv.url, wav)
            try:
                page.start()
                pid = int(page.js("huma.worker"))
                page_t0 = page.js("performance.now()")
                t0 = time.monotonic()
                next_stats = 0.0
                while (el := time.monotonic() - t0) < seconds:
                    samples.append([round(el, 2), _proc.rss_mib(pid), _proc.cpu_seconds(pid), os.getloadavg()[0]])
                    if samples[-1][1] is None:
                        raise RuntimeError(f"the worker {pid} exited after {el:.0f} s:\n{srv.tail()}")
                    if el >= next_stats:
                        receive.append({"at_s": round(el, 1), **page.receive_stats()})
                        next_stats += 30.0
                    time.sleep(sample_s)
                lat, server = page_turns(page, with_av_lag=False)
                events = page.js("huma.events.map(e => [e.type, e.turn ?? null, e.text ?? null, e.cut ?? null])")
                errors = page.js("huma.errors")
                state = page.js("huma.state")
            finally:
                page.close()
        health_end = srv.wait_health(lambda h: h["visitors"] == 0, 30, "the visit to end")
    finally:
        srv.close()
    load.append(os.getloadavg())
    for t in lat:
        t["at_s"] = (t["end"] - page_t0) / 1000.0
        t["server"] = server.get(t["turn"], {})
    spoken = [t for t in lat if t["source"] == "speech"][1:]  # the first may start mid-question
    t_s = [s[0] for s in samples]
    rss = [s[1] for s in samples]
    half = len(samples) // 2
    rss_slope = slope_per_10min(t_s[half:], rss[half:])
    cpu = [s[2] for s in samples]
    heard = [e for e in events if e[0] == "heard"]
    started = {e[1] for e in events if e[0] == "answer_start"}
    with_text = {e[1] for e in heard if e[1] is not None and e[2]}
    row = {
        "mic": mic if mic != "noise" else f"noise ({noise_kind}, rms {noise_rms})", "minutes": round(seconds / 60, 1),
        "state_at_end": state, "turns_answered": len(started), "turns_measured": len(spoken),
        "heard_with_text": len(with_text), "heard_without_text": len([e for e in heard if not e[2]]),
        "turns_without_text": len(started - with_text), "barge_ins": len([e for e in events if e[0] == "barge_in"]),
        "errors": len(errors), "rss_start_mib": rss[0], "rss_mid_mib": rss[half], "rss_end_mib": rss[-1],
        "rss_max_mib": max(rss), "rss_slope_mib_per_10min": rss_slope,
        "worker_cpu_pct": 100.0 * (cpu[-1] - cpu[0]) / max(1e-9, t_s[-1] - t_s[0]),
        "frame_p50_ms": pct([t["frame_ms"] for t in spoken], 50), "frame_p95_ms": pct([t["frame_ms"] for t in spoken], 95),
        "audio_p50_ms": pct([t["audio_ms"] for t in spoken], 50),
        "frame_slope_ms_per_10min": slope_per_10min([t["at_s"] for t in spoken], [t["frame_ms"] for t in spoken]),
        "load_start": load[0][0], "load_max": max(s[3] for s in samples), "load_end": load[-1][0],
    }  # fmt: skip
    row["rss_flat"] = rss_slope is not None and rss_slope < max_slope
    row["pass"] = row["rss_flat"] and row["turns_without_text"] == 0 and row["errors"] == 0 and state == "connected" \
        and (mic != "question" or len(spoken) >= 0.5 * seconds / every)  # fmt: skip
    stage_p50 = {k: pct([t["server"].get(k) for t in spoken], 50) for k in stage_names(server)}
    extra = {"max_slope_mib_per_10min": max_slope, "every_s": every, "samples": samples, "receive": receive,
             "turns": spoken, "by_tenth": by_tenth(spoken, seconds), "server_stages_p50": stage_p50,
             "errors_seen": errors[:20], "health_end": health_end, "load_avg": [list(x) for x in load], "tree": tree,
             "malloc_arena_max": arena_max}  # fmt: skip
    name = ("serve_soak" if mic == "question" else f"serve_soak_{mic}") + (f"_arena{arena_max}" if arena_max else "")
    record = write_result(out_dir, name, [row], extra)
    with open(Path(out_dir) / f"{name}.md", "a") as f:
        if extra["by_tenth"]:
            f.write("\nSpoken turns by tenth of the run (p50, ms):\n\n" + markdown_table(extra["by_tenth"]))
        f.write(f"\nServer stages p50 (ms after the last speech sample): {stage_p50}\n")
        f.write(f"\nPage receive counters, first and last: {receive[:1] + receive[-1:]}\n")
    plot_rss([(s[0], s[1]) for s in samples], Path(out_dir) / f"{name}_rss.png",
             f"huma-rt serve worker, mic {row['mic']}", ylabel="worker resident memory (MiB)")  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=None, help="length of the visit (default 30; quick 1)")
    ap.add_argument("--mic", choices=("question", "silence", "noise"), default="question")
    ap.add_argument("--every", type=float, default=12.0, help="seconds between spoken questions (--mic question)")
    ap.add_argument("--noise", choices=("white", "pink", "babble"), default="babble", help="synthetic noise kind")
    ap.add_argument("--noise-rms", type=float, default=0.05, help="noise level (RMS of full scale 1.0)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS / CPU sampling period")
    ap.add_argument("--max-slope", type=float, default=1.0, help="RSS slope (MiB per 10 min) that fails the run")
    ap.add_argument("--malloc-arena-max", type=int, default=None,
                    help="MALLOC_ARENA_MAX for the server and its workers (glibc's per-thread arenas; see bench/README.md)")
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    record = run(a.quick, a.out, minutes=a.minutes, mic=a.mic, every=a.every, noise_kind=a.noise,
                 noise_rms=a.noise_rms, sample_s=a.sample_s, max_slope=a.max_slope, arena_max=a.malloc_arena_max)  # fmt: skip
    print(markdown_table(record["results"]))
    return 0 if record["results"][0]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
