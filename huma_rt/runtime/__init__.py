"""The embedded runtime: ``Avatar.load(bundle)``, ``avatar.session()``, ``Frame``."""

from __future__ import annotations

from huma_rt.runtime.avatar import Avatar
from huma_rt.runtime.frame import Frame
from huma_rt.runtime.session import Session

__all__ = ["Avatar", "Frame", "Session"]
