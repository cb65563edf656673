"""Measure a served conversation as the page sees it (a measurement, not a test).

    .venv/bin/python tests/serve/measure_latency.py [--turns 6] [--typed 4] [-o serve-latency.json]

Starts ``huma-rt serve`` (scripted responder, the default ASR) and one headless Chromium whose
microphone loops a WAV: 0.5 s quiet, a question (espeak-ng), 6 s quiet. Per spoken turn, from
the end of the question in the microphone (the page's own level meter on its microphone track)
to the first answer frame presented (requestVideoFrameCallback; the first frame whose pixels
move) and to the first answer audio (the level of the avatar's voice); then typed questions
(microphone muted), from the send to the same two. A/V = frame - audio as the page sees it, at
the first frame (av_ms) and over each answer's first 1.5 s (av_lag_ms, cross-correlation).
Also the server's stage times (from the last speech sample's arrival). Prints p50/p95 and the
load average; writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _live import Page, Server, silence, write_wav48  # noqa: E402
from conftest import espeak  # noqa: E402

REPLY = "Sure, it is sunny and warm."


def pct(values, q):
    v = [x for x in values if x is not None]
    return float(np.percentile(v, q)) if v else None


def av_lag_ms(frames: np.ndarray, levels: np.ndarray, t0: float, t1: float, max_lag: int = 300) -> float | None:
    """The lag (ms, > 0: video later) that best lines up the mouth's opening (each frame against
    the rest pose) with the loudness of the avatar's voice over [t0, t1) of page time: the A/V
    offset over a whole answer, not just its first frame (which the model draws ahead of the
    sound: its lookahead)."""
    grid = np.arange(t0, t1, 10.0)
    if grid.size < 50 or frames.shape[1] < 6:
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


def _ms(v) -> str:
    return f"{v:8.0f}" if v is not None else f"{'-':>8s}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=6, help="spoken turns to measure")
    ap.add_argument("--typed", type=int, default=4, help="typed turns to measure")
    ap.add_argument("-o", "--output", type=Path, default=Path("serve-latency.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"huma-measure-{os.getpid()}"
    work.mkdir(exist_ok=True)
    q = espeak("What is the weather like today in Paris?", work / "q16.wav")
    wav = write_wav48(work / "mic.wav", np.concatenate([silence(0.5), q, silence(6.0)]))
    load_before = os.getloadavg()
    srv = Server("--max-visitors", "1", "--warm", "1", "--responder", "scripted", "--reply", REPLY)
    try:
        with sync_playwright() as p:
            page = Page(p, srv.url, wav)
            page.start()
            loop_s = (0.5 * 16000 + q.size + 6.0 * 16000) / 16000
            page.wait(f"huma.events.filter(e => e.type === 'answer_end' && !e.cut).length >= {args.turns + 1}",
                      (args.turns + 2) * loop_s + 60, "spoken turns")  # fmt: skip
            page.js("huma.setMic(false)")
            time.sleep(loop_s)  # the last spoken answer ends
            for _ in range(args.typed):
                n = len(page.events("answer_end"))
                page.js("lastTextSent = performance.now(); huma.ask('And tomorrow?')")
                page.wait(f"huma.events.filter(e => e.type === 'answer_end').length > {n}", 60, "a typed answer")
                time.sleep(1.5)
            time.sleep(1.0)
            lat = page.js("huma.latency()")
            frames = np.array(page.js("huma.frames"), dtype=float)
            levels = np.array(page.js("huma.levels"), dtype=float)
            for t in lat:  # over the first 1.5 s of each answer's audio
                on = t["end"] + t["audio_ms"] if t["audio_ms"] is not None else None
                t["av_lag_ms"] = av_lag_ms(frames, levels, on - 200, on + 1500) if on is not None else None
            server = {e["turn"]: e["server_ms"] for e in page.events("answer_start")}
            stats = page.js("""(async () => { const r = await pc.getStats(); const o = {};
                r.forEach(s => { if (s.type === 'inbound-rtp') o[s.kind] = {jitter_buffer_ms:
                1000 * s.jitterBufferDelay / Math.max(1, s.jitterBufferEmittedCount),
                packets: s.packetsReceived, frames: s.framesDecoded, fps: s.framesPerSecond}; }); return o; })()""")
            page.close()
    finally:
        srv.close()
    load_after = os.getloadavg()
    spoken = [t for t in lat if t["source"] == "speech"][1:]  # the first may have started mid-question
    typed = [t for t in lat if t["source"] == "text"]
    rows = []
    for name, turns in (("spoken (end of speech ->)", spoken), ("typed (send ->)", typed)):
        for key in ("frame_ms", "audio_ms", "av_ms", "av_lag_ms"):
            vals = [t[key] for t in turns]
            rows.append((name, key, len([v for v in vals if v is not None]), pct(vals, 50), pct(vals, 95)))
    stage_keys = ("vad_end", "asr_final", "responder_first", "tts_first", "first_frame")
    stages = {k: pct([server[t["turn"]].get(k) for t in spoken if t["turn"] in server], 50) for k in stage_keys}
    print(f"{'turns':28s} {'measure':10s} {'n':>3s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for name, key, n, p50, p95 in rows:
        print(f"{name:28s} {key:10s} {n:3d} {_ms(p50)} {_ms(p95)}")
    print("server stages, spoken turns, p50 ms from the last speech sample's arrival: "
          + ", ".join(f"{k} {v:.0f}" for k, v in stages.items() if v is not None))  # fmt: skip
    print(f"page receive stats: {json.dumps(stats)}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2-core machine)")
    args.output.write_text(json.dumps({"spoken": spoken, "typed": typed, "server_ms": server, "stages_p50": stages,
                                       "rows": rows, "receive": stats, "load": [load_before, load_after]},
                                      indent=2) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
