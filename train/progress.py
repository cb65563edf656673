"""Progress of ``huma-rt train``: one record per update of a stage, to the module logger and to an
optional callable; the CLI draws them as a terminal bar.

The stages report in their own protocols: tracking calls ``progress(stage, done, total,
eta_seconds)``, the fits call ``progress(record_dict)`` with {iteration, iterations, loss,
count, eta_s, ...}. :func:`tracking_adapter` and :func:`fit_adapter` turn both into
:class:`StageProgress`, which the pipeline also emits at every stage's start and end.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class StageProgress:
    """One update. stage: the pipeline stage ("video", "track", "static", ...). event: "start",
    "update" or "end" (also "skip": finished in an earlier run, not redone). done/total: units
    so far / in all (frames or iterations, ``unit``). eta_s: seconds left in this stage (None:
    unknown). loss: the training loss where there is one. extra: stage-specific numbers
    (Gaussian count, ...); at "end", seconds: the stage's wall time."""

    stage: str
    event: str = "update"
    done: int = 0
    total: int = 0
    unit: str = ""
    eta_s: float | None = None
    loss: float | None = None
    seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        """A one-line human summary (what the logger and a non-terminal CLI print)."""
        if self.event == "start":
            return f"{self.stage}: started"
        if self.event == "skip":
            return f"{self.stage}: done in an earlier run (kept)"
        if self.event == "end":
            return f"{self.stage}: done in {_clock(self.seconds or 0.0)}"
        parts = [f"{self.stage}: {self.done}/{self.total} {self.unit}".rstrip()]
        if self.eta_s is not None:
            parts.append(f"ETA {_clock(self.eta_s)}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        parts += [f"{k} {v}" for k, v in self.extra.items()]
        return ", ".join(parts)


Progress = Callable[[StageProgress], None]


class Reporter:
    """Sends each record to the logger and to ``progress`` (if given): the pipeline's one voice."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress

    def __call__(self, rec: StageProgress) -> None:
        log.log(logging.INFO if rec.event != "update" else logging.DEBUG, "%s", rec.line())
        if self.progress is not None:
            self.progress(rec)

    def tracking(self, stage: str) -> Callable[[str, int, int, float], None]:
        """The tracking protocol ``(step, done, total, eta_s)`` -> records of ``stage``."""
        return tracking_adapter(self, stage)

    def fit(self, stage: str) -> Callable[[dict], None]:
        """The fits' protocol ``(record)`` -> records of ``stage``."""
        return fit_adapter(self, stage)


def tracking_adapter(progress: Progress, stage: str) -> Callable[[str, int, int, float], None]:
    """Wrap ``progress`` for tracking's ``(step, done, total, eta_s)`` calls (its "finish" step
    is the end of the frame pass and is not forwarded twice)."""

    def call(step: str, done: int, total: int, eta: float) -> None:
        if step == "finish":
            return
        progress(StageProgress(stage, "update", int(done), int(total), "frames", float(eta)))

    return call


def fit_adapter(progress: Progress, stage: str) -> Callable[[dict], None]:
    """Wrap ``progress`` for the fits' ``{iteration, iterations, loss, count, eta_s}`` records."""

    def call(rec: dict) -> None:
        extra = {"gaussians": int(rec["count"])} if "count" in rec else {}
        loss = rec.get("loss")
        progress(StageProgress(stage, "update", int(rec.get("iteration", 0)), int(rec.get("iterations", 0)),
                               "iterations", rec.get("eta_s"), None if loss is None else float(loss),
                               extra=extra))  # fmt: skip

    return call


class TerminalBar:
    """A progress bar per stage on ``stream`` (stderr): redrawn in place on a terminal, one line
    per tenth of the stage otherwise (logs, CI)."""

    WIDTH = 24

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._tenth: dict[str, int] = {}
        self._t0: dict[str, float] = {}
        self._open = False

    def __call__(self, rec: StageProgress) -> None:
        if rec.event == "start":
            self._t0[rec.stage] = time.perf_counter()
            self._tenth[rec.stage] = -1
            self._write(f"{rec.stage:<12} ...", final=False)
            return
        if rec.event in ("end", "skip"):
            self._write(f"{rec.stage:<12} {rec.line().split(': ', 1)[1]}", final=True)
            return
        frac = rec.done / rec.total if rec.total else 0.0
        filled = int(round(self.WIDTH * min(max(frac, 0.0), 1.0)))
        text = f"{rec.stage:<12} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {rec.line().split(': ', 1)[1]}"
        if self.tty:
            self._write(text, final=False)
        elif int(frac * 10) > self._tenth.get(rec.stage, -1):
            self._tenth[rec.stage] = int(frac * 10)
            self._write(text, final=True)

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
