"""Which prompt's false cut-in the quiet gate changes: bench/turns.py's padding (0.5 s of zeros,
1.5 s after), silence 0.3 s without ASR, an end before speech_end = a cut-in; gate on / off.

    .venv/bin/python bench/results/serve-idle-2026-12-06/gate_find.py
"""

import numpy as np
from huma_rt.bench.speech_corpus import load_16k, prompts, speech_end

from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector

prob = SpeechProbability()


def detector(rms: float) -> TurnDetector:
    cfg = TurnConfig(question_silence_s=0.3, short_silence_s=0.3, long_silence_s=0.3, quiet_gate_rms=rms)
    return TurnDetector(cfg, None, probability=prob)


on, off = detector(1e-3), detector(0.0)
for p in [p for p in prompts() if len(p.text.split()) >= 4]:
    x = load_16k(p).astype(np.float32)
    s = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(24000, np.float32)])
    true_end = 8000 + speech_end(x)
    r = {}
    for name, d in (("on", on), ("off", off)):
        d.reset()
        ends = []
        for i in range(0, s.size, 320):
            ends += [d.pushed_samples for e in d.push(s[i : i + 320]) if e.kind == "end"]
        r[name] = (any(e < true_end for e in ends), d.gated)
    if r["on"][0] != r["off"][0]:
        print(p.name, r, p.text[:60])
