"""Fixtures for the Triton tests: a small export, a --target cpu repository and a REAL server.

The server is the tritonserver binary bundled by nvidia-pytriton, started once per session on
127.0.0.1 with free ports and always stopped (finalizer + process-group kill). Its python
models run in .venv-triton (numpy<2 + onnxruntime), made by 'make triton-env'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from huma_rt.bundle import AvatarSource, pack
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig, EncoderConfig

ROOT = Path(__file__).resolve().parents[2]
MODEL_ENV = ROOT / ".venv-triton"


def model_env() -> Path:
    """The python-backend models' venv; fails (never skips) with the command that makes it."""
    from huma_rt.errors import MissingDependencyError
    from huma_rt.triton.server import check_model_env

    try:
        return check_model_env(MODEL_ENV)
    except MissingDependencyError as exc:
        pytest.fail(f"{exc} (the Triton tests need it; run 'make triton-env' first)", pytrace=False)


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory) -> Path:
    """A small real export (fp32 + fp16 ONNX, configs) made by the export package."""
    from huma_rt.export.models import build_models
    from huma_rt.export.onnx_export import export_models

    enc, dfm = EncoderConfig(channels=32, code_dim=16), DeformerConfig(code_dim=16, hidden=24, plane_resolution=8)
    out = tmp_path_factory.mktemp("export")
    export_models(out, *build_models(enc, dfm, seed=3), seed=3, source="triton tests")
    return out


def _gaussians(n: int = 600, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return Gaussians(
        means=(0.5 * d).astype(np.float32), log_scales=np.full((n, 3), np.log(0.04), np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32), opacity_logits=rng.normal(1.0, 0.5, n).astype(np.float32),
        sh=rng.uniform(-0.5, 0.5, (n, 1, 3)).astype(np.float32),
        region=((d[:, 2] < -0.5) & (d[:, 1] > 0.0)).astype(np.uint8),  # the "mouth": dynamic rows
    )  # fmt: skip


@pytest.fixture(scope="session")
def bundle(export_dir, tmp_path_factory) -> Path:
    """A small real bundle (huma_rt.bundle.pack) of the export: 600 Gaussians, 48x40 camera."""
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 2.0
    cam = Camera(width=48, height=40, fx=50.0, fy=50.0, cx=24.0, cy=20.0, world_to_camera=w2c)
    src = AvatarSource(gaussians=_gaussians(), camera=cam, background=(0.1, 0.2, 0.3), export_dir=export_dir, name="triton-e2e")
    return pack(src, tmp_path_factory.mktemp("bundle") / "avatar")


@pytest.fixture(scope="session")
def cpu_repo(bundle, tmp_path_factory) -> Path:
    from huma_rt.triton.repo import RepoOptions, resolve_source, write_repository

    out = tmp_path_factory.mktemp("repo") / "cpu"
    return write_repository(out, resolve_source(bundle=bundle), RepoOptions(target="cpu", model_env=model_env()))


def start_server(repo: Path):
    from huma_rt.triton.server import ServerConfig, TritonServer

    return TritonServer(ServerConfig(repo, model_env=model_env())).start()


@pytest.fixture(scope="session")
def server(cpu_repo, request):
    srv = start_server(cpu_repo)
    request.addfinalizer(srv.stop)
    return srv


@pytest.fixture
def fresh_server(cpu_repo, request):
    """A server of its own for a test that stops it (stopped again at teardown, idempotent)."""
    srv = start_server(cpu_repo)
    request.addfinalizer(srv.stop)
    return srv


@pytest.fixture(scope="module")
def module_server(cpu_repo, request):
    """A server of the test module's own (its tests freeze it, so not the session's). Stopped
    with a short grace: sequences that its tests abandoned would hold a SIGTERM for 5 s."""
    srv = start_server(cpu_repo)
    request.addfinalizer(lambda: srv.stop(timeout_s=1.0))
    return srv
