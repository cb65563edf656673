"""Fixtures for backend tests: the real export folder (written once per session) and its models."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from huma_rt.export.models import build_models  # noqa: E402
from huma_rt.export.onnx_export import export_models  # noqa: E402

from huma_rt.model_config import DeformerConfig, EncoderConfig  # noqa: E402


@pytest.fixture(scope="session")
def torch_models():
    """(encoder, spatial, deformer): default configs, seed 3, eval mode."""
    return build_models(EncoderConfig(), DeformerConfig(), seed=3)


@pytest.fixture(scope="session")
def export_dir(torch_models, tmp_path_factory):
    """What ``huma-rt export`` writes, for the session's models."""
    out = tmp_path_factory.mktemp("backends_export")
    return export_models(out, *torch_models, seed=4).out_dir
