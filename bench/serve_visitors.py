"""Simultaneous visitors: what each page receives, and what each worker costs, at 1 and 4 visitors.

    python -m huma_rt.bench.serve_visitors [--visitors 1 4] [--idle-s 20] [--profile] [--out DIR]
        [--page-measure] [--shared-browser] [--chromium-arg=--SWITCH ...] [-- SERVE OPTIONS]

For each count N: one ``huma-rt serve --max-visitors N --warm N`` and N headless Chromium
processes (one browser per page: pages of one context are tabs and only the front one presents
video at full rate; ``--shared-browser``: one browser, a context (window) per page), each page's
microphone a loop of a spoken question, muted except when it is meant to talk. The pages run as
a visitor's page does; ``--page-measure`` opens them with ``?measure=1`` (the page then reads
every frame's pixels and the audio levels every 10 ms, as the latency benchmark and the tests
need: the pages' cost before that was made optional), and the page-side first frame/audio
columns are filled. Three phases, each measured per page from the deltas of
``RTCPeerConnection.getStats()`` (inbound-rtp) over the phase:

- ``idle``: ``--idle-s`` s, nobody talks;
- ``typed``: every page types a question at the same moment; until every answer has ended;
- ``spoken``: every page's microphone is unmuted at the same moment for one loop of the file
  (one question each), then muted; until every answer has ended.

Per page: received video fps (frames decoded / phase seconds), frames dropped, freezes (and
their seconds), ``framesPerSecond`` at the end; audio concealment (concealed / received
samples, concealment events, samples inserted to slow playout down). Per process: CPU % of each
worker, of the server, of all the Chromium processes together (on this machine the visitors'
browsers share the server's cores: a deployment does not pay for them) and of the Chromium
processes by type (renderer, gpu-process, utility:AudioService, ...; summed over the pages). With ``--profile``
(needs ``py-spy``) one worker is sampled in the idle and typed phases and its time is split by stage
(render, VP8 encode, Opus, TTS, ASR, VAD, ...).

Target (the issue): 1 and 4 visitors at 25 fps each with no audio concealment, 2 cores.
Writes ``serve_visitors.json`` and ``serve_visitors.md``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from huma_rt.bench import _proc
from huma_rt.bench._browser import (
    Browser,
    Page,
    Server,
    espeak,
    process_type,
    silence,
    tree_state,
    write_wav48,
)
from huma_rt.bench.common import markdown_table, write_result
from huma_rt.bench.serve_latency import REPLY, pct

log = logging.getLogger(__name__)

QUESTION = "What is the weather like today?"
# where a sampled stack spends its time: the first rule whose text appears in the stack wins
STAGE_RULES = (
    ("vp8 encode", ("codecs/vpx", "vpx.py")),
    ("opus encode", ("codecs/opus",)),
    ("tts", ("speech/tts", "piper", "espeak")),
    ("asr", ("speech/asr", "moonshine", "transcribe")),
    ("vad / end of turn", ("speech/vad", "vad.py", "speech/turns", "_listen_loop")),
    ("render + networks", ("huma_rt/runtime", "huma_rt/render", "idle_frames", "push_audio")),
    ("rtp/dtls/ice (aiortc)", ("aiortc", "aioice")),
    ("python event loop", ("asyncio",)),
)
# leaf frames where a thread waits (py-spy's idle detection misses some): left out of the split
WAITING = ("Condition.wait", "Event.wait", "select (selectors.py", "EpollSelector.select", "_worker (concurrent",
           "Queue.get", "sleep", "_wait_for_tstate_lock")


def _counts(stats: dict) -> dict:
    v, a = stats.get("video", {}), stats.get("audio", {})
    return {"t": stats["t"] / 1000.0, "decoded": v.get("frames_decoded") or 0, "dropped": v.get("frames_dropped") or 0,
            "received": v.get("frames_received") or 0,
            "freezes": v.get("freezes") or 0, "freeze_s": v.get("freeze_s") or 0.0, "fps_now": v.get("fps"),
            "samples": a.get("samples") or 0, "concealed": a.get("concealed") or 0,
            "events": a.get("concealment_events") or 0, "inserted": a.get("inserted_decel") or 0,
            "audio_jb_ms": a.get("jitter_buffer_ms"), "video_jb_ms": v.get("jitter_buffer_ms")}  # fmt: skip


def page_delta(before: dict, after: dict) -> dict:
    """What a page received between two ``receive_stats`` snapshots."""
    b, a = _counts(before), _counts(after)
    dt = max(1e-6, a["t"] - b["t"])
    samples = a["samples"] - b["samples"]
    return {"seconds": round(dt, 1), "fps": (a["decoded"] - b["decoded"]) / dt,
            "fps_received": (a["received"] - b["received"]) / dt, "fps_reported": a["fps_now"],
            "frames_dropped": a["dropped"] - b["dropped"], "freezes": a["freezes"] - b["freezes"],
            "freeze_s": round(a["freeze_s"] - b["freeze_s"], 2),
            "concealed_pct": 100.0 * (a["concealed"] - b["concealed"]) / samples if samples > 0 else None,
            "concealment_events": a["events"] - b["events"], "inserted_decel": a["inserted"] - b["inserted"],
            "audio_jb_ms": a["audio_jb_ms"], "video_jb_ms": a["video_jb_ms"]}  # fmt: skip


class CpuMeter:
    """CPU seconds of named process groups between ``start()`` and ``stop()`` (as % of one core).
    A group is (pids, with their descendants?): a browser's work is in its child processes; the
    server's children are the workers, counted on their own."""

    def __init__(self, groups: dict[str, tuple[list[int], bool]], by_type: list[int] | None = None) -> None:
        self.groups = groups
        self.by_type = by_type or []  # Chromium browser pids: their processes are also split by type

    def _now(self) -> dict[str, float]:
        out = {name: sum(_proc.cpu_seconds(p) for p in (_proc.descendants(pids) if deep else pids))
               for name, (pids, deep) in self.groups.items()}  # fmt: skip
        self._types = {p: process_type(p) for p in _proc.descendants(self.by_type)} if self.by_type else {}
        self._pid_s = {p: _proc.cpu_seconds(p) for p in self._types}
        return out

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), self._now()
        self._pid_s0 = self._pid_s

    def stop(self) -> dict[str, float | None]:
        """CPU % per group since ``start()``; None for a group whose first process has exited.
        With ``by_type``: also ``chromium <type>`` per Chromium process type (a process started
        in between counts from 0; one that exited in between is lost)."""
        dt, c1 = time.monotonic() - self.t0, self._now()
        out = {name: round(100.0 * (c1[name] - self.c0[name]) / dt, 1) if _proc.rss_mib(pids[0]) is not None
               else None for name, (pids, _) in self.groups.items()}  # fmt: skip
        typed = Counter()
        for pid, kind in self._types.items():
            typed[kind] += self._pid_s[pid] - self._pid_s0.get(pid, 0.0)
        out.update({f"chromium {k}": round(100.0 * v / dt, 1) for k, v in typed.most_common()})
        return out


def profile(pid: int, seconds: float, out: Path, tag: str = "") -> dict | None:
    """Sample ``pid`` with py-spy for ``seconds`` (active threads, native frames off) and split the
    samples by STAGE_RULES; None without py-spy. Runs in the caller's thread (blocking)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        log.warning("py-spy not installed: no per-stage profile")
        return None
    raw = out / f"profile-{pid}{tag}.txt"
    subprocess.run([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "50",
                    "--format", "raw", "--output", str(raw), "--nonblocking"],
                   capture_output=True, timeout=seconds + 60)  # fmt: skip
    if not raw.exists():
        return None
    by_stage, by_leaf, total, waiting = Counter(), Counter(), 0, 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or not stack.strip():
            continue
        if any(k in stack.split(";")[-1] for k in WAITING):
            waiting += int(n)
            continue
        total += int(n)
        stage = next((name for name, keys in STAGE_RULES if any(k in stack for k in keys)), "other")
        by_stage[stage] += int(n)
        by_leaf[stack.split(";")[-1][:120]] += int(n)
    if not total:
        return None
    return {"samples": total, "waiting_samples_left_out": waiting, "stages_pct": {k: round(100.0 * v / total, 1) for k, v in by_stage.most_common()},
            "top_leaves_pct": {k: round(100.0 * v / total, 1) for k, v in by_leaf.most_common(12)}}  # fmt: skip


def _wait_all(pages: list[Page], expr: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    for i, p in enumerate(pages):
        p.wait(expr, max(1.0, deadline - time.monotonic()), f"page {i + 1}: {what}")


def _answers_done(pages: list[Page], counts: list[int], timeout: float) -> list[bool]:
    """Until every page has a new answer that has ended (its count of ended answers grew) and
    none is still playing; per page whether it got one (a question cut to a fragment by the
    mute may be recognised as nothing: no answer, recorded rather than raised)."""
    done, deadline = [], time.monotonic() + timeout
    for i, (p, n) in enumerate(zip(pages, counts, strict=True)):
        try:
            p.wait(f"huma.events.filter(e => e.type === 'answer_end').length > {n} && "
                   "huma.events.filter(e => e.type === 'answer_start').every(s => "
                   "huma.events.some(e => e.type === 'answer_end' && e.turn === s.turn))",
                   max(1.0, deadline - time.monotonic()), f"page {i + 1}'s answer to end")  # fmt: skip
            done.append(True)
        except AssertionError as exc:
            log.warning("%s", str(exc)[:300])
            done.append(False)
    return done


def measure(n: int, wav: Path, loop_s: float, idle_s: float, work: Path, do_profile: bool,
            serve_args: tuple[str, ...] = (), phases: tuple[str, ...] = ("idle", "typed", "spoken"), *,
            page_measure: bool = False, shared_browser: bool = False, chromium_args: tuple[str, ...] = ()) -> list[dict]:  # fmt: skip
    """The ``phases`` with ``n`` visitors; one row per (phase, page) plus one per phase for CPU
    (with the worker's process CPU seconds per frame sent, ``cpu_ms_per_frame``). page_measure:
    pages with ``?measure=1``; shared_browser: one Chromium, a context per page; chromium_args:
    more Chromium switches."""
    from playwright.sync_api import sync_playwright

    rows = []
    srv = Server("--max-visitors", str(n), "--warm", str(n), "--responder", "scripted", "--reply", REPLY,
                 "--idle-timeout", "600", *serve_args, ready_workers=n, timeout=300)  # fmt: skip
    try:
        with sync_playwright() as pw:
            pages: list[Page] = []
            shared = Browser(pw, wav, chromium_args) if shared_browser else None
            try:
                for _ in range(n):
                    pages.append(Page(pw, srv.url, wav, measure=page_measure, browser=shared,
                                      extra_args=() if shared else chromium_args))  # fmt: skip
                    pages[-1].start()
                    pages[-1].js("huma.setMic(false)")
                time.sleep(loop_s + 3.0)  # whatever the microphones said before the mute is answered
                for p in pages:
                    p.wait("huma.events.filter(e => e.type === 'answer_start').every(s => "
                           "huma.events.some(e => e.type === 'answer_end' && e.turn === s.turn))", 60, "quiet")  # fmt: skip
                workers = [int(p.js("huma.worker")) for p in pages]
                groups = {f"worker {i + 1}": ([w], False) for i, w in enumerate(workers)}
                groups["server"] = ([srv.proc.pid], False)
                browsers = sorted({pid for p in pages for pid in p.browser_pids()})
                groups["chromium (all pages)"] = (browsers, True)
                meter = CpuMeter(groups, by_type=browsers)
                for phase in phases:
                    before = [p.receive_stats() for p in pages]
                    counts = [len(p.events("answer_end")) for p in pages]
                    load0 = os.getloadavg()[0]
                    meter.start()
                    prof, answered = None, [None] * n
                    if phase == "idle":
                        with ThreadPoolExecutor(1) as ex:  # py-spy samples the idle worker
                            fut = ex.submit(profile, workers[0], min(6.0, idle_s), work, f"-{n}-idle") if do_profile else None
                            time.sleep(idle_s)
                            prof = fut.result() if fut else None
                    elif phase == "typed":
                        for i, p in enumerate(pages):  # as close together as one evaluate each allows
                            p.js(f"huma.ask('Question number {i + 1}?')")
                        with ThreadPoolExecutor(1) as ex:  # py-spy samples while the answers play
                            fut = ex.submit(profile, workers[0], 6.0, work, f"-{n}-typed") if do_profile else None
                            answered = _answers_done(pages, counts, 120)
                            prof = fut.result() if fut else None
                    else:
                        for p in pages:
                            p.js("huma.setMic(true)")
                        time.sleep(loop_s)
                        for p in pages:
                            p.js("huma.setMic(false)")
                        answered = _answers_done(pages, counts, 120)
                    seconds = time.monotonic() - meter.t0
                    cpu = meter.stop()
                    after = [p.receive_stats() for p in pages]
                    fps = 25.0  # the worker sends one frame per 40 ms: CPU per frame = CPU % / 100 / fps
                    per_frame = {f"{k} ms/frame": round(10.0 * v / fps, 2) for k, v in cpu.items()
                                 if k.startswith("worker") and v is not None}  # fmt: skip
                    for i, (b, a) in enumerate(zip(before, after, strict=True)):
                        lat = [t for t in pages[i].js("huma.latency()") if t["end"] >= b["t"]]
                        rows.append({"visitors": n, "phase": phase, "page": i + 1, "pc": pages[i].js("huma.pcState || pc.connectionState"),
                                     "answered": answered[i], **page_delta(b, a),
                                     "first_frame_ms": pct([t["frame_ms"] for t in lat], 50),
                                     "first_audio_ms": pct([t["audio_ms"] for t in lat], 50)})  # fmt: skip
                    # the browsers' CPU per frame the pages decoded: comparable across loads that
                    # let the pages decode fewer frames (CPU % alone falls with the frame rate)
                    decoded = sum(r["fps"] for r in rows[-n:])
                    if decoded > 0 and cpu.get("chromium (all pages)") is not None:
                        per_frame["chromium ms/frame decoded"] = round(10.0 * cpu["chromium (all pages)"] / decoded, 2)
                    rows.append({"visitors": n, "phase": phase, "page": "cpu %", **cpu, **per_frame,
                                 "seconds": round(seconds, 1), "load_1min": load0,
                                 **({"profile_worker_1": prof} if prof else {})})  # fmt: skip
            finally:
                for p in pages:
                    p.close()
                if shared is not None:
                    shared.close()
    finally:
        srv.close()
    return rows


def run(quick: bool, out_dir: Path, visitors: tuple[int, ...] = (1, 4), idle_s: float | None = None,
        do_profile: bool = False, serve_args: tuple[str, ...] = (), page_measure: bool = False,
        shared_browser: bool = False, chromium_args: tuple[str, ...] = (),
        phases: tuple[str, ...] = ("idle", "typed", "spoken")) -> dict:  # fmt: skip
    """Measure each visitor count in ``visitors`` (quick: 10 s idle); the pages and phases as in ``measure``."""
    idle_s = idle_s if idle_s is not None else (10.0 if quick else 20.0)
    work = Path(tempfile.mkdtemp(prefix="huma-serve-visitors-"))
    q = espeak(QUESTION, work / "q16.wav")
    pcm = np.concatenate([silence(0.3), q, silence(1.2)])
    wav, loop_s = write_wav48(work / "mic.wav", pcm), pcm.size / 16000
    tree, rows, loads = tree_state(), [], [os.getloadavg()]
    for n in visitors:
        rows += measure(n, wav, loop_s, idle_s, work, do_profile, serve_args, phases, page_measure=page_measure,
                        shared_browser=shared_browser, chromium_args=chromium_args)  # fmt: skip
        loads.append(os.getloadavg())
    profiles = {f"{r['visitors']} visitors, {r['phase']}": r.pop("profile_worker_1") for r in rows if "profile_worker_1" in r}
    page_rows = [r for r in rows if r["page"] != "cpu %"]
    cpu_rows = [r for r in rows if r["page"] == "cpu %"]
    record = write_result(out_dir, "serve_visitors", page_rows,
                          {"cpu": cpu_rows, "profiles": profiles, "load_avg": [list(x) for x in loads], "tree": tree,
                           "idle_s": idle_s, "question": QUESTION, "reply": REPLY, "serve_args": list(serve_args),
                           "page_measure": page_measure, "shared_browser": shared_browser,
                           "chromium_args": list(chromium_args), "phases": list(phases)})  # fmt: skip
    with open(Path(out_dir) / "serve_visitors.md", "a") as f:
        f.write("\nCPU (% of one core; 2 cores = 200 %) per phase:\n\n" + markdown_table(cpu_rows))
        for name, prof in profiles.items():
            f.write(f"\nWorker 1 profile, {name} phase (py-spy, share of busy samples):\n\n"
                    + markdown_table([{"stage": k, "pct": v} for k, v in prof["stages_pct"].items()])
                    + "\n" + markdown_table([{"leaf": k, "pct": v} for k, v in prof["top_leaves_pct"].items()]))  # fmt: skip
        f.write(f"\nLoad average (1, 5, 15 min) at start and after each count: {loads}\n")
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--idle-s", type=float, default=None, help="idle phase length (default 20 s; quick 10)")
    ap.add_argument("--profile", action="store_true", help="py-spy one worker in the idle and typed phases")
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--page-measure", action="store_true",
                    help="pages with ?measure=1: per-frame pixels and 10 ms audio levels (the tests' and latency bench's page)")
    ap.add_argument("--phases", nargs="+", choices=("idle", "typed", "spoken"), default=["idle", "typed", "spoken"])
    ap.add_argument("--shared-browser", action="store_true", help="one Chromium, a context (window) per page")
    ap.add_argument("--chromium-arg", action="append", default=[], metavar="SWITCH",
                    help="one more Chromium switch (repeatable; write --chromium-arg=--switch)")
    ap.add_argument("serve_args", nargs="*", help="extra huma-rt serve options (after --), e.g. -- --media frames")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    record = run(a.quick, a.out, visitors=tuple(a.visitors), idle_s=a.idle_s, do_profile=a.profile,
                 serve_args=tuple(a.serve_args), page_measure=a.page_measure, shared_browser=a.shared_browser,
                 chromium_args=tuple(a.chromium_arg), phases=tuple(a.phases))  # fmt: skip
    print(markdown_table(record["results"]))
    print(markdown_table(record["cpu"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
