"""NVTX ranges with the stable stage names of the design; no-ops where nvtx is absent."""

from __future__ import annotations

import contextlib

from huma_rt._optional import has_module

STAGES = ("huma/encode", "huma/deform", "huma/project", "huma/sort", "huma/blend", "huma/composite")

if has_module("nvtx"):
    import nvtx as _nvtx

    def annotate(name: str):
        """Context manager that pushes an NVTX range named ``name`` (domain 'huma')."""
        return _nvtx.annotate(name, domain="huma")
else:

    def annotate(name: str):
        """Context manager that pushes an NVTX range named ``name`` (no-op: nvtx missing)."""
        return contextlib.nullcontext()
