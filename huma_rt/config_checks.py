"""Field checks for config dataclasses: one wording for "must be an integer >= lo" everywhere.

Each config's ``__post_init__`` names its fields and bounds; these raise :class:`InputError`
naming the config, the field, the bound and the bad value (bools are not integers here: a
``True`` iteration count is a typo, not 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .errors import InputError

__all__ = ["check_ints", "check_numbers"]


def _label(owner: str, name: str) -> str:
    return f"{owner}.{name}" if owner else name


def check_ints(config: object, bounds: Mapping[str, int], *, owner: str = "",
               optional: bool = False) -> None:  # fmt: skip
    """Each ``config.<name>`` must be an int >= ``bounds[name]`` (or None when ``optional``)."""
    for name, lo in bounds.items():
        v = getattr(config, name)
        if optional and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            what = "None or an integer" if optional else "an integer"
            raise InputError(f"{_label(owner, name)} must be {what} >= {lo}; got {v!r}")


def check_numbers(config: object, bounds: Mapping[str, float], *, owner: str = "",
                  upper: Mapping[str, float] | None = None, positive: bool = False) -> None:  # fmt: skip
    """Each ``config.<name>`` must be a finite number >= ``bounds[name]`` (> it when
    ``positive``) and <= ``upper[name]`` where given."""
    upper = upper or {}
    for name, lo in bounds.items():
        v = getattr(config, name)
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (v > lo if positive else v >= lo) and (name not in upper or v <= upper[name])
        if not ok:
            rel = ">" if positive else ">="
            span = f" and <= {upper[name]}" if name in upper else ""
            raise InputError(f"{_label(owner, name)} must be a finite number {rel} {lo}{span}; got {v!r}")
