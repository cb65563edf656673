"""Runs the benchmark scenarios in one process, one after the other, and writes a summary.

Each scenario module (bench/<name>.py) exposes ``run(quick: bool, out_dir: Path) -> dict``.
A scenario whose optional dependency or input is missing is reported as skipped with the
reason, never silently dropped.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path

from huma_rt.bench.common import machine, markdown_table
from huma_rt.errors import HumaError

log = logging.getLogger(__name__)

# name -> (module, what it measures); run in this order
SCENARIOS: dict[str, tuple[str, str]] = {
    "runtime": ("huma_rt.bench.runtime", "per-stage frame latency, fps, preload phases, sessions"),
    "raster": ("huma_rt.bench.raster", "rasterizer vs gsplat torch reference; count/resolution scaling"),
    "engines": ("huma_rt.bench.engines", "encoder/deformer on ORT CPU vs PyTorch eager"),
    "reference": ("huma_rt.bench.reference", "whole frame: huma-rt vs a plain PyTorch-eager pipeline"),
    "speech": ("huma_rt.bench.speech", "text -> first video frame; speech-chain stage latency"),
    "triton": ("huma_rt.bench.triton", "Triton gRPC latency and concurrent sessions vs local"),
}


def run_suite(names: list[str], quick: bool, out_dir: Path) -> dict:
    """Run the named scenarios; write ``summary.json`` and ``summary.md`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"machine": machine(), "quick": quick, "scenarios": {}}
    for name in names:
        module_name, what = SCENARIOS[name]
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            record = module.run(quick=quick, out_dir=out_dir)
            status = {"status": "ok", "record": record}
        except (HumaError, ImportError) as exc:
            # Missing optional parts (no Triton binary, no GPU, no voice) are a skip with a reason.
            log.warning("scenario %s skipped: %s", name, exc)
            status = {"status": "skipped", "reason": str(exc)}
        status["seconds"] = round(time.perf_counter() - t0, 2)
        status["what"] = what
        summary["scenarios"][name] = status
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out_dir / "summary.md").write_text(_summary_markdown(summary, out_dir))
    return summary


def _summary_markdown(summary: dict, out_dir: Path) -> str:
    m = summary["machine"]
    lines = [
        "# huma-rt benchmark summary",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, numpy {m['numpy']}, "
        f"onnxruntime {m['onnxruntime']}; {m['time']}; quick={summary['quick']}",
        "",
    ]
    rows = [
        {"scenario": k, "status": v["status"], "seconds": v["seconds"], "what": v["what"],
         "note": v.get("reason", "")}
        for k, v in summary["scenarios"].items()
    ]
    lines.append(markdown_table(rows, ["scenario", "status", "seconds", "what", "note"]))
    for name, v in summary["scenarios"].items():
        table = out_dir / f"{name}.md"
        if v["status"] == "ok" and table.exists():
            lines += ["", table.read_text().replace("# ", "## ", 1)]
    return "\n".join(lines) + "\n"
