"""The trained bundle this comparison measured: a 10 s synthetic clip of the demo avatar (512 px),
the static fit at 128 px (StaticFitConfig: 3000 iterations; default DensifyConfig, or with
--bench-densify density control from 300 to 2400 as bench/train_static.py has it), the articulated fit at 128 px (default
ArticulatedFitConfig), packed by train/pack_avatar at the video's full size (512 x 512) with the
fit's plate upsampled. Run: python make_trained.py OUT_DIR [--bench-densify] (work files and the bundle go there)."""

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint
from huma_rt.gaussians import Camera
from huma_rt.train.densify import DensifyConfig
from huma_rt.train.fit_articulated import ArticulatedFitConfig, fit_articulated
from huma_rt.train.fit_static import StaticFitConfig, StaticFitData, fit_static
from huma_rt.train.pack_avatar import median_pose, pack_avatar
from huma_rt.train.synthetic import SyntheticConfig, make_synthetic
from huma_rt.train.video import VideoConfig, VideoReader

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
out = Path(sys.argv[1])
torch.set_num_threads(1)
seconds = {}
t0 = time.perf_counter()
clip = out / "clip10"
if not (clip / "truth.npz").is_file():
    make_synthetic(SyntheticConfig(duration_s=10.0, seed=1, threads=1), clip)
frames = np.stack([f for _, _, f in VideoReader(clip / "video.mp4", VideoConfig(min_seconds=1.0)).frames()])
with np.load(clip / "truth.npz") as z:
    data = StaticFitData(frames, z["head_quat"], z["head_trans"], z["camera_K"].astype(np.float64), mattes=z["alpha"])
    codes = z["code"].astype(np.float32)
seconds["clip"] = time.perf_counter() - t0
t0 = time.perf_counter()
# densify 300..2400 as bench/train_static does: with the defaults (stop 5000, opacity reset every
# 3000) the reset falls on the last of 3000 iterations and leaves the static avatar transparent
dens = DensifyConfig(start=300, stop=2400, interval=100) if "--bench-densify" in sys.argv else DensifyConfig()
static = fit_static(data, StaticFitConfig(downscale=4, densify=dens), out / "static")
seconds["static"] = time.perf_counter() - t0
t0 = time.perf_counter()
art = fit_articulated(data, static, codes, ArticulatedFitConfig(downscale=4), out / "articulated")
seconds["articulated"] = time.perf_counter() - t0
t0 = time.perf_counter()
k = data.intrinsics
h, w = frames.shape[1:3]
camera = Camera(w, h, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
bundle = pack_avatar(art.gaussians, art.spatial, art.deformer, load_checkpoint(DEMO_CHECKPOINT_DIR)[0], camera,
                     art.background, out / "trained.bundle", name="synthetic-10s-128px", overwrite=True,
                     rest_pose=median_pose(data.head_quat, data.head_trans, data.valid_mask()))
seconds["pack"] = time.perf_counter() - t0
summary = {"bundle": str(bundle), "seconds": seconds, "gaussians": art.gaussians.count,
           "dynamic": int(np.count_nonzero(art.gaussians.region)),
           "static_metrics": {k: v for k, v in static.metrics.items() if k != "frames"},
           "articulated_metrics": {k: v for k, v in art.metrics.items() if k not in ("frames", "static")}}
(out / "make_trained.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
