"""The same trained avatar (make_trained.py's 512 px bundle) repacked at the fit's size (128 px:
intrinsics / 4, the plate area-pooled by 4), as train/pipeline packs it (the fit's camera).
Run: python repack_fit_size.py WORK_DIR"""

import sys
from pathlib import Path

import numpy as np

from huma_rt.bundle import AvatarSource, open_bundle, pack
from huma_rt.gaussians import Camera

work = Path(sys.argv[1])
b = open_bundle(work / "trained.bundle")
c, d = b.camera, 4
cam = Camera(c.width // d, c.height // d, c.fx / d, c.fy / d, c.cx / d, c.cy / d, world_to_camera=c.world_to_camera)
bg = np.asarray(b.background, np.float32).reshape(cam.height, d, cam.width, d, 3).mean((1, 3))
g = b.gaussians()
pack(AvatarSource(g, cam, np.ascontiguousarray(bg, np.float32), b.models_dir, name=b.name + "-fit-size"),
     work / "trained-128.bundle", overwrite=True)
print(work / "trained-128.bundle")
