"""Shared test configuration: the gpu marker skips without a usable CUDA device."""

from __future__ import annotations

import pytest

from huma_rt._optional import has_cuda


def pytest_collection_modifyitems(config, items):
    if has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (CuPy found no device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
