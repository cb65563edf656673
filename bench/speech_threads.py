"""Piper's first chunk and a Moonshine decode on 1 vs 2 onnxruntime threads, alternated.

A serve worker keeps both on one thread; this says whether a second thread would help one visitor
on an otherwise idle two-core machine (the avatar renders on the other core while an answer is
spoken). Arms alternate (1, 2, 1, 2, ...) so the host's drift falls on both.

    python -m huma_rt.bench.speech_threads [--rounds 2] [--repeat 15] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, time_calls, write_result

from huma_rt.speech.asr import AsrConfig, Recognizer
from huma_rt.speech.audio import resample
from huma_rt.speech.tts import PiperTTS

FIRST_CHUNK = "Sure,"  # bench/serve_latency.py's reply starts with it
QUESTION = "What is the weather like today in the city?"


def run(rounds: int, repeat: int) -> list[dict]:
    rows = []
    question = None
    for r in range(rounds):
        for threads in (1, 2):
            tts = PiperTTS.load(num_threads=threads)
            if question is None:
                pcm, sr = tts.synthesize(QUESTION)
                question = resample(pcm, sr, 16000).astype(np.float32)
            asr = Recognizer(AsrConfig(num_threads=threads))
            rows.append({"round": r + 1, "threads": threads, "measure": f"tts {FIRST_CHUNK!r}",
                         **stats_ms(time_calls(lambda t=tts: t.synthesize(FIRST_CHUNK), warmup=1, repeat=repeat))})
            rows.append({"round": r + 1, "threads": threads, "measure": f"asr {len(question) / 16000:.2f} s question",
                         **stats_ms(time_calls(lambda a=asr, q=question: a.transcribe(q), warmup=1, repeat=repeat))})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = run(args.rounds, args.repeat)
    write_result(args.out, "speech_threads", rows)
    for row in rows:
        logging.getLogger(__name__).warning("%s", row)


if __name__ == "__main__":
    main()
