"""End of turn on real recordings: how fast a finished turn is noticed, and how often the avatar
would cut in on a speaker who only paused.

Corpus: the Asterisk prompts (bench/speech_corpus.py: one real speaker, 8 kHz telephone
recordings, many of several sentences or clauses with the speaker's own pauses between them).
Each prompt is one turn: 0.5 s of silence, the recording, 1.5 s of silence, streamed in 20 ms
packets through :class:`huma_rt.speech.turns.TurnDetector` with the shipped ASR (Moonshine
tiny-en) deciding on the text. Per configuration:

- ``false_cut_in``: share of turns that got an end of turn before the recording's speech was
  over (an ``end`` event more than 0.1 s before the true end): the avatar would have started
  answering into a pause. Also per minute of speech.
- ``latency``: from the true end of speech (the recording's last block above -35 dB) to the
  turn decided with its text (what the responder needs): for the text rules, the later of the
  silence rule and the speculative ASR's end (the ASR's compute time measured here); for the
  silence rules, the decision plus the ASR of the whole utterance after it. p50 / p95 over the
  turns whose first end was the true one; also the p50 in stream time alone (no compute).
- ``missed``: turns that never ended (the ASR found nothing), ``wer`` of the final texts.

Configurations: silence alone at 0.3 / 0.5 / 0.7 s (the fixed-silence rule), and text-aware
rules "text Q / F / L": Q s of silence after a question, F after another finished text, L after
anything. The prompts are mostly statements (few questions), so this corpus measures the
statement rule's cut-ins; questions are what a visitor mostly says to the avatar. "energy clock
X dB": the default rule with its silence dated from the energy drop (TurnConfig.energy_drop_db),
beside the same rule without; ``clock early``: how far before silero's end its clock started.
"early ASR X dB" (TurnConfig.early_asr_db, 35 dB in every other text row) against "ASR at silero's
pause": where the speculative ASR starts; ``ASR runs / turn``: decodes made per prompt (those
started at an energy drop in brackets; a speaker who goes on wastes them).

    python -m huma_rt.bench.turns [--limit N] [--only LABEL-PART] [-o bench-results]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from huma_rt.bench.speech_corpus import load_16k, prompts, speech_end

from huma_rt.speech.asr_eval import word_error_rate
from huma_rt.speech.turns import SpeechProbability, TurnConfig, TurnDetector

log = logging.getLogger(__name__)

RATE = 16000
PACKET = 320
LEAD_S, TAIL_S = 0.5, 1.5
EARLY_S = 0.1  # an end this much before the true end is a cut-in
MIN_WORDS = 4

def _silence(s: float) -> TurnConfig:
    return TurnConfig(question_silence_s=s, short_silence_s=s, long_silence_s=s)


# label -> (config, decide on the text); text rules: question / other finished text / anything
CONFIGS = {
    "silence 0.3 s": (_silence(0.3), False),
    "silence 0.5 s": (_silence(0.5), False),
    "silence 0.7 s": (_silence(0.7), False),
    "text 0.1 / 0.1 / 0.7 s": (TurnConfig(question_silence_s=0.1, short_silence_s=0.1, long_silence_s=0.7), True),
    "text 0.1 / 0.25 / 0.7 s": (TurnConfig(question_silence_s=0.1, short_silence_s=0.25, long_silence_s=0.7), True),
    "text 0.1 / 0.3 / 0.7 s": (TurnConfig(question_silence_s=0.1, short_silence_s=0.3, long_silence_s=0.7), True),
    "text 0.1 / 0.4 / 0.7 s": (TurnConfig(question_silence_s=0.1, short_silence_s=0.4, long_silence_s=0.7), True),
    "text 0.1 / 0.25 / 0.7 s, ASR after 32 ms": (TurnConfig(asr_after_s=0.032), True),
}
# the silence clock started at the energy drop (TurnConfig.energy_drop_db), beside the same rule without
for _db in (30.0, 35.0, 40.0, 45.0):
    CONFIGS[f"text 0.1 / 0.3 / 0.7 s, energy clock {_db:g} dB"] = (
        TurnConfig(question_silence_s=0.1, short_silence_s=0.3, long_silence_s=0.7, energy_drop_db=_db), True)
# the speculative ASR at silero's first silent window, or sooner at the energy drop (early_asr_db;
# the rows above use the default, 35 dB)
CONFIGS["text 0.1 / 0.3 / 0.7 s, ASR at silero's pause"] = (
    TurnConfig(question_silence_s=0.1, short_silence_s=0.3, long_silence_s=0.7, early_asr_db=0.0), True)
for _db in (30.0, 35.0, 40.0):
    CONFIGS[f"text 0.1 / 0.3 / 0.7 s, early ASR {_db:g} dB"] = (
        TurnConfig(question_silence_s=0.1, short_silence_s=0.3, long_silence_s=0.7, early_asr_db=_db), True)
for _n in (2, 3):
    CONFIGS[f"text 0.1 / 0.3 / 0.7 s, early ASR 35 dB x {_n} windows"] = (
        TurnConfig(question_silence_s=0.1, short_silence_s=0.3, long_silence_s=0.7, early_asr_windows=_n), True)


class _CachedAsr:
    """The ASR, remembering each (prompt, length) text and its first compute time: the same audio
    is asked about under every configuration."""

    def __init__(self, recognizer) -> None:
        self.recognizer = recognizer
        self.cache: dict[tuple[str, int], tuple[str, float]] = {}
        self.key = ""
        self.last_s = 0.0
        self.calls = 0

    def __call__(self, pcm: np.ndarray) -> str:
        k = (self.key, int(pcm.size))
        if k not in self.cache:
            t0 = time.perf_counter()
            text = self.recognizer.transcribe(pcm).text.strip()
            self.cache[k] = (text, time.perf_counter() - t0)
        text, self.last_s = self.cache[k]
        self.calls += 1
        return text


def _several(text: str) -> bool:
    """A prompt of several sentences or clauses (where its speaker pauses on purpose)."""
    inner = text.strip().rstrip(".?!")
    return any(mark in inner for mark in (". ", "? ", "! ", ", ", "; ", ": "))


def _run_turn(detector: TurnDetector, asr: _CachedAsr | None, pcm: np.ndarray, true_end: int,
              final_asr: _CachedAsr | None = None) -> dict:  # fmt: skip
    """Stream one prompt (the detector runs its ASR inline; a live one runs it on its own thread
    while the silence goes on, so a decision comes when both the silence rule and the text allow:
    the later of the two); -> ends (s after the true end: with the ASR's time, and stream time
    alone), final texts. ``final_asr``: a silence-only rule still needs the text before the
    answer can start: it is transcribed after the decision, and that time counts too."""
    detector.reset()
    stream = np.concatenate([np.zeros(int(LEAD_S * RATE), np.float32), pcm, np.zeros(int(TAIL_S * RATE), np.float32)])
    true_end_s = (int(LEAD_S * RATE) + true_end) / RATE
    ends, stream_ends, texts, early = [], [], [], []
    asr_done = 0.0  # stream time (s) when the last speculative ASR would finish
    for i in range(0, stream.size, PACKET):
        calls = asr.calls if asr is not None else 0
        events = detector.push(stream[i : i + PACKET])
        now = detector.pushed_samples / RATE
        if asr is not None and asr.calls > calls:  # the ASR ran in this packet: it ends last_s later
            asr_done = now + asr.last_s
        for ev in events:
            if ev.kind == "end":
                text, ready = ev.text or "", max(now, asr_done)
                if final_asr is not None:
                    text = final_asr(ev.samples)
                    ready = now + final_asr.last_s
                ends.append(ready - true_end_s)
                early.append((ev.end - ev.silence_start) / RATE)
                stream_ends.append(now - true_end_s)
                texts.append(text)
    return {"ends_s": ends, "stream_ends_s": stream_ends, "texts": texts, "early_s": early}


def run(limit: int | None = None, out_dir: Path | None = None, only: str | None = None) -> dict:
    """only: run the configurations whose label contains it (all by default)."""
    from huma_rt.speech.asr import AsrConfig, Recognizer

    # turns of a few words: single words and digits (a third of the prompts) have no pause to cut in
    corpus = [p for p in prompts() if len(p.text.split()) >= MIN_WORDS]
    if limit:
        corpus = corpus[:limit]
    recognizer = Recognizer(AsrConfig())
    asr = _CachedAsr(recognizer)
    audio = {p.name: load_16k(p) for p in corpus}
    truth = {p.name: speech_end(audio[p.name]) for p in corpus}
    speech_min = sum(truth.values()) / RATE / 60
    prob = SpeechProbability()
    n_multi = sum(_several(p.text) for p in corpus)
    rows = []
    for label, (cfg, with_text) in CONFIGS.items():
        if only and only not in label:
            continue
        detector = TurnDetector(cfg, asr if with_text else None, probability=prob)
        calls = asr.calls
        cut, lat, lat_stream, missed, pairs = 0, [], [], 0, []
        early_total, cut_multi, early_clock = 0, 0, []
        for p in corpus:
            asr.key = p.name
            r = _run_turn(detector, asr if with_text else None, audio[p.name], truth[p.name],
                          None if with_text else asr)  # fmt: skip
            early_clock += r["early_s"][:1]
            early = [e for e in r["ends_s"] if e < -EARLY_S]
            early_total += len(early)
            if early:
                cut += 1
                cut_multi += _several(p.text)
            elif r["ends_s"]:
                lat.append(1000 * r["ends_s"][0])
                lat_stream.append(1000 * r["stream_ends_s"][0])
            else:
                missed += 1
            pairs.append((p.text, " ".join(t for t in r["texts"] if t)))
        row = {
            "config": label,
            "turns": len(corpus),
            "false_cut_in_pct": round(100 * cut / len(corpus), 1),
            "cut_ins_per_min": round(early_total / speech_min, 2),
            "false_cut_in_pct_one_sentence": round(100 * (cut - cut_multi) / max(1, len(corpus) - n_multi), 1),
            "false_cut_in_pct_several": round(100 * cut_multi / max(1, n_multi), 1),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat else None,
            "latency_without_asr_time_p50_ms": round(float(np.percentile(lat_stream, 50)), 1) if lat_stream else None,
            "missed": missed,
            "clock_early_p50_ms": round(1000 * float(np.median(early_clock)), 1) if early_clock else None,
            "wer": round(word_error_rate(pairs), 3),
            "asr_runs_per_turn": round((asr.calls - calls) / len(corpus), 2) if with_text else None,
            "early_asr_runs_per_turn": round(detector.early_asr_runs / len(corpus), 2) if with_text else None,
            "turn_config": asdict(cfg),
        }
        log.info("%s", row)
        rows.append(row)
    asr_times = [s for _, s in asr.cache.values()]
    result = {
        "corpus": "asterisk-core-sounds-en-wav 1.6.1-1 (one speaker, 8 kHz, CC-BY-SA-3.0)",
        "turns": len(corpus),
        "turns_of_several_sentences_or_clauses": n_multi,
        "speech_minutes": round(speech_min, 2),
        "asr_ms_p50": round(1000 * float(np.median(asr_times)), 1) if asr_times else None,
        "load_avg": os.getloadavg()[0],
        "rows": rows,
    }
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "turns.json").write_text(json.dumps(result, indent=2))
        lines = ["| rule | false cut-in: all turns | one sentence | several | cut-ins / min of speech | "
                 "latency p50 | p95 | p50 without the ASR's time | silence clock early p50 | missed | WER | "
                 "ASR runs / turn (at an energy drop) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            lines.append(f"| {r['config']} | {r['false_cut_in_pct']} % | {r['false_cut_in_pct_one_sentence']} % | "
                         f"{r['false_cut_in_pct_several']} % | {r['cut_ins_per_min']} | {r['latency_p50_ms']} ms | "
                         f"{r['latency_p95_ms']} ms | {r['latency_without_asr_time_p50_ms']} ms | "
                         f"{r['clock_early_p50_ms']} ms | {r['missed']} | "
                         f"{r['wer']} | {r['asr_runs_per_turn']} ({r['early_asr_runs_per_turn']}) |")  # fmt: skip
        (out_dir / "turns.md").write_text("\n".join(lines) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, help="only the first N prompts")
    ap.add_argument("-o", "--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--only", help="only the configurations whose label contains this")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args.limit, args.out, args.only)
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=2))
    for r in result["rows"]:
        print({k: v for k, v in r.items() if k != "turn_config"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
