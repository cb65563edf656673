"""The rasterizer's backward pass beside its forward on the CPU backend (one run, side by side).

Scene: the demo avatar's Gaussians (huma_rt.export.demo.head.build_head, 46k, SH degree 1) seen by
its 512x512 camera. Per iteration, alternating so that a burst of load on a shared host hits
every series alike:
  forward           the runtime's render (project, bin + sort, blend, composite; Renderer)
  forward_save      the training forward: the same stages with save_for_backward (final T and
                    last entry per pixel) and the copies a backward needs (train/raster_cpu.py)
  backward          blend backward (per-pixel back-to-front, per-thread double accumulation)
                    + projection backward, from a fixed random dL/d image
  backward_blend    the blend backward alone / backward_project the projection backward alone
Reported: p50/p95 ms per series and ``ratio`` = p50 / forward p50. Results (JSON + Markdown) go
to bench/results/raster-backward-<date>/ by default.

    python -m huma_rt.bench.raster_backward [--repeat 15] [--threads 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, write_result

log = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "raster-backward-2026-12-06"


def _ptr(a):
    return a.ctypes.data


def run(repeat: int, warmup: int, threads: int, out_dir: Path) -> dict:
    """Time the series (see module) and write ``raster_backward.json``/``.md`` under out_dir."""
    from huma_rt.export.demo.head import build_camera, build_head
    from huma_rt.train.raster_cpu import SH_DEGREES, CpuRasterizer

    from huma_rt.render import Renderer

    g, cam = build_head(), build_camera(512)
    arrays = [g.means, g.quats, g.log_scales, g.opacity_logits, g.sh]
    act = g.scale_activation
    renderer = Renderer(cam, backend="cpu", capacity=g.count)
    eng = CpuRasterizer(cam, g.count, threads=threads)
    lib, n = eng.lib, g.count
    rng = np.random.default_rng(0)
    v_rgb = rng.normal(0, 1e-3, (cam.height, cam.width, 3)).astype(np.float32)
    v_T = rng.normal(0, 1e-3, (cam.height, cam.width)).astype(np.float32)
    _, _, saved = eng.forward(*arrays, act)
    nthreads = eng.stages.threads
    v2d = np.zeros((n, 9), np.float32)
    scratch = np.empty(lib.hr_cpu_backward_scratch_bytes(n, nthreads), np.uint8)
    outs = [np.empty_like(a) for a in arrays]
    stat = np.zeros(n, np.float32)
    vis = np.zeros(n, np.int32)

    def blend_backward():
        lib.hr_cpu_blend_backward(
            n, _ptr(saved.proj), _ptr(saved.colors), cam.width, cam.height,
            _ptr(eng.stages.full_rect), _ptr(saved.tile_offsets), _ptr(saved.keys),
            _ptr(saved.final_T), _ptr(saved.last), _ptr(v_rgb), _ptr(v_T), _ptr(scratch),
            _ptr(v2d), nthreads)

    def project_backward():
        from huma_rt.render._common import SCALE_ACTIVATION_CODES

        lib.hr_cpu_project_backward(
            n, *(_ptr(a) for a in arrays), SH_DEGREES[g.sh.shape[1]],
            SCALE_ACTIVATION_CODES[act], _ptr(eng.cam), _ptr(v2d), *(_ptr(o) for o in outs),
            _ptr(stat), _ptr(vis), nthreads)

    series = {
        "forward": lambda: renderer.render(g),
        "forward_save": lambda: eng.forward(*arrays, act),
        "backward": lambda: eng.backward(saved, *arrays, act, v_rgb, v_T),
        "backward_blend": blend_backward,
        "backward_project": project_backward,
    }
    times: dict[str, list[float]] = {k: [] for k in series}
    for it in range(warmup + repeat):
        for name, fn in series.items():
            t0 = time.perf_counter()
            fn()
            if it >= warmup:
                times[name].append(time.perf_counter() - t0)
    base = float(np.median(times["forward"]))
    rows = [{"case": name, "size": f"{cam.width}x{cam.height}", "gaussians": n,
             "threads": nthreads, **stats_ms(t), "ratio": float(np.median(t)) / base}
            for name, t in times.items()]
    extra = {"isects": int(saved.keys.shape[0]),
             "pixels_saturated": float((saved.final_T <= 1e-3).mean()),
             "mean_last_entry": float(saved.last.mean())}
    return write_result(out_dir, "raster_backward", rows, extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15, help="timed iterations per series")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads (0: all)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    rec = run(args.repeat, args.warmup, args.threads, args.out)
    for r in rec["results"]:
        log.info("%-17s p50 %8.1f ms  p95 %8.1f ms  x%.2f of the forward", r["case"],
                 r["p50_ms"], r["p95_ms"], r["ratio"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
