"""Bundle tests share the small avatar helpers of tests/runtime."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from _runtime_avatar import pack_small, shared_export  # noqa: E402


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory):
    return shared_export(tmp_path_factory.mktemp("export"))


@pytest.fixture
def bundle_dir(export_dir, tmp_path):
    return pack_small(export_dir, tmp_path / "b")
