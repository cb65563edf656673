"""Tables of several ``serve_latency`` runs (an A/B of ``--tree`` runs): one row per run, then
every turn of the runs of one arm pooled.

    python -m huma_rt.bench.serve_latency_table bench/results/serve-2026-12-07c/{A,B}-*

A run's arm is its folder name up to the first "-" (``A-0`` -> ``A``). "server ->" columns are
from the server's first answer frame to the page's frame / audio; "later" is the later of the
two per turn (when the answer is both seen and heard). Per-run medians move with the host's
load (the server's own stages, last column); the "server ->" columns are what the serving
side's media path changes.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

SOURCES = ("spoken", "typed")


def _load(run: Path) -> dict:
    path = run / "serve_latency.json"
    if not path.is_file():
        raise SystemExit(f"{run}: no serve_latency.json (expected a `serve_latency --out` folder)")
    return json.loads(path.read_text())


def _turn_values(turn: dict) -> dict[str, float]:
    return {
        "frame": turn["frame_ms"], "audio": turn["audio_ms"], "later": max(turn["frame_ms"], turn["audio_ms"]),
        "server->frame": turn["server_to_frame_ms"], "server->audio": turn["server_to_audio_ms"],
        "server->later": max(turn["server_to_frame_ms"], turn["server_to_audio_ms"]), "A/V": turn["av_ms"],
    }  # fmt: skip


def run_row(name: str, data: dict) -> str:
    cells = [name]
    for src in SOURCES:
        vals = [_turn_values(t) for t in data["turns"][src]]
        med = {k: float(np.median([v[k] for v in vals])) for k in vals[0]}
        cells += [f"{med['frame']:.0f} / {med['audio']:.0f} / {med['later']:.0f}",
                  f"{med['server->frame']:.0f} / {med['server->audio']:.0f}", f"{med['A/V']:+.0f}"]  # fmt: skip
    ids = [str(t["turn"]) for t in data["turns"]["spoken"]]
    stages = [data["server_ms"][i] for i in ids if i in data["server_ms"]]
    cells.append(" / ".join(f"{np.median([s[k] for s in stages if k in s]):.0f}"
                            for k in ("asr_final", "tts_first", "first_frame")))  # fmt: skip
    rc = data["receive"]
    cells.append(f"{rc['audio']['jitter_buffer_ms']:.0f} / {rc['video']['jitter_buffer_ms']:.0f}")
    visit = data.get("visit") or {}  # {} when the bench saw no end of the visit in the server's log
    late = visit.get("video", {}).get("late")
    cells.append(f"{late['video']['late_20ms']} / {late['audio']['late_20ms']}" if late else "-")
    cells.append(str(visit.get("not_drawn", 0)) if visit else "-")
    cells.append(str(visit.get("answer_underruns", 0)) if visit else "-")  # the key appears at the first gap
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="serve_latency --out folders")
    args = ap.parse_args(argv)
    print("| run | spoken: frame / audio / later p50 | server -> frame / audio | A/V | typed: frame / audio / later "
          "| server -> frame / audio | A/V | server: asr_final / tts_first / first_frame | jitter buffer audio / "
          "video | packets > 20 ms late video / audio | frames not drawn | gap frames |")  # fmt: skip
    print("|" + "---|" * 13)
    pooled: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in args.runs:
        data = _load(run)
        print(run_row(run.name, data))
        arm = run.name.split("-")[0]
        for src in SOURCES:
            for turn in data["turns"][src]:
                for k, v in _turn_values(turn).items():
                    pooled[arm][f"{src} {k}"].append(v)
    arms = sorted(pooled)
    print()
    print("| every turn of an arm, p50 (p95) ms | " + " | ".join(
        f"{a} ({len(pooled[a]['spoken frame'])} spoken, {len(pooled[a]['typed frame'])} typed)" for a in arms) + " |")  # fmt: skip
    print("|---|" + "---|" * len(arms))
    for key in pooled[arms[0]]:
        print(f"| {key} | " + " | ".join(
            f"{np.median(pooled[a][key]):.0f} ({np.percentile(pooled[a][key], 95):.0f})" for a in arms) + " |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
