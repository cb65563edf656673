"""Fixtures for engine-build tests: the real export folder, written once per session."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")

from huma_rt.export.models import build_models  # noqa: E402
from huma_rt.export.onnx_export import export_models  # noqa: E402

from huma_rt.model_config import DeformerConfig, EncoderConfig  # noqa: E402


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory):
    """What ``huma-rt export`` writes (default configs, seed 0). Treat as read-only."""
    out = tmp_path_factory.mktemp("engines_export")
    return export_models(out, *build_models(EncoderConfig(), DeformerConfig(), seed=0), seed=2).out_dir


@pytest.fixture
def export_copy(exported_dir, tmp_path):
    """A private copy of the export folder a test may modify."""
    return shutil.copytree(exported_dir, tmp_path / "export")
