"""One visitor's worker without a browser: idle CPU per thread, and how soon an answer's first
packets are handed to aiortc after its first TTS audio.

The worker's own parts, real: the demo avatar, Piper, the silero turn detector, the
conversation's frame clock, VP8/Opus (``AvatarMedia``) and its paced tracks, drained by one
coroutine per track as aiortc's senders do (``track.recv()``; no RTP, SRTP or ICE: the main
thread's figures are not a visit's). The microphone gets what a muted or silent page sends:
low noise (-74 dBFS RMS), not digital zeros, 20 ms at a time.

- ``--idle S``: CPU seconds per wall second of each thread (``/proc/self/task``) over S
  seconds of idle, after the rest pose has settled.
- ``--turns N``: typed turns (scripted answer), alternating answers that may take over the
  last unsent idle frame (``Conversation.retract``, B) with answers that may not (A), in the
  same process. Per turn: the first TTS audio put for the answer (``tts_first``) -> the
  answer's first audio packet and first video packet returned by the tracks (when aiortc
  would send them).

Works with an older tree on PYTHONPATH (``PYTHONSAFEPATH=1 PYTHONPATH=/tmp/base``): what it
lacks is not used (its B turns are then A turns).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

import numpy as np

NOISE_RMS = 2e-4


def _thread_cpu() -> dict[str, float]:
    """CPU seconds by Python thread name (pool threads of one prefix and native threads that
    Python did not start, e.g. onnxruntime's, added up)."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name.split("_")[0] for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = names.get(int(tid), "other")
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


async def _run(args) -> dict:
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt.serve.conversation import Conversation
    from huma_rt.serve.peer import AUDIO_RATE, AvatarMedia
    from huma_rt.serve.worker import WorkerConfig, _Models

    bundle, _ = ensure_bundle()
    cfg = WorkerConfig(bundle=str(bundle), responder="scripted", responder_options={"replies": [args.reply]})
    if args.no_blink:
        cfg.blink = False  # an older tree's WorkerConfig has no such field: set only when asked
    models = _Models(cfg)
    loop = asyncio.get_running_loop()
    media = AvatarMedia(loop, fps=int(models.avatar.fps))
    events: list[dict] = []
    conv = Conversation(models.avatar, models.tts, models.responder, None,
                        lambda *a, **k: media.push(*a, **k), events.append, models.conversation)  # fmt: skip
    conv.on_cut = lambda: loop.call_soon_threadsafe(media.silence_queued)
    retract = getattr(media, "retract", None)
    conv.retract = retract
    sent: dict[str, list[tuple[float, float]]] = {"video": [], "audio": []}

    async def drain(track, scale: int) -> None:
        while True:
            frame = await track.recv()
            sent[track.kind].append((frame.pts / scale, time.perf_counter()))
            del sent[track.kind][:-2000]

    async def microphone() -> None:
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        while True:
            conv.push_mic(rng.normal(0.0, NOISE_RMS, 320).astype(np.float32), time.perf_counter())
            t += 0.02
            await asyncio.sleep(max(0.0, t - time.perf_counter()))

    tasks = [asyncio.ensure_future(drain(media.video, 90000)), asyncio.ensure_future(drain(media.audio, AUDIO_RATE)),
             asyncio.ensure_future(microphone())]  # fmt: skip
    conv.start()
    result: dict = {"load_before": os.getloadavg(), "tree": __import__("huma_rt").__file__,
                    "blink": getattr(models.conversation, "blink", False)}
    try:
        await asyncio.sleep(args.settle)
        if args.idle:
            c0, w0 = _thread_cpu(), time.perf_counter()
            p0 = time.process_time()
            await asyncio.sleep(args.idle)
            c1, w1 = _thread_cpu(), time.perf_counter()
            wall = w1 - w0
            result["idle"] = {"wall_s": round(wall, 2), "process_pct": round(100 * (time.process_time() - p0) / wall, 2),
                              "threads_pct": {k: round(100 * (c1[k] - c0.get(k, 0.0)) / wall, 2)
                                              for k in sorted(c1) if c1[k] - c0.get(k, 0.0) > 0}}  # fmt: skip
            result["gated_windows"] = getattr(conv._turns, "gated", None)
        rows = []
        for i in range(args.turns):
            b = i % 2 == 1 and retract is not None
            conv.retract = retract if b else None
            await asyncio.sleep(random.uniform(0, 0.04))  # the answer lands anywhere in a period
            n0 = len(events)
            taken0 = conv.stats.get("retaken", 0)
            conv.ask("What is the weather like?")
            while not any(e["type"] == "answer_end" for e in events[n0:]):
                await asyncio.sleep(0.05)
            start = next(e for e in events[n0:] if e["type"] == "answer_start")
            user_end = conv._turn.times["user_end"]
            tts = user_end + start["server_ms"]["tts_first"] / 1000
            la = media._opus.lookahead / AUDIO_RATE if media._opus is not None else 0.0
            for _ in range(40):  # a short answer may end (on the frame clock) before it leaves
                video = next((t for pts, t in sent["video"] if pts >= start["pts"] - 1e-6), None)
                audio = next((t for pts, t in sent["audio"] if pts >= start["pts"] - la - 1e-6), None)
                if video is not None and audio is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"turn {i}: the answer's packets did not leave in 2 s: {media.dropped}, "
                                   f"{media.video_stats}")  # fmt: skip
            rows.append({"b": b, "retaken": conv.stats.get("retaken", 0) - taken0,
                         "tts_to_audio_ms": round(1000 * (audio - tts), 1),
                         "tts_to_video_ms": round(1000 * (video - tts), 1),
                         "server_ms": start["server_ms"]})  # fmt: skip
            await asyncio.sleep(args.gap)  # the rest pose settles again (and VP8 holds it)
        if rows:
            result["turns"] = rows
            for name, sel in (("A", False), ("B", True)):
                r = [x for x in rows if x["b"] == sel]
                if r:
                    result[name] = {"n": len(r), "retaken": sum(x["retaken"] for x in r),
                                    "tts_to_audio_ms_p50": statistics.median(x["tts_to_audio_ms"] for x in r),
                                    "tts_to_video_ms_p50": statistics.median(x["tts_to_video_ms"] for x in r),
                                    "tts_to_audio_ms_mean": round(statistics.mean(x["tts_to_audio_ms"] for x in r), 1)}  # fmt: skip
        result["late"] = media.video_stats.get("late")
        result["blink_frames"] = conv.stats.get("blink_frames", 0)
        result["answer_start_ms"] = conv.stats.get("answer_start_ms")
        result["not_retracted"] = getattr(media, "not_retracted", None)
    finally:
        conv.stop()
        media.close()
        for t in tasks:
            t.cancel()
    result["load_after"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--idle", type=float, default=0.0, help="seconds of idle CPU to measure")
    ap.add_argument("--turns", type=int, default=0, help="typed turns, A/B alternated")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds before measuring")
    ap.add_argument("--gap", type=float, default=2.5, help="seconds between turns")
    ap.add_argument("--reply", default="Sure.")
    ap.add_argument("--no-blink", action="store_true", help="the avatar's eyes stay open (A/B of the blink's cost)")
    ap.add_argument("--out", type=Path, help="JSON file to write")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    result = asyncio.run(_run(args))
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({k: v for k, v in result.items() if k != "turns"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
