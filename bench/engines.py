"""Encoder and deformer per-run latency on onnxruntime CPU vs PyTorch eager, in one process.

Grid: model (encoder: one streaming code per run, mel [1, receptive_mels, 80]; deformer at
N = 10k / 50k / 100k Gaussians, B = 1) x graph (fp32, fp16) x intra-op threads (1, 2).
ORT runs through our OrtRunner (IO binding to preallocated numpy buffers, the runtime's path);
PyTorch eager runs the same weights in fp32 with ``torch.set_num_threads`` equal to the ORT
thread count. ``torch_over_ort`` = PyTorch p50 / ORT p50 (> 1: ORT is faster).

    python -m huma_rt.bench.engines [--quick] [--out bench-results] [--sizes 10000,50000,100000]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, time_calls, write_result

log = logging.getLogger(__name__)

SIZES = (10_000, 50_000, 100_000)
THREADS = (1, 2)
PRECISIONS = ("fp32", "fp16")


def _export(tmp: Path, seed: int):
    """Export the models (demo checkpoint if present, else seeded random) -> (dir, modules)."""
    from huma_rt.export.onnx_export import export_models, resolve_models

    (encoder, spatial, deformer, _, _), source = resolve_models(None, seed)
    export_models(tmp, encoder, spatial, deformer, seed=seed, source=source)
    return tmp, (encoder, spatial, deformer), source


def _ort_timing(path: Path, ins: dict, outs: dict, threads: int, warmup: int, repeat: int) -> dict:
    from huma_rt.backends import open_runner

    runner = open_runner(path, backend="onnxruntime", threads=threads)
    runner.bind(inputs=ins, outputs=outs)
    s = stats_ms(time_calls(runner.run, warmup=warmup, repeat=repeat))
    runner.close()
    return s


def _torch_timing(fn, threads: int, warmup: int, repeat: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        return stats_ms(time_calls(fn, warmup=warmup, repeat=repeat))


def run(quick: bool, out_dir: Path, sizes: tuple[int, ...] = SIZES, threads: tuple[int, ...] = THREADS, seed: int = 0) -> dict:
    """Measure the grid; write ``engines.json`` / ``engines.md`` into ``out_dir``; return the record."""
    import torch

    warmup, repeat = (2, 7) if quick else (10, 60)
    rng = np.random.default_rng(seed)
    rows = []
    saved_threads = torch.get_num_threads()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="huma-bench-engines-") as tmp:
        export_dir, (encoder, spatial, deformer), source = _export(Path(tmp), seed)
        cfg = encoder.cfg
        mel = (encoder.mel_mean.numpy() + encoder.mel_std.numpy() * rng.standard_normal((1, cfg.receptive_mels, 80))).astype(np.float32)
        code = np.zeros((1, 1, cfg.code_dim), np.float32)
        mel_t = torch.from_numpy(mel)
        cases = [("encoder", cfg.receptive_mels, {"mel": mel}, {"code": code}, lambda: encoder(mel_t))]
        for n in sizes:
            means = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
            with torch.inference_mode():
                feat = spatial(torch.from_numpy(means)).numpy()
            z = rng.standard_normal((1, cfg.code_dim)).astype(np.float32)
            outs = {k: np.zeros((1, n, c), np.float32) for k, c in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
            feat_t, z_t = torch.from_numpy(feat), torch.from_numpy(z)
            cases.append(("deformer", n, {"feat": feat, "code": z}, outs, lambda f=feat_t, c=z_t: deformer(f, c)))
        try:
            for model, size, ins, outs, torch_fn in cases:
                for t in threads:
                    ref = _torch_timing(torch_fn, t, warmup, repeat)
                    for prec in PRECISIONS:
                        s = _ort_timing(export_dir / f"{model}.{prec}.onnx", ins, outs, t, warmup, repeat)
                        rows.append({
                            "model": model, "size": size, "graph": prec, "threads": t,
                            "ort_p50_ms": s["p50_ms"], "ort_p95_ms": s["p95_ms"],
                            "torch_fp32_p50_ms": ref["p50_ms"], "torch_fp32_p95_ms": ref["p95_ms"],
                            "torch_over_ort": ref["p50_ms"] / s["p50_ms"],
                        })  # fmt: skip
                        log.info("%s", rows[-1])
        finally:
            torch.set_num_threads(saved_threads)
    extra = {
        "load_average_1m_before_after": [load0, os.getloadavg()[0]],  # 2 shared cores: read thread rows with it
        "quick": quick, "warmup": warmup, "repeat": repeat, "weights": source,
        "notes": "size: mel frames per run for the encoder (one code), Gaussians N for the deformer (B=1); "
        "PyTorch eager runs fp32 weights in both rows; torch_over_ort > 1 means ORT is faster",
    }  # fmt: skip
    return write_result(out_dir, "engines", rows, extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (well under a minute)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder (default bench-results)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="deformer Gaussian counts, comma-separated")
    parser.add_argument("--threads", default=",".join(map(str, THREADS)), help="intra-op thread counts, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    record = run(args.quick, args.out, tuple(int(s) for s in args.sizes.split(",")), tuple(int(t) for t in args.threads.split(",")), args.seed)
    print((args.out / "engines.md").read_text())
    print(f"({len(record['results'])} rows; JSON: {args.out / 'engines.json'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
