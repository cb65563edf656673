"""A tiny benchmark scenario for the suite tests: times a real numpy computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from huma_rt.bench.common import stats_ms, time_calls, write_result


def run(quick: bool, out_dir: Path, device: str = "cpu") -> dict:
    a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    rows = []
    for n in (16, 32, 64):
        block = a[:n, :n]
        rows.append({"gaussians": n * 1000, "backend": "numpy", **stats_ms(time_calls(lambda b=block: b @ b, warmup=1, repeat=3))})
    return write_result(out_dir, "tiny", rows, {"device": device, "quick": quick})
