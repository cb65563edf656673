"""Runs the benchmark scenarios in one process, one after the other, and writes a summary.

Each scenario module (bench/<name>.py) exposes ``run(quick: bool, out_dir: Path) -> dict``.
A scenario whose optional dependency or input is missing is reported as skipped with the
reason, never silently dropped.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import time
from pathlib import Path

from huma_rt.bench.common import machine, markdown_table

from huma_rt.errors import HumaError, InputError

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


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to /proc/self/clear_refs); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB since the last reset (VmHWM), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return None


def _call(module, quick: bool, out_dir: Path, device: str) -> tuple[dict, str]:
    """module.run(...) with ``device`` when the scenario accepts one -> (record, device used)."""
    params = inspect.signature(module.run).parameters
    if "device" in params:
        return module.run(quick=quick, out_dir=out_dir, device=device), device
    if device != "cpu":
        log.warning("scenario %s has no device option: it measures the CPU", module.__name__)
    return module.run(quick=quick, out_dir=out_dir), "cpu"


def run_suite(names: list[str], quick: bool, out_dir: Path, device: str = "cpu") -> dict:
    """Run the named scenarios; write ``summary.json`` and ``summary.md`` into ``out_dir``.

    ``device`` ("cpu" or "cuda") goes to every scenario whose ``run`` takes a ``device``; the
    others run as they are and are marked "cpu". Each scenario's peak RSS is recorded (the
    process peak is reset before each one where Linux allows it).
    """
    if device not in ("cpu", "cuda"):
        raise InputError(f"device must be 'cpu' or 'cuda'; got {device!r}")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise InputError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {"machine": machine(), "quick": quick, "device": device, "scenarios": {}}
    for name in names:
        module_name, what = SCENARIOS[name]
        reset = reset_peak_rss()
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            record, used = _call(module, quick, out_dir, device)
            status = {"status": "ok", "device": used, "record": record}
        except (HumaError, ImportError) as exc:
            # Missing optional parts (no Triton binary, no GPU, no voice) are a skip with a reason.
            log.warning("scenario %s skipped: %s", name, exc)
            status = {"status": "skipped", "reason": str(exc)}
        status["seconds"] = round(time.perf_counter() - t0, 2)
        if status["status"] == "ok":
            rss = peak_rss_mb()
            status["peak_rss_mb"] = None if rss is None else round(rss, 1)
            status["peak_rss_scope"] = "scenario" if reset else "process so far"
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
        f"onnxruntime {m['onnxruntime']}; {m['time']}; quick={summary['quick']}; "
        f"device={summary.get('device', 'cpu')}",
        "",
    ]
    rows = [
        {"scenario": k, "status": v["status"], "device": v.get("device", ""), "seconds": v["seconds"],
         "peak_rss_mb": v.get("peak_rss_mb", ""), "what": v["what"], "note": v.get("reason", "")}
        for k, v in summary["scenarios"].items()
    ]
    lines.append(markdown_table(rows, ["scenario", "status", "device", "seconds", "peak_rss_mb", "what", "note"]))
    for name, v in summary["scenarios"].items():
        table = out_dir / f"{name}.md"
        if v["status"] == "ok" and table.exists():
            lines += ["", table.read_text().replace("# ", "## ", 1)]
    return "\n".join(lines) + "\n"
