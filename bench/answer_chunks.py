"""How the answer's text is cut for the TTS: the first audio and the gaps it gives, per question.

The local responder (SmolLM2-135M, one thread) streams its answer into ``ChunkAssembler`` in
one thread, as ``huma-rt serve`` and ``chat`` do; Piper (one thread) speaks each chunk in
another, at a lower priority once the first audio is out (``yield_to_frames``). Per question:
- ``first_audio_ms``: from the question to the first chunk's audio (the responder's prefill,
  its first chunk of text, Piper on that chunk);
- ``gap_ms``: the silences the listener hears because a chunk's audio was not ready when the
  audio before it ran out (the audio played back to back from the first chunk's);
- the chunks: text, when the text was ready, when its audio was ready, its length (s).

``--duty`` runs a busy thread beside (that share of a core, in 40 ms periods): 0 is the first
chunk's case in a served visit (the avatar idles and draws nothing new), ~0.5 what the frame
clock takes while an answer is drawn. Trees (``NAME=DIR``: DIR/huma_rt is imported) run
alternately, each measurement in a fresh process, so an A/B of chunking code needs no option:

    git archive HEAD~1 huma_rt | tar -x -C /tmp/tA; cp -r huma_rt /tmp/tB
    python -m huma_rt.bench.answer_chunks --trees A=/tmp/tA B=/tmp/tB --rounds 2 --duty 0 0.5 --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

QUESTIONS = [
    "What is the weather like today in Paris?",
    "Tell me about yourself.",
    "What should I cook tonight?",
    "How far is the moon?",
    "Can you recommend a good book?",
    "Why is the sky blue?",
    "What do you do for fun?",
    "How do I learn to play the guitar?",
    "What is your favourite animal?",
    "Should I take an umbrella today?",
    "Explain how a rainbow forms.",
    "What time is it in Tokyo?",
]


def _busy(stop: threading.Event, duty: float, period: float = 0.04) -> None:
    """Keep ``duty`` of a core busy (numpy matmuls release the GIL, as the renderer does)."""
    a = np.random.default_rng(0).random((200, 200), dtype=np.float32)
    while not stop.is_set():
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duty * period:
            a = a @ a * 1e-3 + 0.1
        time.sleep(max(0.0, period - (time.perf_counter() - t0)))


def listening_gaps(chunks: list[tuple[float, float]]) -> list[float]:
    """[(audio ready at s, audio length s)] of an answer's chunks in order -> the silence (s)
    before each chunk after the first, played back to back from the first chunk's audio on."""
    gaps: list[float] = []
    end = None
    for audio_at, seconds in chunks:
        if end is not None:
            gaps.append(max(0.0, audio_at - end))
        end = (audio_at if end is None else max(end, audio_at)) + seconds
    return gaps


def _answer(responder, tts, question: str) -> dict:
    """One question through responder -> ChunkAssembler -> Piper, timed as the listener hears it."""
    from huma_rt.speech.pipeline import yield_to_frames
    from huma_rt.speech.text import ChunkAssembler

    chunks: queue.Queue = queue.Queue()
    t0 = time.perf_counter()

    def respond() -> None:
        assembler = ChunkAssembler()
        try:
            for delta in responder.respond(question):
                for chunk in assembler.feed(delta):
                    chunks.put((chunk, time.perf_counter() - t0))
            for chunk in assembler.close():
                chunks.put((chunk, time.perf_counter() - t0))
        finally:
            chunks.put(None)

    done: list[tuple[str, float, float, float]] = []
    made_s = 0.0

    def ahead_s() -> float:  # played back to back from the first audio on, as listening_gaps does
        return done[0][2] + made_s - (time.perf_counter() - t0) if done else math.inf

    def speak() -> None:
        nonlocal made_s
        try:  # as serve's and chat's TTS threads do
            from huma_rt.speech.pacing import SynthesisPacer

            pacer = SynthesisPacer(tts, ahead_s, yield_to_frames)
        except ImportError:  # a tree from before the pacing: chunks whole, the CPU yielded at the first audio
            pacer = None
        while (item := chunks.get()) is not None:
            chunk, ready = item
            for piece in pacer.pieces(chunk) if pacer else [chunk]:
                kw = {"starts_answer": not done} if pacer else {}
                pcm = [p for p, _ in tts.stream_chunks([piece], **kw)]
                seconds = sum(p.size for p in pcm) / 16000
                done.append((piece, ready, time.perf_counter() - t0, seconds))
                made_s += seconds
                if pacer:
                    pacer.audio_out()
                elif len(done) == 1:
                    yield_to_frames()

    threads = [threading.Thread(target=respond), threading.Thread(target=speak)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gaps = listening_gaps([(audio_at, seconds) for _c, _r, audio_at, seconds in done])
    return {
        "question": question,
        "first_audio_ms": round(done[0][2] * 1e3, 1) if done else None,
        "gap_ms": round(sum(gaps) * 1e3, 1),
        "gaps_ms": [round(g * 1e3, 1) for g in gaps],
        "chunks": [{"text": c, "text_ms": round(r * 1e3, 1), "audio_ms": round(a * 1e3, 1), "seconds": round(s, 3)}
                   for c, r, a, s in done],
    }


def _child(duty: float, questions: int, max_tokens: int) -> dict:
    from huma_rt.speech.responder import make_responder
    from huma_rt.speech.tts import PiperTTS

    responder = make_responder("local", max_tokens=max_tokens)
    tts = PiperTTS.load(num_threads=1)
    list(tts.stream_chunks(["Hello there."]))  # warm
    stop = threading.Event()
    busy = threading.Thread(target=_busy, args=(stop, duty), daemon=True)
    if duty > 0:
        busy.start()
    try:
        answers = [_answer(responder, tts, q) for q in QUESTIONS[:questions]]
    finally:
        stop.set()
    return {"duty": duty, "load_avg": list(os.getloadavg()), "answers": answers}


def summarize(runs: list[dict]) -> list[dict]:
    """Per (tree, duty): first audio p50/p90/max and mean, gaps, over every question of every round."""
    rows = []
    for key in dict.fromkeys((r["tree"], r["duty"]) for r in runs):
        answers = [a for r in runs if (r["tree"], r["duty"]) == key for a in r["answers"]]
        first = np.array([a["first_audio_ms"] for a in answers if a["first_audio_ms"] is not None])
        gaps = np.array([a["gap_ms"] for a in answers])
        rows.append({"tree": key[0], "duty": key[1], "answers": len(answers),
                     "first_audio_p50_ms": round(float(np.median(first))),
                     "first_audio_p90_ms": round(float(np.percentile(first, 90))),
                     "first_audio_max_ms": round(float(first.max())), "first_audio_mean_ms": round(float(first.mean())),
                     "answers_with_a_gap": int((gaps > 0).sum()), "gap_total_ms": round(float(gaps.sum()))})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", nargs="+", default=[], help="NAME=DIR, DIR/huma_rt imported (default: this checkout)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duty", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--questions", type=int, default=len(QUESTIONS))
    p.add_argument("--max-tokens", type=int, default=80)
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.duty[0], a.questions, a.max_tokens)))
        return 0

    from huma_rt.bench.common import write_result

    trees = [t.split("=", 1) for t in a.trees] or [["this", ""]]
    runs = []
    for rnd in range(a.rounds):
        for duty in a.duty:
            # alternate which tree goes first, so a drifting load favours none
            for name, tree in trees if rnd % 2 == 0 else trees[::-1]:
                env = dict(os.environ, PYTHONSAFEPATH="1")  # not this script's folder on sys.path
                if tree:
                    if not (Path(tree) / "huma_rt" / "__init__.py").is_file():
                        raise SystemExit(f"--trees {name}={tree}: no huma_rt package in it")
                    env["PYTHONPATH"] = str(Path(tree).resolve())
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--duty", str(duty),
                       "--questions", str(a.questions), "--max-tokens", str(a.max_tokens)]  # fmt: skip
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                run = {"tree": name, "round": rnd, **json.loads(out.stdout.strip().splitlines()[-1])}
                runs.append(run)
                first = [x["first_audio_ms"] for x in run["answers"]]
                print(f"round {rnd} duty {duty} {name}: first audio p50 {np.median(first):.0f} ms, "
                      f"max {max(first):.0f}", flush=True)  # fmt: skip
    rows = summarize(runs)
    write_result(a.out, "answer_chunks", rows, {"trees": dict(trees), "runs": runs})
    print((a.out / "answer_chunks.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
