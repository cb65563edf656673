"""A scenario with a bug (an exception that is not a missing optional part)."""

from __future__ import annotations

from pathlib import Path


def run(quick: bool, out_dir: Path) -> dict:
    raise ZeroDivisionError("a bug in the scenario")
