"""``open_runner``: pick a backend for a model and say why.

auto: on device "cuda", a TensorRT plan that fits this machine (the model's own ``.plan``, or the
``.plan`` beside an ``.onnx`` of the same stem); otherwise onnxruntime on the ONNX model (with a
logged warning when a plan was there but refused). On device "cpu", onnxruntime. Asking for
"tensorrt" or "onnxruntime" explicitly never falls back: it works or raises. "triton" hands the
model name and options to ``huma_rt.triton.runner.TritonRunner``.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from huma_rt._optional import has_cuda, has_module
from huma_rt.backends.base import Runner
from huma_rt.errors import BackendError, FormatError, HumaError, InputError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "triton")
DEVICES = ("cpu", "cuda")
_ORT_KEYS = {"threads", "providers", "trt_fp16", "trt_cache_dir", "device_id"}


def _pair(model: Path) -> tuple[Path | None, Path | None]:
    """(onnx, plan) paths for ``model``: the file itself and its sibling of the other kind."""
    if model.suffix == ".plan":
        onnx = None
        try:
            from huma_rt.backends.sidecar import load_sidecar

            onnx = model.with_name(load_sidecar(model).onnx_file)
        except FormatError as exc:
            log.debug("no ONNX named by %s: %s", model, exc)
        return (onnx if onnx is not None and onnx.is_file() else None), model
    plan = model.with_suffix(".plan")
    return model, (plan if plan.is_file() else None)


def _open_ort(onnx: Path, device: str, threads: int | None, options: dict[str, Any]) -> Runner:
    from huma_rt.backends.ort import OrtOptions, OrtRunner

    unknown = sorted(set(options) - _ORT_KEYS - {"stream"})
    if unknown:
        raise InputError(f"unknown onnxruntime options {unknown}; known: {sorted(_ORT_KEYS | {'stream'})}")
    stream = options.pop("stream", None)
    providers = options.pop("providers", None)
    opts = OrtOptions(threads=threads, providers=tuple(providers) if providers else None, **options)
    return OrtRunner(onnx, device=device, options=opts, stream=stream)


def _open_trt(plan: Path, options: dict[str, Any]) -> Runner:
    from huma_rt.backends.trt import TrtEngine

    return TrtEngine.load(plan, device_id=int(options.get("device_id", 0))).create_runner(stream=options.get("stream"))


def _trt_unavailable() -> str | None:
    """Why TensorRT cannot run here, or None."""
    if not has_module("tensorrt"):
        return "the tensorrt Python module is not installed (pip install 'huma-rt[trt]')"
    if not has_cuda():
        return "no usable CUDA GPU"
    return None


def open_runner(
    model: str | Path, *, backend: str = "auto", device: str = "cpu", threads: int | None = None, **options: Any
) -> Runner:
    """Open ``model`` (an ``.onnx`` or ``.plan`` path; for "triton", a model name) on a backend.

    options: onnxruntime ``providers``, ``trt_fp16``, ``trt_cache_dir``, ``device_id``;
    ``stream`` (CuPy stream of the session, CUDA only); Triton options pass through.
    ``runner.reason`` records why the backend was chosen.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {list(BACKENDS)}; got {backend!r}")
    if device not in DEVICES:
        raise InputError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if backend == "triton":
        try:
            mod = importlib.import_module("huma_rt.triton.runner")
        except ImportError as exc:
            raise BackendError(f"backend 'triton' needs huma_rt.triton.runner, which cannot be imported: {exc}") from exc
        runner = mod.TritonRunner(model, device=device, threads=threads, **options)
        runner.reason = "backend 'triton' asked"
        log.info("%s: %s", model, runner.reason)
        return runner

    path = Path(model)
    if not path.is_file():
        raise FormatError(f"model {path} does not exist")
    if path.suffix not in (".onnx", ".plan"):
        raise InputError(f"model must be an .onnx or .plan file; got {path.name}")
    onnx, plan = _pair(path)

    if backend == "tensorrt":
        if plan is None:
            raise BackendError(f"backend 'tensorrt' needs a TensorRT plan; {path} has none (run 'huma-rt build')")
        why_not = _trt_unavailable()
        if why_not:
            raise BackendError(f"backend 'tensorrt' cannot run here: {why_not}")
        runner = _open_trt(plan, options)
        runner.reason = f"backend 'tensorrt' asked; plan {plan.name} fits this GPU and TensorRT"
    elif backend == "onnxruntime":
        if onnx is None:
            raise BackendError(f"backend 'onnxruntime' needs an ONNX model; found none for {path}")
        runner = _open_ort(onnx, device, threads, dict(options))
        runner.reason = f"backend 'onnxruntime' asked (providers {runner.providers})"
    else:
        runner = _auto(path, onnx, plan, device, threads, options)
    log.info("%s: %s backend: %s", path.name, runner.backend, runner.reason)
    return runner


def _auto(path: Path, onnx: Path | None, plan: Path | None, device: str, threads, options) -> Runner:
    refused = ""
    if device == "cpu":
        refused = "device 'cpu'"
    elif plan is None:
        refused = "no TensorRT plan beside the model"
    elif why_not := _trt_unavailable():
        refused = why_not
    else:
        try:
            runner = _open_trt(plan, options)
            runner.reason = f"auto: plan {plan.name} fits this GPU and TensorRT"
            return runner
        except HumaError as exc:
            refused = f"TensorRT plan refused: {exc}"
    if onnx is None:
        raise BackendError(f"cannot open {path}: {refused}, and no ONNX model to fall back to")
    if plan is not None and device == "cuda":
        log.warning("%s: falling back to onnxruntime: %s", path.name, refused)
    ort_options = {k: v for k, v in options.items() if k in _ORT_KEYS | {"stream"}}
    runner = _open_ort(onnx, device, threads, ort_options)
    runner.reason = f"auto: onnxruntime {runner.providers} because {refused}"
    return runner
