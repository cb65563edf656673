"""Held-out pose refinement variants on a finished static checkpoint (experiment, not shipped)."""
import json, sys, time, logging
import numpy as np, torch
sys.path.insert(0, "/work/main")
from huma_rt.train.fit_data import fit_data_from_tracks
from huma_rt.train.fit_views import Views, background_plate, split_views
from huma_rt.train.tracking_tracks import Tracks
from huma_rt.train.video import VideoConfig, open_video
from huma_rt.train.fit_pose import render_view
from huma_rt.train.losses import photometric_loss
from huma_rt.train.heldout_eval import evaluate
from huma_rt.train.pose_refine import apply_delta, refine_poses

torch.set_num_threads(1)
work, video = sys.argv[1], sys.argv[2]
ckpt = sys.argv[5] if len(sys.argv) > 5 else f"{work}/static/static.ckpt.pt"
variants = json.loads(sys.argv[3])
import dataclasses
with np.load(f"{work}/tracks.npz", allow_pickle=False) as z:
    dd = {k: z[k] for k in z.files}
meta = json.loads(str(dd.pop("meta")))
fields = {f.name for f in dataclasses.fields(Tracks)}
dd.setdefault("mouth_width", np.full(len(dd["times"]), np.nan, np.float32))
tracks = Tracks(fps=float(dd.pop("fps")), width=int(dd.pop("width")), height=int(dd.pop("height")),
                rest=meta["rest"], config=meta["config"], **{k: v for k, v in dd.items() if k in fields})
frames = np.stack([rgb for _, _, rgb in open_video(video, VideoConfig()).frames()])
data = fit_data_from_tracks(frames, tracks)
views = Views(data, 2)
train, held = split_views(data.valid_mask(), 8)
import os
held = held[: int(os.environ.get("NHELD", len(held)))]
plate = background_plate(views.frames, views.mattes, train)
st = torch.load(ckpt, weights_only=True)
params = {k: v for k, v in st["params"].items()}
extent = float(st["extent"]); delta0 = st["pose_delta"]
lr_pose = torch.tensor([2e-3] * 3 + [2e-3 * extent] * 3)
RP = params
def loss_of(i, q, t):
    return photometric_loss(render_view(RP, views.camera, q, t, plate, 1).image, views.target(i), 0.2)
out = {}
for name, kw in variants.items():
    kw = dict(kw); scale = kw.pop("lr_scale", 1.0)
    keep = torch.sigmoid(params["opacity_logits"]).flatten() >= kw.pop("min_opacity", 0.0)
    RP = {k: v[keep] for k, v in params.items()}
    print(name, "refining with", int(keep.sum()), "of", keep.numel(), flush=True)
    c0 = time.process_time()
    d = refine_poses(loss_of, views.quat, views.trans, delta0, held, lr=lr_pose * scale, extent=extent, prior=1.0, **kw)
    c1 = time.process_time()
    m = evaluate(lambda i: params, 1, views, held, plate, anchors=data.anchors,
                 pose_of=lambda i: apply_delta(views.quat[i], views.trans[i], d[i]))
    out[name] = {k: round(v, 3) for k, v in m.items() if k != "frames"}
    out[name]["refine_cpu_s"] = round(c1 - c0, 1)
    print(name, out[name], flush=True)
json.dump(out, open(sys.argv[4], "w"), indent=1)
