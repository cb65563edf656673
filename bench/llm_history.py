"""The local responder over a conversation: what the history costs each turn, with and without
the kept context.

One conversation of ``QUESTIONS`` (follow-ups that need the earlier turns), answered three ways,
alternated round by round in one process (one thread, greedy, ``--max-tokens``):
- ``kept``: the history in the prompt, the previous turn's context reused (the default);
- ``cold``: the history in the prompt, every turn run from the system turn (``reuse_context``
  False): what the history would cost without the kept context;
- ``alone``: no history (every question alone: before conversations had one).
Per turn: prompt tokens after the system turn, tokens run before the first answer token
(``last_prefill``), the first text delta (ms) and the whole answer (ms).

    python -m huma_rt.bench.llm_history --rounds 2 --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

QUESTIONS = [
    "Hi! What is the capital of France?",
    "And what about Germany?",
    "Which of the two cities is bigger?",
    "What should I see there in one day?",
    "How do I get there from Paris?",
    "How long does that take?",
    "Is it expensive?",
    "Thanks! What was the first city we talked about?",
]
# --turns past 8: more follow-ups, until the history overflows ``history_tokens`` (512)
MORE = ["Tell me more about that.", "What else?", "Why is that?", "Can you give an example?",
        "What do you think?", "Is that true?", "How so?", "Anything else?"]  # fmt: skip
ARMS = ("kept", "cold", "alone")


def _conversation(responder, with_history: bool, questions: list[str]) -> list[dict]:
    history: list[tuple[str, str]] = []
    turns = []
    for q in questions:
        t0 = time.perf_counter()
        first, parts = None, []
        for delta in responder.respond(q, history if with_history else ()):
            if first is None:
                first = time.perf_counter() - t0
            parts.append(delta)
        answer = "".join(parts)
        turns.append({"question": q, "answer": answer, "prompt_tokens": responder.last_prompt,
                      "prefill_tokens": responder.last_prefill, "first_delta_ms": round((first or 0) * 1e3, 1),
                      "answer_ms": round((time.perf_counter() - t0) * 1e3, 1)})  # fmt: skip
        history.append((q, answer))
    return turns


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--turns", type=int, default=len(QUESTIONS), help=f"questions (at most {len(QUESTIONS + MORE)})")
    p.add_argument("--out", type=Path, default=Path("bench-results"))
    a = p.parse_args(argv)

    from huma_rt.bench.common import write_result

    from huma_rt.speech.local_llm import LocalLLMConfig, LocalLLMResponder

    responders = {"kept": LocalLLMResponder(LocalLLMConfig(max_tokens=a.max_tokens)),
                  "cold": LocalLLMResponder(LocalLLMConfig(max_tokens=a.max_tokens, reuse_context=False))}  # fmt: skip
    responders["alone"] = responders["cold"]
    runs = []
    for rnd in range(a.rounds):
        for arm in ARMS if rnd % 2 == 0 else ARMS[::-1]:
            turns = _conversation(responders[arm], arm != "alone", (QUESTIONS + MORE)[: a.turns])
            runs.append({"arm": arm, "round": rnd, "turns": turns})
            print(f"round {rnd} {arm}: first delta per turn (ms) {[t['first_delta_ms'] for t in turns]}", flush=True)
    rows = []
    for arm in ARMS:
        turns = [t for r in runs if r["arm"] == arm for t in r["turns"]]
        late = [t for r in runs if r["arm"] == arm for t in r["turns"][4:8]]  # turns 5-8: a longer history
        rows.append({"arm": arm, "turns": len(turns),
                     "first_delta_p50_ms": round(float(np.median([t["first_delta_ms"] for t in turns]))),
                     "first_delta_turns_5_8_p50_ms": round(float(np.median([t["first_delta_ms"] for t in late]))),
                     "prefill_tokens_turns_5_8_p50": float(np.median([t["prefill_tokens"] for t in late])),
                     "prompt_tokens_turn_8": turns[min(a.turns, 8) - 1]["prompt_tokens"],
                     "first_delta_max_ms": round(max(t["first_delta_ms"] for t in turns)),
                     "prefill_tokens_max": max(t["prefill_tokens"] for t in turns)})  # fmt: skip
    write_result(a.out, "llm_history", rows, {"runs": runs, "questions": (QUESTIONS + MORE)[: a.turns]})
    print((a.out / "llm_history.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
