"""Build the engines of a checked BuildPlan: cache lookup, TensorRT build, plan + sidecar.

Needs TensorRT and a CUDA GPU; ``require_build_env`` says which of the two is missing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huma_rt import __version__
from huma_rt._optional import has_cuda, has_module
from huma_rt.backends.sidecar import Sidecar, sha256_file, sidecar_path
from huma_rt.errors import DeviceError, FormatError, MissingDependencyError

from . import trt_build
from .cache import EngineCache, atomic_write, cache_key
from .plan import BuildPlan, ModelPlan

log = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """One engine: where it is, its sidecar, and whether it came from the cache."""

    model: str
    plan: Path
    sidecar: Sidecar
    cache_hit: bool
    seconds: float


def require_build_env() -> Any:
    """The tensorrt module, after checking TensorRT and a CUDA GPU are both here."""
    missing = []
    if not has_module("tensorrt"):
        missing.append("TensorRT (the 'tensorrt' Python module; pip install 'huma-rt[trt]' on a machine with NVIDIA's index)")
    if not has_cuda():
        missing.append("a CUDA GPU (CuPy found no usable device or driver)")
    if missing:
        cls = MissingDependencyError if not has_module("tensorrt") else DeviceError
        raise cls(
            "building TensorRT engines needs " + " and ".join(missing) + "; run 'huma-rt build --check DIR' "
            "to check the models here, or build with the trtexec command in each sidecar"
        )
    from huma_rt.backends.trt import tensorrt_module

    return tensorrt_module()


def build_engines(
    plan: BuildPlan, *, cache: EngineCache | None = None, use_cache: bool = True,
    progress: trt_build.ProgressFn | None = None, device_id: int = 0,
) -> list[BuildResult]:  # fmt: skip
    """Build (or fetch from the cache) every engine of ``plan``; FormatError if it has problems."""
    if plan.problems:
        raise FormatError("the build plan has problems:\n  " + "\n  ".join(plan.problems))
    trt = require_build_env()
    from huma_rt.backends.trt import gpu_info

    gpu_name, cc = gpu_info(device_id)
    cache = cache or EngineCache()
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for m in plan.models:
        t0 = time.perf_counter()
        flags = m.flags(plan.flags)
        key = cache_key(m.onnx.read_bytes(), flags, trt.__version__, cc)
        hit = cache.get(key) if use_cache else None
        if hit is not None:
            cached_plan, sc = hit
            shutil.copyfile(cached_plan, m.plan)
            sc.onnx_file = m.onnx.name
            sc.extra["from_cache"] = str(cached_plan)
            log.info("%s: cache hit %s", m.model, key[:12])
        else:
            sc = _build_one(trt, m, plan, cache, key, gpu_name, cc, progress)
            if use_cache:
                cache.put(key, m.plan, sc)
        sc.save(sidecar_path(m.plan))
        results.append(BuildResult(m.model, m.plan, sc, hit is not None, time.perf_counter() - t0))
    return results


def _build_one(trt, m: ModelPlan, plan: BuildPlan, cache: EngineCache, key: str, gpu_name: str, cc: str, progress) -> Sidecar:
    timing_path = cache.timing_cache_path(trt.__version__, cc)
    logger = trt_build.tensorrt_logger(trt)
    t0 = time.perf_counter()
    builder, network = trt_build.create_network(trt, logger)
    parser = trt_build.parse_onnx(trt, network, logger, m.onnx)
    monitor = trt_build.make_progress_monitor(trt, progress) if progress else None
    config = trt_build.create_config(
        trt, builder, network, profiles=m.profiles, opt_level=plan.flags.opt_level,
        workspace_mib=plan.flags.workspace_mib, timing_cache=cache.read_timing_cache(timing_path), monitor=monitor,
    )  # fmt: skip
    engine = trt_build.build_serialized(builder, network, config)
    cache.update_timing_cache(timing_path, lambda on_disk: trt_build.merged_timing_cache(config, on_disk))
    del parser
    atomic_write(m.plan, engine)
    seconds = time.perf_counter() - t0
    return Sidecar(
        trt_version=trt.__version__, gpu_name=gpu_name, compute_capability=cc, precision=m.precision,
        profiles={n: p.to_dict() for n, p in m.profiles.items()}, onnx_file=m.onnx.name,
        onnx_sha256=m.onnx_sha256, plan_sha256=sha256_file(m.plan), flags=json.loads(json.dumps(m.flags(plan.flags))),
        build_time_s=round(seconds, 3), built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        cache_key=key, trtexec=m.trtexec(plan.flags, timing_path), huma_rt_version=__version__,
        extra={"io": m.io_axes},
    )  # fmt: skip
