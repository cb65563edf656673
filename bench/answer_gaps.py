"""Gaps inside served answers: where the answer's audio runs out before its end, per answer.

A ``Conversation`` (the visitor's engine of ``huma-rt serve``, no browser) with the demo avatar
(1 thread), the packaged Piper voice (1 thread) and a scripted reply answers typed questions;
per answer: the frames whose audio ran out (``answer_underruns``, a gap the visitor hears),
the pieces Piper made (text, when, ms, audio ms) and the frames the clock could not draw.
``--busy N`` runs N processes that spin on a core each beside it (a loaded 2-core host: the
browser, aiortc, other visitors). Trees (``NAME=DIR``: DIR/huma_rt is imported) alternate,
each run a fresh process:

    git archive HEAD~1 huma_rt | tar -x -C /tmp/tA; cp -r huma_rt /tmp/tB
    python -m huma_rt.bench.answer_gaps --trees A=/tmp/tA B=/tmp/tB --rounds 2 --busy 0 1 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPLIES = {
    "short": "Sure, it is sunny and warm.",
    "long": "Well, Paris is famous for its iconic landmarks like the Eiffel Tower and the Louvre. "
            "It is also known for its cafes and its food.",
}


def _one(reply: str, answers: int) -> dict:
    """Runs in the measured tree's process: ``answers`` typed questions -> per answer figures."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as a serve worker runs
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt import Avatar
    from huma_rt.serve.conversation import Conversation, ConversationConfig
    from huma_rt.speech.responder import ScriptedResponder
    from huma_rt.speech.tts import PiperTTS

    avatar = Avatar.load(ensure_bundle()[0], threads=1)
    tts = PiperTTS.load(num_threads=1)
    made: list[tuple] = []
    generate = tts._generate

    def timed(chunk: str):
        t0 = time.perf_counter()
        pcm = generate(chunk)
        made.append((chunk, t0, time.perf_counter() - t0, pcm.size / tts.sample_rate))
        return pcm

    tts._generate = timed
    events: list[dict] = []
    conv = Conversation(avatar, tts, ScriptedResponder([reply]), None, lambda *a, **k: None, events.append,
                        ConversationConfig())  # fmt: skip
    conv.start()
    time.sleep(3.0)  # the rest pose settles
    rows = []
    try:
        for _ in range(answers):
            made.clear()
            events.clear()
            gaps0, drop0 = conv.stats.get("answer_underruns", 0), conv.stats.get("not_drawn", 0)
            t0 = time.perf_counter()
            conv.ask("What is the weather like?")
            while not any(e.get("type") == "answer_end" for e in events):
                time.sleep(0.02)
            rows.append({
                "gap_frames": conv.stats.get("answer_underruns", 0) - gaps0,
                "not_drawn": conv.stats.get("not_drawn", 0) - drop0,
                "pieces": [{"text": c, "at_ms": round(1000 * (t - t0)), "ms": round(1000 * d), "audio_ms": round(1000 * a)}
                           for c, t, d, a in made],  # fmt: skip
            })
            time.sleep(1.0)
    finally:
        conv.stop()
    return {"answers": rows}


def table(results: list[dict]) -> str:
    """Per (tree, busy, reply): the gap frames over every answer, frames not drawn, the pieces."""
    lines = ["| tree | busy | reply | answers | gap frames: total (per answer) | answers with a gap | not drawn | "
             "pieces (first answer) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    keys = sorted({(r["tree"], r["busy"], r["reply"]) for r in results}, key=lambda k: (k[1], k[2], k[0]))
    for tree, busy, reply in keys:
        runs = [r for r in results if (r["tree"], r["busy"], r["reply"]) == (tree, busy, reply)]
        gaps = [a["gap_frames"] for r in runs for a in r["answers"]]
        drops = sum(a["not_drawn"] for r in runs for a in r["answers"])
        pieces = " / ".join(p["text"] for p in runs[0]["answers"][0]["pieces"])
        lines.append(f"| {tree} | {busy} | {reply} | {len(gaps)} | {sum(gaps)} ({sum(gaps) / len(gaps):.2f}) | "
                     f"{sum(g > 0 for g in gaps)} | {drops} | {pieces} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", default=[], help="NAME=DIR, DIR/huma_rt imported (default: this checkout)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--answers", type=int, default=8)
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="spinning processes beside")
    ap.add_argument("--reply", choices=sorted(REPLIES), nargs="+", default=["short"])
    ap.add_argument("--out", type=Path, default=Path("answer-gaps"))
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        print(json.dumps(_one(REPLIES[args._child[0]], int(args._child[1]))))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    trees = [t.split("=", 1) for t in args.trees] or [["this", ""]]
    for name, tree in trees:
        if tree and not (Path(tree) / "huma_rt" / "__init__.py").is_file():
            raise SystemExit(f"--trees {name}={tree}: no huma_rt package in it")
    results = []
    for rnd in range(args.rounds):
        for busy in args.busy:
            for reply in args.reply:
                # alternate which tree goes first, so a drifting load favours none
                for name, tree in trees if rnd % 2 == 0 else trees[::-1]:
                    env = dict(os.environ, PYTHONSAFEPATH="1")  # not this script's folder on sys.path
                    if tree:
                        env["PYTHONPATH"] = str(Path(tree).resolve())
                    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
                    try:
                        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", reply,
                                              str(args.answers)], env=env, capture_output=True, text=True, check=True)  # fmt: skip
                    finally:
                        for p in spin:
                            p.kill()
                            p.wait()
                    run = {"tree": name, "round": rnd, "busy": busy, "reply": reply,
                           "load_avg": os.getloadavg(), **json.loads(out.stdout.strip().splitlines()[-1])}  # fmt: skip
                    results.append(run)
                    gaps = [a["gap_frames"] for a in run["answers"]]
                    print(f"round {rnd} busy {busy} {reply:5s} {name}: gap frames {sum(gaps)} {gaps}, "
                          f"pieces {max(len(a['pieces']) for a in run['answers'])}", flush=True)
    (args.out / "answer_gaps.json").write_text(json.dumps(results, indent=1))
    (args.out / "answer_gaps.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
