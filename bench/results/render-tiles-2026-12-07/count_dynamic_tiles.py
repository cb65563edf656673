"""Tiles the dynamic Gaussians of a bundle touch at rest, and how many would remain if those
wider than R px were left static. Run: python count_dynamic_tiles.py BUNDLE"""
import sys, numpy as np
from huma_rt.bundle import open_bundle
from huma_rt.render.frame_renderer import FrameRenderer
from huma_rt.render._common import TILE
b = open_bundle(sys.argv[1]); g = b.gaussians(); cam = b.camera
dyn = np.asarray(b.arrays["region"]) != 0
fr = FrameRenderer(cam, g, dyn, background=np.asarray(b.background, np.float32), backend="cpu", threads=1)
s = fr._stages
p = s.proj[fr._dyn_index]
vis = (p["rx"] > 0) & (p["ry"] > 0)
print("dyn", dyn.sum(), "visible", vis.sum(), "rx pct", np.percentile(p["rx"][vis], [50, 90, 99, 100]))
op = 1 / (1 + np.exp(-g.opacity_logits[dyn]))
for R in (1e9, 64, 48, 32, 24, 16):
    keep = vis & (np.maximum(p["rx"], p["ry"]) <= R)
    q = p[keep]
    m = np.zeros((s.tiles_y, s.tiles_x), bool)
    tx0 = np.floor((q["x"] - q["rx"]) / TILE).clip(0, s.tiles_x).astype(int); tx1 = np.ceil((q["x"] + q["rx"]) / TILE).clip(0, s.tiles_x).astype(int)
    ty0 = np.floor((q["y"] - q["ry"]) / TILE).clip(0, s.tiles_y).astype(int); ty1 = np.ceil((q["y"] + q["ry"]) / TILE).clip(0, s.tiles_y).astype(int)
    for a, bb, c, d in zip(tx0, tx1, ty0, ty1): m[c:d, a:bb] = True
    print(f"R<={R}: dynamic kept {keep.sum()}, made static {vis.sum()-keep.sum()} (their opacity p50 {np.median(op[vis & ~keep]) if (vis & ~keep).any() else 0:.2f}), touched tiles {m.sum()}")
