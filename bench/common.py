"""Shared benchmark helpers: timing statistics, machine description, result files.

Every scenario module in bench/ exposes ``run(quick: bool, out_dir: Path) -> dict`` and uses
these helpers so results share one shape: {"scenario", "machine", "results": [...rows]}.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def machine() -> dict:
    """CPU model, core count and library versions, recorded with every result."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    from huma_rt import __version__

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "huma_rt": __version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def stats_ms(seconds: list[float] | np.ndarray) -> dict:
    """Median, p95, p99, mean and count of durations given in seconds, reported in ms."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def time_calls(fn: Callable[[], object], *, warmup: int, repeat: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times; per-call seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def frame_stage_times(session) -> dict[str, float]:
    """A session's last-frame stage seconds (features, encode, deform, render) plus its
    renderer's (project, sort, blend, composite) where the renderer exposes ``stage_times``."""
    times = dict(getattr(session, "stage_times", None) or {})
    renderer = getattr(session, "_renderer", None)  # FrameRenderer.stage_times (docs/INTERFACES.md)
    times.update(getattr(renderer, "stage_times", None) or {})
    return times


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A Markdown table of ``rows`` (floats shown with 3 significant decimals); by default its
    columns are every key of any row, in first-seen order (a row without one shows a blank)."""
    if not rows:
        return "(no rows)\n"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_result(out_dir: Path, scenario: str, rows: list[dict], extra: dict | None = None) -> dict:
    """Write ``<scenario>.json`` and ``<scenario>.md`` under ``out_dir``; return the record."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"scenario": scenario, "machine": machine(), "results": rows, **(extra or {})}
    (out_dir / f"{scenario}.json").write_text(json.dumps(record, indent=2) + "\n")
    (out_dir / f"{scenario}.md").write_text(f"# {scenario}\n\n" + markdown_table(rows))
    return record
