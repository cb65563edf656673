"""Rasterizer speed: the CPU backend on a head-sized scene, beside gsplat's torch reference.

Scenarios (one JSON + Markdown table, rows tagged by ``case``; ``size`` is "WxH"):
  head       512x512, 50k Gaussians of a synthetic head: p50/p95/p99 per full frame (project +
             bin + sort + blend + composite).
  stage      (CPU) the same frame split into project, bin+sort, blend and composite (uint8),
             each stage run alone through ``huma_rt.render._cpu.CpuStages`` on the same scene;
             ``frame_share`` = stage p50 / head p50.
  reference  ours beside the torch reference (gsplat 1.5.3's pure-PyTorch projection/SH + a
             vectorised torch compositor, bench/torch_reference.py) on the same head scene in the
             same run; ``ratio`` = reference p50 / ours. Full mode: 512x512, 5 reference frames.
             Quick mode: 256x256 (the head camera at 256 px), one reference frame, because the
             reference takes ~3 s a 512x512 frame on 2 quiet cores (~10 s under load); the
             ``reference`` scenario still compares a whole 512x512 frame in quick mode.
  count      scaling with the Gaussian count at 512x512 (quick: the end points 10k and 200k).
  res        scaling with the resolution at 50k Gaussians (quick: the end points 256 and 1024).
  region     FrameRenderer re-drawing a mouth-sized dynamic box vs a full-frame render (speed-up).
``--device cuda`` times the CUDA backend with CUDA events (never host clocks) and refuses to run
without a GPU.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, time_calls, write_result

from huma_rt.errors import DeviceError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.render import FrameRenderer, Renderer

log = logging.getLogger(__name__)

COUNTS = (10_000, 25_000, 50_000, 100_000, 200_000)  # the Gaussian-count curve at 512x512
RESOLUTIONS = (256, 512, 768, 1024)  # the resolution curve at 50k Gaussians
HEAD_GAUSSIANS, HEAD_SIZE = 50_000, 512  # the head case the rasterizer target is defined on


@dataclass(frozen=True)
class Plan:
    """What one run measures: repeats, the points of each curve, the reference comparison."""

    warmup: int  # untimed frames before each timed series
    repeat: int  # timed frames per series
    head_repeat: int  # timed frames of the head case: the target's, so the longest series (a
    # median over ~4 s, not 0.6 s, rides out a burst of load from another VM on a shared host)
    counts: tuple[int, ...]  # Gaussian counts of the count curve (512x512)
    resolutions: tuple[int, ...]  # square sizes of the resolution curve (50k Gaussians)
    reference_size: int  # side of the head frame the torch reference is compared on
    reference_repeat: int  # timed torch-reference frames (after one untimed 64x64 warm-up frame)


def plan(quick: bool) -> Plan:
    """Quick: every case at the curves' end points, few repeats, one reference frame at 256 px."""
    if quick:
        return Plan(2, 8, 30, (COUNTS[0], COUNTS[-1]), (RESOLUTIONS[0], RESOLUTIONS[-1]), 256, 1)
    return Plan(5, 50, 300, COUNTS, RESOLUTIONS, HEAD_SIZE, 5)


HEAD_RADII = np.array([0.085, 0.115, 0.10])  # m: half width, half height, half depth of a head
CAMERA_DISTANCE = 0.45  # m from the head's centre


def head_scene(n: int, seed: int = 0, degree: int = 3) -> Gaussians:
    """``n`` Gaussians on an ellipsoidal head shell (1 mm radial jitter), flattened along the
    surface normal, sigma 0.6-2.4 mm (50k splats on a head's ~0.13 m^2 are ~1.6 mm apart)."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = d * HEAD_RADII * (1.0 + rng.normal(0, 0.01, (n, 1)))
    log_s = np.log(rng.uniform(0.6e-3, 2.4e-3, (n, 3)))
    log_s[:, 2] = np.log(rng.uniform(1e-4, 4e-4, n))  # thin along z of its own frame
    # Rotate each Gaussian's local z onto the shell normal: quaternion from (0,0,1) to normal.
    nrm = d / HEAD_RADII
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    axis = np.cross(np.array([0.0, 0.0, 1.0]), nrm)
    w = 1.0 + nrm[:, 2]
    quats = np.column_stack([w, axis])
    quats[w < 1e-6] = [0.0, 1.0, 0.0, 0.0]
    sh = rng.normal(0, 0.05, (n, (degree + 1) ** 2, 3))
    sh[:, 0] = np.array([0.9, 0.55, 0.45]) + rng.normal(0, 0.15, (n, 3))  # skin-ish DC
    return Gaussians(means=means.astype(np.float32), log_scales=log_s.astype(np.float32),
                     quats=quats.astype(np.float32),
                     opacity_logits=rng.normal(2.5, 1.0, n).astype(np.float32),
                     sh=sh.astype(np.float32))


def head_camera(size: int) -> Camera:
    """A frontal pinhole camera whose image height spans about 1.25 head heights."""
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = CAMERA_DISTANCE
    f = size * CAMERA_DISTANCE / (2.5 * HEAD_RADII[1])
    return Camera(size, size, fx=f, fy=f, cx=size / 2, cy=size / 2, world_to_camera=w2c)


def mouth_mask(g: Gaussians) -> np.ndarray:
    """The Gaussians in a mouth-sized box (5 x 2.5 cm) on the front, lower third of the face."""
    m = g.means
    return ((np.abs(m[:, 0]) < 0.025) & (np.abs(m[:, 1] - 0.05) < 0.0125) & (m[:, 2] < 0))


def _cpu_times(g, cam, warmup, repeat) -> dict:
    r = Renderer(cam, backend="cpu")
    out = np.empty((cam.height, cam.width, 3), np.float32)
    return stats_ms(time_calls(lambda: r.render(g, out=out), warmup=warmup, repeat=repeat))


def _cuda_times(g, cam, warmup, repeat) -> dict:
    """Per-frame device time between CUDA events around each render call."""
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no cupy, no driver or no device: no GPU numbers at all
        raise DeviceError(f"--device cuda needs a CUDA GPU with CuPy; {e}") from None
    r = Renderer(cam, backend="cuda")
    for _ in range(warmup):
        r.render(g)
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    secs = []
    for _ in range(repeat):
        start.record()
        r.render(g)
        stop.record()
        stop.synchronize()
        secs.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return stats_ms(secs)


def _cpu_stage_rows(g, cam, warmup, repeat, frame_p50_ms: float) -> list[dict]:
    """The CPU full frame split into its stages (each timed alone on the same scene)."""
    from huma_rt.render._cpu import CpuStages

    st = CpuStages(cam, g.count)
    u8 = np.empty((cam.height, cam.width, 3), np.uint8)
    bg = np.zeros(3, np.float32)
    stages = {
        "project": lambda: st.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh,
                                      g.scale_activation),
        "bin+sort": lambda: st.bin_sort(g.count, st.full_rect),
        "blend": lambda: st.blend(st.full_rect, False),
        "composite": lambda: st.composite(None, bg, (0, 0, cam.width, cam.height), out_u8=u8),
    }
    for fn in stages.values():  # each stage reads what the one before wrote
        fn()
    rows = []
    for name, fn in stages.items():
        s = stats_ms(time_calls(fn, warmup=warmup, repeat=repeat))
        rows.append({"case": "stage", "mode": name, "backend": "cpu", "gaussians": g.count,
                     "size": f"{cam.width}x{cam.height}", "threads": st.threads, **s,
                     "frame_share": s["p50_ms"] / frame_p50_ms})
    return rows


def _reference_times(g, cam, repeat, warm_cam) -> dict:
    """The torch reference's frame time; one untimed frame on ``warm_cam`` first (imports of
    torch/gsplat and first-call allocations are not a frame time)."""
    from huma_rt.bench import torch_reference

    torch_reference.render(g, warm_cam)
    return stats_ms(time_calls(lambda: torch_reference.render(g, cam), warmup=0, repeat=repeat))


def run(quick: bool, out_dir: Path, device: str = "cpu") -> dict:
    """All scenarios; ``quick`` measures every case at fewer points and repeats (``plan``)."""
    timer = _cuda_times if device == "cuda" else _cpu_times
    p = plan(quick)
    size = f"{HEAD_SIZE}x{HEAD_SIZE}"
    g50 = head_scene(HEAD_GAUSSIANS)
    cam512 = head_camera(HEAD_SIZE)
    ours = timer(g50, cam512, p.warmup, p.head_repeat)
    rows: list[dict] = [{"case": "head", "mode": "full frame", "backend": device, "gaussians": HEAD_GAUSSIANS,
                         "size": size, **ours}]
    if device == "cpu":
        rows += _cpu_stage_rows(g50, cam512, p.warmup, p.repeat, ours["p50_ms"])
    for n in p.counts:
        g = g50 if n == HEAD_GAUSSIANS else head_scene(n)
        rows.append({"case": "count", "backend": device, "gaussians": n, "size": size,
                     **timer(g, cam512, p.warmup, p.repeat)})
    by_res = {}
    for side in p.resolutions:
        by_res[side] = timer(g50, head_camera(side), p.warmup, p.repeat)
        rows.append({"case": "res", "backend": device, "gaussians": HEAD_GAUSSIANS, "size": f"{side}x{side}",
                     **by_res[side]})
    rows.append(_region_row(g50, cam512, device, p.warmup, p.repeat, ours))
    rows.append(_reference_row(g50, device, p, timer, ours if p.reference_size == HEAD_SIZE else by_res.get(p.reference_size)))
    return write_result(out_dir, "raster", rows, {"device": device, "quick": quick,
                                                  "plan": {k: getattr(p, k) for k in p.__dataclass_fields__}})


def _reference_row(g, device, p: Plan, timer, ours: dict | None) -> dict:
    """Ours vs the torch reference on the head scene at ``p.reference_size`` (ours re-used when
    that size was already timed)."""
    cam = head_camera(p.reference_size)
    if ours is None:
        ours = timer(g, cam, p.warmup, p.repeat)
    ref = _reference_times(g, cam, p.reference_repeat, head_camera(64))
    return {"case": "reference", "mode": "vs gsplat torch reference", "backend": device, "gaussians": g.count,
            "size": f"{cam.width}x{cam.height}", **ours,
            "reference_p50_ms": ref["p50_ms"], "reference_p95_ms": ref["p95_ms"], "reference_n": ref["n"],
            "ratio": ref["p50_ms"] / ours["p50_ms"],
            "note": "" if p.reference_size == HEAD_SIZE else
            f"quick mode: compared at {cam.width}x{cam.height}, {ref['n']} reference frame(s); full mode: "
            f"{HEAD_SIZE}x{HEAD_SIZE}"}


def _region_row(g, cam, device, warmup, repeat, full) -> dict:
    """FrameRenderer with the mouth Gaussians moving every frame vs the full-frame render."""
    dyn = mouth_mask(g)
    fr = FrameRenderer(cam, g, dyn, backend=device)
    base = g.means[dyn]
    quats = np.ascontiguousarray(g.quats[dyn])
    scales = np.ascontiguousarray(g.log_scales[dyn])
    out = np.empty((cam.height, cam.width, 3), np.uint8)
    rng = np.random.default_rng(1)
    frames = [np.ascontiguousarray(base + rng.normal(0, 1e-3, base.shape).astype(np.float32))
              for _ in range(4)]
    k = iter(range(1 << 30))
    rects = []

    def one():
        rects.append(fr.render(frames[next(k) % 4], quats, scales, out))

    st = stats_ms(time_calls(one, warmup=warmup, repeat=repeat))
    x0, y0, x1, y1 = rects[-1]
    return {"case": "region", "mode": "dynamic region", "backend": device, "gaussians": g.count,
            "size": f"{cam.width}x{cam.height}",
            "dynamic": int(dyn.sum()), "rect_px": f"{x1 - x0}x{y1 - y0}", **st,
            "full_p50_ms": full["p50_ms"], "speedup": full["p50_ms"] / st["p50_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    rec = run(args.quick, args.out, args.device)
    for r in rec["results"]:
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
