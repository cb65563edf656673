"""The quiet gate's effect on what bench/turns.py scores, with a muted microphone's noise
around each prompt: false cut-ins (an end decided inside the recording) and where the last end
falls, for the model run on every window (off), the gate with silero restarted over the last
quiet windows at its exit (reset: tried first, not shipped), and the gate keeping silero's
state (keep: what TurnDetector does now; run at the commit that had both, 919eaf4, for reset).
Every Asterisk prompt of 4+ words, 2 s of -74 dBFS noise before it and 1.5 s after, the
shipped end-of-turn silence without ASR (0.7 s: the rule every turn falls back on).

    .venv/bin/python bench/results/serve-idle-2026-12-06/gate_cutins.py [--limit N] [--gain G]
"""

from __future__ import annotations

import argparse
import json
from collections import deque

import numpy as np
from huma_rt.bench.speech_corpus import load_16k, prompts, speech_end

from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector

RATE = 16000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--gain", type=float, default=1.0)
    args = ap.parse_args()
    corpus = [p for p in prompts() if len(p.text.split()) >= 4][: args.limit]
    prob = SpeechProbability()
    dets = {"off": TurnDetector(TurnConfig(quiet_gate_rms=0.0), None, probability=prob),
            "reset": TurnDetector(TurnConfig(), None, probability=prob),
            "keep": TurnDetector(TurnConfig(), None, probability=prob)}  # fmt: skip
    rng = np.random.default_rng(0)
    res = {k: {"cut_ins": 0, "ends_s": []} for k in dets}
    for p in corpus:
        x = args.gain * load_16k(p)
        lead = 2 * RATE
        pcm = np.concatenate([rng.normal(0, 2e-4, lead), x, rng.normal(0, 2e-4, int(1.5 * RATE))]).astype(np.float32)
        true_end = lead + speech_end(load_16k(p))
        for name, det in dets.items():
            det.reset()
            if name == "keep":
                det._skipped = deque(maxlen=0)  # never replayed: silero keeps its drifted state
            ends = []
            for i in range(0, pcm.size, 320):
                ends += [det.pushed_samples for e in det.push(pcm[i : i + 320]) if e.kind == "end"]
            res[name]["cut_ins"] += any(e < true_end for e in ends)
            if ends:
                res[name]["ends_s"].append((ends[-1] - true_end) / RATE)
    print(json.dumps({"gain": args.gain, "prompts": len(corpus),
                      **{k: {"false_cut_in_pct": round(100 * v["cut_ins"] / len(corpus), 1),
                             "turns_ended": len(v["ends_s"]),
                             "last_end_after_true_end_p50_ms": round(1000 * float(np.median(v["ends_s"])), 1)}
                         for k, v in res.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
