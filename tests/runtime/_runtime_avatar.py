"""A small avatar for runtime tests: structured random Gaussians, a camera, a seeded export.

Everything is real: seeded random networks exported by huma_rt.export, packed by
huma_rt.bundle, rendered by huma_rt.render's CPU FrameRenderer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from huma_rt.bundle import AvatarSource, pack
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig, EncoderConfig, MelConfig

W, H = 48, 40


def small_configs() -> tuple[EncoderConfig, DeformerConfig]:
    enc = EncoderConfig(code_dim=8, channels=32, past_frames=2, lookahead_frames=2, mel=MelConfig())
    dfm = DeformerConfig(code_dim=8, plane_channels=4, plane_resolution=8, hidden=16, layers=1)
    return enc, dfm


def export_small(out: Path, seed: int = 0) -> Path:
    from huma_rt.export.models import build_models
    from huma_rt.export.onnx_export import export_models

    enc_cfg, dfm_cfg = small_configs()
    enc, spatial, dfm = build_models(enc_cfg, dfm_cfg, seed=seed)
    export_models(out, enc, spatial, dfm, seed=seed, source="tests: seeded random small models")
    return out


_EXPORTS: dict[int, Path] = {}


def shared_export(tmp_root: Path, seed: int = 0) -> Path:
    """export_small once per test process (tests/runtime, tests/bundle, tests/media share it)."""
    if seed not in _EXPORTS or not _EXPORTS[seed].is_dir():
        _EXPORTS[seed] = export_small(tmp_root / f"export-{seed}", seed)
    return _EXPORTS[seed]


def small_gaussians(n: int = 1500, seed: int = 0) -> Gaussians:
    """A noisy sphere of radius 0.5 at the origin; the front-lower cap (a "mouth") is region 1."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = (0.5 * d + 0.01 * rng.normal(size=(n, 3))).astype(np.float32)
    region = ((d[:, 2] < -0.6) & (d[:, 1] > 0.1)).astype(np.uint8)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    return Gaussians(
        means=means, log_scales=np.full((n, 3), np.log(0.03), np.float32), quats=q,
        opacity_logits=rng.normal(1.0, 0.5, n).astype(np.float32),
        sh=rng.uniform(-0.5, 0.5, (n, 1, 3)).astype(np.float32), region=region,
    )  # fmt: skip


def small_camera() -> Camera:
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 2.0  # camera 2 units in front of the sphere, looking along +z
    return Camera(width=W, height=H, fx=50.0, fy=50.0, cx=W / 2, cy=H / 2, world_to_camera=w2c)


def small_background() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x / W, y / H, np.full((H, W), 0.3)], -1).astype(np.float32)


def small_source(export_dir: Path, **kw) -> AvatarSource:
    args = dict(gaussians=small_gaussians(), camera=small_camera(), background=small_background(),
                export_dir=export_dir, name="tiny-test-avatar")  # fmt: skip
    args.update(kw)
    return AvatarSource(**args)


def pack_small(export_dir: Path, out: Path, **kw) -> Path:
    return pack(small_source(export_dir), out, **kw)


def renderer_arg() -> str:
    """What tests pass as Avatar.load(renderer=...): the real CPU FrameRenderer."""
    return "cpu"
