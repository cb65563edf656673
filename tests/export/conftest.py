"""Shared fixtures for export tests: seeded random models and one exported folder per session."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from huma_rt.export.models import build_models  # noqa: E402
from huma_rt.export.onnx_export import export_models  # noqa: E402

from huma_rt.model_config import DeformerConfig, EncoderConfig  # noqa: E402


@pytest.fixture(scope="session")
def models():
    """(encoder, spatial, deformer) with the default configs, seed 0, eval mode."""
    return build_models(EncoderConfig(), DeformerConfig(), seed=0)


@pytest.fixture(scope="session")
def exported(models, tmp_path_factory):
    """An export folder written by export_models from the session's models."""
    out = tmp_path_factory.mktemp("export")
    return export_models(out, *models, seed=1)
