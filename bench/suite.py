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
import os
import time
from collections.abc import Callable
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
    "formats": ("huma_rt.bench.formats", "reading a 200k-Gaussian PLY; decoding a 60 s MP3"),
    "soak": ("huma_rt.bench.soak", "8 sessions streaming in parallel: frames lost, A/V drift, RSS over time"),
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


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere): at the start of the
    suite, the interpreter's start-up and the imports that came before it."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_1min() -> float | None:
    """The 1-minute load average (None where the OS has none): how busy the machine was."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _call(module, quick: bool, out_dir: Path, device: str) -> tuple[dict, str]:
    """module.run(...) with ``device`` when the scenario accepts one -> (record, device used)."""
    params = inspect.signature(module.run).parameters
    if "device" in params:
        return module.run(quick=quick, out_dir=out_dir, device=device), device
    if device != "cpu":
        log.warning("scenario %s has no device option: it measures the CPU", module.__name__)
    return module.run(quick=quick, out_dir=out_dir), "cpu"


def run_suite(names: list[str], quick: bool, out_dir: Path, device: str = "cpu",
              progress: Callable[[str], None] | None = None) -> dict:
    """Run the named scenarios; write ``summary.json`` and ``summary.md`` into ``out_dir``.

    ``device`` ("cpu" or "cuda") goes to every scenario whose ``run`` takes a ``device``; the
    others run as they are and are marked "cpu". Each scenario's wall and CPU seconds (this
    process and its children), the 1-minute load average around it and its peak RSS are
    recorded (the process peak is reset before each one where Linux allows it). A scenario
    whose optional part is missing (HumaError, ImportError) is "skipped" with the reason; any
    other exception marks it "failed" (traceback logged) and the suite goes on. ``progress``,
    if given, receives one line as each scenario starts and one as it ends.
    """
    if device not in ("cpu", "cuda"):
        raise InputError(f"device must be 'cpu' or 'cuda'; got {device!r}")
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise InputError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    say = progress or (lambda line: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    startup = process_age_s()
    t_suite, cpu_suite, load_start = time.perf_counter(), cpu_seconds(), load_1min()
    summary: dict = {"machine": machine(), "quick": quick, "device": device,
                     "startup_seconds": None if startup is None else round(startup, 2), "scenarios": {}}
    for i, name in enumerate(names, 1):
        module_name, what = SCENARIOS[name]
        say(f"[{i}/{len(names)}] {name}: {what} ...")
        reset = reset_peak_rss()
        load0, cpu0, t0 = load_1min(), cpu_seconds(), time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            record, used = _call(module, quick, out_dir, device)
            status = {"status": "ok", "device": used, "record": record}
        except (HumaError, ImportError) as exc:
            # Missing optional parts (no Triton binary, no GPU, no voice) are a skip with a reason.
            log.warning("scenario %s skipped: %s", name, exc)
            status = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 (a bug in one scenario must not lose the others)
            log.exception("scenario %s failed", name)
            status = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        status["seconds"] = round(time.perf_counter() - t0, 2)
        status["cpu_seconds"] = round(cpu_seconds() - cpu0, 2)
        status["load_1min"] = [load0, load_1min()]
        if status["status"] == "ok":
            rss = peak_rss_mb()
            status["peak_rss_mb"] = None if rss is None else round(rss, 1)
            status["peak_rss_scope"] = "scenario" if reset else "process so far"
        status["what"] = what
        summary["scenarios"][name] = status
        note = f": {status['reason']}" if "reason" in status else ""
        say(f"[{i}/{len(names)}] {name}: {status['status'].upper() if note else 'ok'} in {status['seconds']:.1f} s "
            f"(CPU {status['cpu_seconds']:.1f} s, load {status['load_1min'][0]} -> {status['load_1min'][1]}){note}")
    summary["total_seconds"] = round(time.perf_counter() - t_suite, 2)
    summary["cpu_seconds"] = round(cpu_seconds() - cpu_suite, 2)
    summary["load_1min"] = [load_start, load_1min()]
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
        f"Suite: {summary.get('total_seconds')} s wall, {summary.get('cpu_seconds')} s CPU (this process and "
        f"its children), 1-minute load {summary.get('load_1min')} (start, end); process start-up before the "
        f"suite (interpreter + imports): {summary.get('startup_seconds')} s.",
        "",
    ]
    rows = [
        {"scenario": k, "status": v["status"], "device": v.get("device", ""), "seconds": v["seconds"],
         "cpu_seconds": v.get("cpu_seconds", ""), "load_1min": " -> ".join(map(str, v.get("load_1min", []))),
         "peak_rss_mb": v.get("peak_rss_mb", ""), "what": v["what"], "note": v.get("reason", "")}
        for k, v in summary["scenarios"].items()
    ]
    columns = ["scenario", "status", "device", "seconds", "cpu_seconds", "load_1min", "peak_rss_mb", "what", "note"]
    lines.append(markdown_table(rows, columns))
    for name, v in summary["scenarios"].items():
        table = out_dir / f"{name}.md"
        if v["status"] == "ok" and table.exists():
            lines += ["", table.read_text().replace("# ", "## ", 1)]
    return "\n".join(lines) + "\n"
