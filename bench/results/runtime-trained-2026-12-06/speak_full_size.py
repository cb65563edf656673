"""The trained bundle (make_trained.py) speaking its clip's audio through the runtime, at the
video's full size (512 px) and pooled to the fit's (128 px), against the clip's truth re-rendered
at the bundle's rest pose with the same frame's code (ClipTruth): PSNR whole frame and face
(truth alpha > 0.5); a sheet of truth (top) and bundle (bottom) frames.
With a third argument (a bundle at the fit's size, repack_fit_size.py) the same comparison at
that size, the truth area-pooled to it (speak_fit_size.json).
Run: python speak_full_size.py WORK_DIR OUT_DIR [BUNDLE]"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from huma_rt.bundle import open_bundle
from huma_rt.media import read_wav, write_png
from huma_rt.runtime import Avatar
from huma_rt.train.losses import psnr
from huma_rt.train.synthetic import ClipTruth

work, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.set_num_threads(1)
bundle = Path(sys.argv[3]) if len(sys.argv) > 3 else work / "trained.bundle"
tag = "fit_size" if len(sys.argv) > 3 else "full_size"
w2c = open_bundle(bundle).camera.world_to_camera.astype(np.float64)
r, t = w2c[:3, :3], w2c[:3, 3]
# rotation matrix -> wxyz from the largest of |w|, |x|, |y|, |z| (the rest pose here is ~180
# degrees about x: w ~ 0)
s4 = np.array([1 + np.trace(r), 1 + r[0, 0] - r[1, 1] - r[2, 2], 1 - r[0, 0] + r[1, 1] - r[2, 2],
               1 - r[0, 0] - r[1, 1] + r[2, 2]])
k = int(np.argmax(s4))
v = np.sqrt(s4[k]) / 2
off = {0: (r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]), 1: (r[2, 1] - r[1, 2], r[0, 1] + r[1, 0], r[0, 2] + r[2, 0]),
       2: (r[0, 2] - r[2, 0], r[0, 1] + r[1, 0], r[1, 2] + r[2, 1]), 3: (r[1, 0] - r[0, 1], r[0, 2] + r[2, 0], r[1, 2] + r[2, 1])}[k]
others = [x / (4 * v) for x in off]
q = np.array(([v] + others) if k == 0 else {1: [others[0], v, others[1], others[2]], 2: [others[0], others[1], v, others[2]],
                                            3: [others[0], others[1], others[2], v]}[k])
truth = ClipTruth(work / "clip10", threads=1)
pcm, _ = read_wav(work / "clip10" / "speech.wav")
avatar = Avatar.load(bundle, device="cpu", threads=1)
frames = [f.rgb.copy() for f in avatar.render(np.ascontiguousarray(pcm, np.float32))]
avatar.close()
picks = list(range(4, len(frames), 8))
rows, sheet_top, sheet_bottom = [], [], []
for i in picks:
    rgb, alpha = truth.frame(i, q, t)
    a = torch.from_numpy(frames[i] / 255.0)
    b = torch.from_numpy(rgb / 255.0)
    m = torch.from_numpy((alpha > 0.5).astype(np.float32))
    pool = lambda x, n=128: x.reshape(n, x.shape[0] // n, n, x.shape[1] // n, *x.shape[2:]).mean((1, 3))  # noqa: E731
    if tag == "fit_size":
        n = a.shape[0]
        rows.append({"frame": i, f"psnr_{n}": psnr(a, pool(b, n)), f"psnr_face_{n}": psnr(a, pool(b, n), pool(m, n))})
        continue
    rows.append({"frame": i, "psnr_512": psnr(a, b), "psnr_face_512": psnr(a, b, m),
                 "psnr_128": psnr(pool(a), pool(b)), "psnr_face_128": psnr(pool(a), pool(b), pool(m))})
    if len(sheet_top) < 6 and i % 48 == 4:
        sheet_top.append(rgb[96:416, 96:416].copy())
        sheet_bottom.append(frames[i][96:416, 96:416])
truth.close()
summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "frame"}
summary["frames"] = len(rows)
(out / f"speak_{tag}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
if sheet_top:
    write_png(out / "speak_full_size_sheet.png", np.concatenate([np.concatenate(sheet_top, 1), np.concatenate(sheet_bottom, 1)], 0))
print(json.dumps(summary, indent=2))
