"""The fuzz suite's one verdict: a call either succeeds or raises a HumaError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from huma_rt.errors import HumaError


def succeeds_or_huma_error(call: Callable[[], Any]) -> Any:
    """Run ``call``; return its result, or the HumaError it raised. Any other exception fails the test."""
    try:
        return call()
    except HumaError as exc:
        assert str(exc), f"{type(exc).__name__} with an empty message"
        return exc
