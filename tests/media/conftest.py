"""Media tests use the small avatar of tests/runtime for the render command."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))

from _runtime_avatar import pack_small, shared_export  # noqa: E402


@pytest.fixture(scope="session")
def media_bundle(tmp_path_factory):
    export = shared_export(tmp_path_factory.mktemp("export"))
    return pack_small(export, tmp_path_factory.mktemp("bundle") / "tiny")
