"""A scenario whose optional dependency is missing (no device option)."""

from __future__ import annotations

from pathlib import Path

from huma_rt.errors import MissingDependencyError


def run(quick: bool, out_dir: Path) -> dict:
    raise MissingDependencyError("the 'frobnicator' extra is not installed (pip install huma-rt[frob])")
