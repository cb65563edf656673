"""A trained bundle (packed at its fit's size) repacked at its video's size for the speed
comparison: the same Gaussians, intrinsics x (video / fit), the plate upsampled (nearest).
The picture of a fit drawn 3x larger is not the point (runtime-trained-2026-12-06 shows it
breaks up); the per-frame cost at the demo's size is.
Run: python repack_video_size.py BUNDLE SIZE OUT"""

import sys
from pathlib import Path

import numpy as np

from huma_rt.bundle import AvatarSource, open_bundle, pack
from huma_rt.gaussians import Camera

src, size, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
b = open_bundle(src)
c = b.camera
s = size / c.width
cam = Camera(size, round(c.height * s), c.fx * s, c.fy * s, c.cx * s, c.cy * s, world_to_camera=c.world_to_camera)
bg = np.asarray(b.background, np.float32)
rows = np.minimum((np.arange(cam.height) / s).astype(int), bg.shape[0] - 1)
cols = np.minimum((np.arange(cam.width) / s).astype(int), bg.shape[1] - 1)
pack(AvatarSource(b.gaussians(), cam, np.ascontiguousarray(bg[rows][:, cols], np.float32), b.models_dir,
                  name=b.name + f"-{size}"), out, overwrite=True)  # fmt: skip
print(out)
