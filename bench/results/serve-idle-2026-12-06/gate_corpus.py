"""The quiet gate on real speech: every Asterisk prompt of bench/turns.py (4+ words) with 2 s of
low noise (-74 dBFS RMS, a muted microphone's level) before it and 1.5 s after, at its own
level and 20 dB quieter; the turn events (silence rule 0.7 s, no ASR: deterministic) with the
gate (TurnConfig defaults) against the model run on every window (quiet_gate_rms=0).

    .venv/bin/python bench/results/serve-idle-2026-12-06/gate_corpus.py [--limit N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from huma_rt.bench.speech_corpus import load_16k, prompts

from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector

RATE = 16000


def events(det: TurnDetector, pcm: np.ndarray) -> list[tuple[str, int, int]]:
    det.reset()
    out = []
    for i in range(0, pcm.size, 320):
        out += [(e.kind, e.start, e.end) for e in det.push(pcm[i : i + 320])]
    return out + [(e.kind, e.start, e.end) for e in det.flush()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    args = ap.parse_args()
    corpus = [p for p in prompts() if len(p.text.split()) >= 4][: args.limit]
    prob = SpeechProbability()
    on = TurnDetector(TurnConfig(), None, probability=prob)
    off = TurnDetector(TurnConfig(quiet_gate_rms=0.0), None, probability=prob)
    rng = np.random.default_rng(0)
    for gain in (1.0, 0.1):
        same = kinds_differ = gated = windows = 0
        shifts: list[int] = []
        for p in corpus:
            x = gain * load_16k(p)
            pcm = np.concatenate([rng.normal(0, 2e-4, 2 * RATE), x, rng.normal(0, 2e-4, int(1.5 * RATE))])
            pcm = pcm.astype(np.float32)
            a, b = events(on, pcm), events(off, pcm)
            gated += on.gated
            on.gated = 0
            windows += pcm.size // 512
            if a == b:
                same += 1
            elif [k for k, _, _ in a] != [k for k, _, _ in b]:
                kinds_differ += 1
            else:
                shifts += [max(abs(u[1] - v[1]), abs(u[2] - v[2])) // 512 for u, v in zip(a, b, strict=True)]
        print(json.dumps({"gain": gain, "prompts": len(corpus), "identical": same,
                          "other_events": kinds_differ, "bounds_shifted_by_windows": np.bincount(shifts).tolist(),
                          "model_skipped_pct_of_windows": round(100 * gated / windows, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
