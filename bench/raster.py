"""Rasterizer speed: the CPU backend on a head-sized scene, beside gsplat's torch reference.

Scenarios (one JSON + Markdown table, rows tagged by ``case``; ``size`` is "WxH"):
  head     512x512, 50k Gaussians of a synthetic head: CPU backend p50/p95 per full frame
           (project + bin + sort + blend + composite) and the torch reference (gsplat 1.5.3's
           pure-PyTorch projection/SH + a vectorised torch compositor, bench/torch_reference.py)
           on the same scene in the same run; ``ratio`` = reference p50 / ours.
  stage    the same CPU frame split into project, bin+sort, blend and composite (uint8), each
           stage timed on its own.
  count    scaling with the Gaussian count at 512x512.
  res      scaling with the resolution at 50k Gaussians.
  region   FrameRenderer re-drawing a mouth-sized dynamic box vs a full-frame render (speed-up).
``--device cuda`` times the CUDA backend with CUDA events (never host clocks) and refuses to run
without a GPU.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, time_calls, write_result

from huma_rt.errors import DeviceError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.render import FrameRenderer, Renderer

log = logging.getLogger(__name__)

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


def _cpu_stage_rows(g, cam, warmup, repeat) -> list[dict]:
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
    return [{"case": "stage", "mode": name, "backend": "cpu", "gaussians": g.count,
             "size": f"{cam.width}x{cam.height}", "threads": st.threads,
             **stats_ms(time_calls(fn, warmup=warmup, repeat=repeat))}
            for name, fn in stages.items()]


def _reference_times(g, cam, warmup, repeat) -> dict:
    from huma_rt.bench import torch_reference

    return stats_ms(time_calls(lambda: torch_reference.render(g, cam), warmup=warmup,
                                repeat=repeat))


def run(quick: bool, out_dir: Path, device: str = "cpu") -> dict:
    """All scenarios; ``quick`` uses fewer sizes and repeats (well under a minute)."""
    timer = _cuda_times if device == "cuda" else _cpu_times
    warmup, repeat = (2, 8) if quick else (5, 50)
    rows: list[dict] = []
    g50 = head_scene(50_000)
    cam512 = head_camera(512)
    ours = timer(g50, cam512, warmup, repeat)
    ref = _reference_times(g50, cam512, *((0, 1) if quick else (1, 5)))
    rows.append({"case": "head", "mode": "full frame", "backend": device, "gaussians": 50_000,
                 "size": "512x512", **ours,
                 "reference_p50_ms": ref["p50_ms"], "reference_p95_ms": ref["p95_ms"],
                 "ratio": ref["p50_ms"] / ours["p50_ms"]})
    if device == "cpu":
        rows += _cpu_stage_rows(g50, cam512, warmup, repeat)
    for n in ((10_000, 200_000) if quick else (10_000, 25_000, 50_000, 100_000, 200_000)):
        rows.append({"case": "count", "backend": device, "gaussians": n, "size": "512x512",
                     **timer(head_scene(n), cam512, warmup, repeat)})
    for size in ((256, 1024) if quick else (256, 512, 768, 1024)):
        rows.append({"case": "res", "backend": device, "gaussians": 50_000, "size": f"{size}x{size}",
                     **timer(g50, head_camera(size), warmup, repeat)})
    rows.append(_region_row(g50, cam512, device, warmup, repeat, ours))
    return write_result(out_dir, "raster", rows, {"device": device})


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
