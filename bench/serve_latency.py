"""Served conversation latency as the page sees it: one visitor in a real headless Chromium.

    python -m huma_rt.bench.serve_latency [--turns 8] [--typed 5] [--out bench-results]

Starts ``huma-rt serve`` (scripted responder, the default ASR) and one headless Chromium whose
microphone loops a WAV: 0.5 s quiet, a question (espeak-ng), 9 s quiet (under load an answer
starts seconds late, and a question that comes back over it cuts it: barge-in). Per spoken
turn, from the end of the question in the microphone (the page's own level meter on its track)
to the first answer frame presented (requestVideoFrameCallback; the first frame whose pixels
move) and to the first answer audio (the level of the avatar's voice in the page's audio graph,
plus the graph's output latency: when it is heard); then typed questions
(microphone muted), from the send to the same two. A/V = frame - audio as the page sees it, at
the first frame (av_ms) and over each answer's first 1.5 s (av_lag_ms, cross-correlation).
Beside them the server's stage times (ms from the last speech sample's arrival at the worker,
whatever stages the running server reports), the page's receive statistics and the load
average. The first spoken turn is dropped (the microphone may start mid-question). Writes
``serve_latency.json`` and ``serve_latency.md``.

A/B of code without a command-line option (e.g. the media clock's slack): ``--tree DIR`` runs the
server and its workers on ``DIR/huma_rt`` (a copy of the package, e.g. ``git archive HEAD
huma_rt | tar -x -C DIR`` and one edit); alternate the arms, the machine's load moves the figures
more than most changes do.
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
from huma_rt.bench._browser import Page, Server, espeak, silence, tree_state, write_wav48
from huma_rt.bench.common import markdown_table, write_result

log = logging.getLogger(__name__)

QUESTION = "What is the weather like today in Paris?"
REPLY = "Sure, it is sunny and warm."


def stage_names(server: dict[int, dict]) -> list[str]:
    """The server's stage names in the order it reports them (they change with the server:
    e.g. ``vad_end`` became ``end_of_turn``), each once."""
    return list(dict.fromkeys(k for ms in server.values() for k in ms))
PAGE_KEYS = ("frame_ms", "audio_ms", "av_ms", "av_lag_ms", "to_server_ms", "server_to_frame_ms", "server_to_audio_ms")


def pct(values, q: float) -> float | None:
    """Percentile ``q`` of the values that are not None; None when there are none."""
    v = [x for x in values if x is not None]
    return float(np.percentile(v, q)) if v else None


def av_lag_ms(frames: np.ndarray, levels: np.ndarray, t0: float, t1: float, max_lag: int = 300) -> float | None:
    """The lag (ms, > 0: video later) that best lines up the mouth's opening (``frames`` [N, >=6]:
    page ms, ..., opening against the rest pose in column 5) with the loudness of the avatar's
    voice (``levels`` [M, 3]: page ms when the voice is heard, mic RMS, voice RMS) over [t0, t1) of page time: the A/V
    offset over a whole answer, not just its first frame (which the model draws ahead of the
    sound: its lookahead)."""
    grid = np.arange(t0, t1, 10.0)
    if grid.size < 50 or frames.ndim != 2 or frames.shape[1] < 6 or levels.ndim != 2:
        return None
    video = np.interp(grid, frames[:, 0], frames[:, 5])
    audio = np.convolve(np.interp(grid, levels[:, 0], levels[:, 2]), np.ones(4) / 4, mode="same")
    v, a = video - video.mean(), audio - audio.mean()
    if v.std() < 1e-6 or a.std() < 1e-6:
        return None
    n, best, lag = grid.size, -2.0, None
    for k in range(-max_lag // 10, max_lag // 10 + 1):
        x, y = (v[k:], a[: n - k]) if k >= 0 else (v[: n + k], a[-k:])
        c = float(np.corrcoef(x, y)[0, 1])
        if c > best:
            best, lag = c, 10.0 * k
    return lag


def question_wav(work: Path, quiet_after_s: float = 9.0, question: str = QUESTION) -> tuple[Path, float]:
    """The fake microphone's file: 0.5 s quiet, the question, ``quiet_after_s`` quiet (it loops).
    Returns the 48 kHz WAV and the loop's length in seconds."""
    q = espeak(question, work / "q16.wav")
    pcm = np.concatenate([silence(0.5), q, silence(quiet_after_s)])
    return write_wav48(work / "mic.wav", pcm), pcm.size / 16000


def page_turns(page: Page, with_av_lag: bool = True) -> tuple[list[dict], dict[int, dict]]:
    """Every turn the page measured (``huma.latency()``: source, end, frame_ms, audio_ms, av_ms;
    plus av_lag_ms) and the server's stage times per turn (ms, from its ``answer_start``)."""
    lat = page.js("huma.latency()")
    if with_av_lag:
        frames = np.array(page.js("huma.frames"), dtype=float)
        levels = np.array(page.js("huma.levels"), dtype=float)
        if levels.ndim == 2 and levels.size:  # the voice is heard the page's output latency after its level is read
            levels[:, 0] += page.js("huma.outputLatencyMs || 0")
        for t in lat:  # over the first 1.5 s of each answer's audio
            on = t["end"] + t["audio_ms"] if t["audio_ms"] is not None else None
            t["av_lag_ms"] = av_lag_ms(frames, levels, on - 200, on + 1500) if on is not None else None
    starts = page.events("answer_start")
    split_at_server(lat, starts, page_wall_origin(page))
    server = {e["turn"]: e["server_ms"] for e in starts}
    return lat, server


def visit_stats(server_log: str) -> dict | None:
    """The worker's stats from the server's log line ``worker N: visit ended (reason) {...}``
    (the last such line; None when the server logged none)."""
    import ast

    found = None
    for line in server_log.splitlines():
        if "visit ended (" in line and ") {" in line:
            try:
                found = ast.literal_eval(line[line.index(") {") + 2 :])
            except (ValueError, SyntaxError):
                continue
    return found


def page_wall_origin(page: Page) -> float:
    """The wall-clock time (ms, as the server's ``time.time()``) of the page's ``performance.now()``
    zero: ``Date.now() - performance.now()`` now. ``performance.timeOrigin`` is not it when the
    machine's wall clock was stepped after Chromium started (the likely cause, not reproduced, of
    two runs' -55 ms and -23.7 s server -> page splits); a step is logged."""
    samples = [page.js("[Date.now() - performance.now(), performance.timeOrigin]") for _ in range(5)]
    origin = float(np.median([now for now, _ in samples]))
    step = origin - samples[-1][1]
    if abs(step) > 5.0:
        log.warning("the wall clock moved %.0f ms since the page opened: server -> page times of turns "
                    "before the step are off by that much", step)  # fmt: skip
    return origin


def split_at_server(lat: list[dict], starts: list[dict], time_origin: float) -> None:
    """Add to each turn of ``lat`` where its time went, on the wall clock the page and the server
    share (same machine: the page's ``page_wall_origin + t`` and the server's ``time.time()``):
    ``to_server_ms`` from the end of the question (spoken: in the page's microphone; typed: sent)
    to the server's end of it (spoken: the arrival of the audio where the VAD's last speech window
    ends; typed: the question's arrival), and ``server_to_frame_ms`` / ``server_to_audio_ms`` from
    the server's first answer frame (made, before the media clock sends it) to the page's first
    answer frame / audio. The server's end of a spoken question is its ``answer_start`` event's
    wall time less its ``first_frame`` stage (emitted as that stage is stamped)."""
    by_turn = {e["turn"]: e for e in starts}
    for t in lat:
        e = by_turn.get(t["turn"])
        first = (e or {}).get("server_ms", {}).get("first_frame")
        if e is None or first is None or "t" not in e:
            t["to_server_ms"] = t["server_to_frame_ms"] = t["server_to_audio_ms"] = None
            continue
        made = e["t"] - time_origin  # the server's first answer frame, in the page's time
        t["to_server_ms"] = round(made - first - t["end"], 1)
        t["server_to_frame_ms"] = None if t["frame_ms"] is None else round(t["end"] + t["frame_ms"] - made, 1)
        t["server_to_audio_ms"] = None if t["audio_ms"] is None else round(t["end"] + t["audio_ms"] - made, 1)


def summary_rows(spoken: list[dict], typed: list[dict], server: dict[int, dict]) -> list[dict]:
    """p50/p95 rows: the page's measures for spoken and typed turns, then the server's stages."""
    rows = []
    for name, turns in (("spoken: end of speech ->", spoken), ("typed: send ->", typed)):
        for key in PAGE_KEYS:
            vals = [t.get(key) for t in turns]
            rows.append({"turns": name, "measure": key, "n": len([v for v in vals if v is not None]),
                         "p50_ms": pct(vals, 50), "p95_ms": pct(vals, 95)})  # fmt: skip
    for name, turns in (("spoken: server", spoken), ("typed: server", typed)):
        for key in stage_names(server):
            vals = [server.get(t["turn"], {}).get(key) for t in turns]
            if any(v is not None for v in vals):
                rows.append({"turns": name, "measure": key, "n": len([v for v in vals if v is not None]),
                             "p50_ms": pct(vals, 50), "p95_ms": pct(vals, 95)})  # fmt: skip
    return rows


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m huma_rt`` (the server, its workers) import
    ``tree/huma_rt``: PYTHONSAFEPATH keeps the working directory (the checkout) off sys.path, so
    PYTHONPATH comes before the installed (editable) package."""
    if not (tree / "huma_rt" / "__init__.py").is_file():
        raise SystemExit(f"--tree {tree}: no huma_rt package in it (expected {tree / 'huma_rt' / '__init__.py'})")
    return {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree.resolve())}


def run(quick: bool, out_dir: Path, turns: int | None = None, typed: int | None = None,
        serve_args: tuple[str, ...] = (), env: dict[str, str] | None = None, question: str = QUESTION) -> dict:  # fmt: skip
    """Measure ``turns`` spoken and ``typed`` typed turns (quick: 3 and 2; full: 8 and 5).
    env: extra environment of the server and its workers (e.g. another tree on PYTHONPATH).
    question: what the microphone says."""
    from playwright.sync_api import sync_playwright

    turns = turns if turns is not None else (3 if quick else 8)
    typed = typed if typed is not None else (2 if quick else 5)
    work = Path(tempfile.mkdtemp(prefix="huma-serve-latency-"))
    wav, loop_s = question_wav(work, question=question)
    load, tree = [os.getloadavg()], tree_state()
    srv = Server("--max-visitors", "1", "--warm", "1", "--responder", "scripted", "--reply", REPLY, *serve_args,
                 env=env)  # fmt: skip
    try:
        with sync_playwright() as p:
            page = Page(p, srv.url, wav)
            try:
                page.start()
                page.wait(f"huma.events.filter(e => e.type === 'answer_end' && !e.cut).length >= {turns + 1}",
                          (turns + 2) * loop_s + 60, "spoken turns")  # fmt: skip
                load.append(os.getloadavg())
                page.js("huma.setMic(false)")
                time.sleep(loop_s)  # the last spoken answer ends
                for _ in range(typed):
                    n = len(page.events("answer_end"))
                    page.js("lastTextSent = performance.now(); huma.ask('And tomorrow?')")
                    page.wait(f"huma.events.filter(e => e.type === 'answer_end').length > {n}", 60, "a typed answer")
                    time.sleep(1.5)
                time.sleep(1.0)
                lat, server = page_turns(page)
                receive = page.receive_stats()
            finally:
                page.close()
        try:  # the visit's end (the page said it left) is logged with the worker's stats
            srv.wait_health(lambda h: h["visitors"] == 0, 15, "the visit to end")
        except (AssertionError, OSError) as exc:
            log.warning("no visit end seen: %s", exc)
        # the worker reports its stats once its peer connection is closed, which can take
        # longer than the server's visitor count to drop (the stats were missing in 4 of 6 runs)
        deadline = time.monotonic() + 15
        while visit_stats(Path(srv.log.name).read_text(errors="replace")) is None and time.monotonic() < deadline:
            time.sleep(0.25)
    finally:
        srv.close()
    visit = visit_stats(Path(srv.log.name).read_text(errors="replace"))
    if visit is None:
        log.warning("the worker's visit stats were not logged within 15 s of the visit's end")
    load.append(os.getloadavg())
    spoken = [t for t in lat if t["source"] == "speech"][1:]  # the first may have started mid-question
    typed_turns = [t for t in lat if t["source"] == "text"]
    rows = summary_rows(spoken, typed_turns, server)
    extra = {"turns": {"spoken": spoken, "typed": typed_turns}, "server_ms": {str(k): v for k, v in server.items()},
             "receive": receive, "load_avg": [list(x) for x in load], "tree": tree, "reply": REPLY, "question": question, "serve_args": list(serve_args), "env": env or {},
             "visit": visit}  # fmt: skip
    record = write_result(out_dir, "serve_latency", rows, extra)
    with open(Path(out_dir) / "serve_latency.md", "a") as f:
        f.write(f"\nLoad average (1, 5, 15 min) at start, after the spoken turns, at the end: {load}\n"
                f"\nPage receive statistics at the end: {receive}\n"
                f"\nThe worker's stats at the visit's end (``late``: packets ready after the media clock's time): {visit}\n")  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=None, help="spoken turns to measure (default 8; quick 3)")
    ap.add_argument("--typed", type=int, default=None, help="typed turns to measure (default 5; quick 2)")
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tree", type=Path, help="run the server from DIR/huma_rt (an A/B arm)")
    ap.add_argument("--question", default=QUESTION,
                    help="what the microphone says (a statement waits 0.3 s of silence, a question 0.1 s)")
    ap.add_argument("serve_args", nargs="*", help="extra huma-rt serve options (after --)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = tree_env(a.tree) if a.tree is not None else None
    record = run(a.quick, a.out, turns=a.turns, typed=a.typed, serve_args=tuple(a.serve_args), env=env,
                 question=a.question)
    print(markdown_table(record["results"]))
    print(f"load average {record['load_avg']} ({os.cpu_count()} cores); results in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
