"""Fixtures of the render tests."""

from __future__ import annotations

import pytest
from _render_scenes import blob_scene


@pytest.fixture
def scene():
    return blob_scene(11)
