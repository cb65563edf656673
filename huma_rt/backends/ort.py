"""onnxruntime runner: TensorRT EP -> CUDA EP -> CPU EP, IO binding to preallocated buffers.

On the CPU the bound numpy arrays are handed to onnxruntime by address (``bind_input`` /
``bind_output`` with ``buffer_ptr``), so ``run()`` is one ``run_with_iobinding`` call that
reads and writes the caller's memory and creates no Python objects. On CUDA the same holds
for CuPy arrays; the session runs on the caller's CUDA stream (``user_compute_stream``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt.backends.base import Runner, TensorSpec
from huma_rt.errors import BackendError, FormatError, InputError

log = logging.getLogger(__name__)

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT = {"tensorrt": PROVIDER_ORDER[0], "cuda": PROVIDER_ORDER[1], "cpu": PROVIDER_ORDER[2]}
_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass
class OrtOptions:
    """Per-process options of the onnxruntime runner.

    threads: intra-op threads (None: onnxruntime's default, one per core).
    providers: provider names or short names ("tensorrt", "cuda", "cpu") in order of preference;
        None: every available one of TensorRT EP -> CUDA EP -> CPU EP for device "cuda", CPU EP
        for device "cpu".
    trt_fp16: TensorRT EP FP16 flag (off: the fp16 ONNX graph already carries the precision,
        as TensorRT 11's strongly typed networks require).
    trt_cache_dir: TensorRT EP engine and timing cache directory (None: no caches).
    device_id: CUDA device ordinal.
    """

    threads: int | None = None
    providers: tuple[str, ...] | None = None
    trt_fp16: bool = False
    trt_cache_dir: str | None = None
    device_id: int = 0


def _ort():
    import onnxruntime

    return onnxruntime


def resolve_providers(device: str, asked: tuple[str, ...] | None) -> list[str]:
    """Provider names to use, in order; BackendError when an asked one is unavailable."""
    available = set(_ort().get_available_providers())
    if asked:
        names = [_SHORT.get(p.lower(), p) for p in asked]
        unknown = [n for n in names if n not in PROVIDER_ORDER]
        if unknown:
            raise InputError(f"providers must be among {list(_SHORT)} or {list(PROVIDER_ORDER)}; got {unknown}")
        missing = [n for n in names if n not in available]
        if missing:
            raise BackendError(
                f"onnxruntime providers {missing} are not available in this onnxruntime "
                f"(available: {sorted(available)}); GPU providers need the onnxruntime-gpu wheel"
            )
        return names
    if device == "cpu":
        return ["CPUExecutionProvider"]
    chosen = [p for p in PROVIDER_ORDER if p in available]
    if chosen == ["CPUExecutionProvider"]:
        raise BackendError(
            "device 'cuda' needs onnxruntime's CUDA or TensorRT execution provider, but this "
            f"onnxruntime has only {sorted(available)}; install huma-rt[gpu] (onnxruntime-gpu)"
        )
    return chosen


def _provider_options(name: str, opts: OrtOptions, stream_ptr: int | None) -> dict[str, str]:
    o: dict[str, str] = {}
    if name == "CPUExecutionProvider":
        return o
    o["device_id"] = str(opts.device_id)
    if stream_ptr is not None:
        o["has_user_compute_stream"] = "1"
        o["user_compute_stream"] = str(stream_ptr)
    if name == "TensorrtExecutionProvider":
        o["trt_fp16_enable"] = "1" if opts.trt_fp16 else "0"
        if opts.trt_cache_dir:
            Path(opts.trt_cache_dir).mkdir(parents=True, exist_ok=True)
            o.update(
                trt_engine_cache_enable="1", trt_engine_cache_path=opts.trt_cache_dir,
                trt_timing_cache_enable="1", trt_timing_cache_path=opts.trt_cache_dir,
            )  # fmt: skip
    return o


def _specs(values) -> dict[str, TensorSpec]:
    out = {}
    for v in values:
        if v.type not in _ORT_TYPES:
            raise FormatError(f"tensor '{v.name}' has type {v.type}, which huma-rt does not bind")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in v.shape)
        axes = tuple(d if isinstance(d, str) else "" for d in v.shape)
        out[v.name] = TensorSpec(shape, np.dtype(_ORT_TYPES[v.type]), axes)
    return out


def _stream_ptr(stream: Any) -> int | None:
    if stream is None:
        return None
    return int(getattr(stream, "ptr", stream))


class OrtRunner(Runner):
    """A model on onnxruntime; ``fork()`` shares the InferenceSession (own IO binding)."""

    backend = "onnxruntime"

    def __init__(
        self, model: str | Path, *, device: str = "cpu", options: OrtOptions | None = None,
        stream: Any = None, _session: Any = None,
    ) -> None:  # fmt: skip
        ort = _ort()
        self.model = Path(model)
        self.options = options or OrtOptions()
        self._stream = stream
        if _session is None:
            _session = self._create_session(ort, device)
        self._session = _session
        self.providers = list(_session.get_providers())
        super().__init__(_specs(_session.get_inputs()), _specs(_session.get_outputs()), device)
        self._binding = _session.io_binding()
        self._run_options = ort.RunOptions()
        self._keep: dict[str, Any] = {}

    def _create_session(self, ort, device: str):
        if device not in ("cpu", "cuda"):
            raise InputError(f"device must be 'cpu' or 'cuda'; got {device!r}")
        if not self.model.is_file():
            raise FormatError(f"ONNX model {self.model} does not exist")
        opts = self.options
        if opts.threads is not None and (not isinstance(opts.threads, int) or opts.threads < 1):
            raise InputError(f"threads must be a positive integer or None; got {opts.threads!r}")
        so = ort.SessionOptions()
        if opts.threads is not None:
            so.intra_op_num_threads = opts.threads
        so.inter_op_num_threads = 1  # one network at a time per session: no inter-op parallelism
        # Idle intra-op threads sleep instead of spinning: on a small CPU the renderer's threads
        # run right after each network, and an onnxruntime thread spinning for work on one of
        # the cores held every OpenMP barrier of the frame up to a scheduler time slice (the
        # reference scenario's sort: 0.5 -> 30 ms on 2 cores).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        names = resolve_providers(device, opts.providers)
        stream_ptr = _stream_ptr(self._stream)
        providers = [(n, _provider_options(n, opts, stream_ptr)) for n in names]
        try:
            session = ort.InferenceSession(str(self.model), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BackendError(f"onnxruntime cannot load {self.model}: {exc}") from exc
        log.info("onnxruntime session for %s on %s (threads %s)", self.model.name, session.get_providers(), opts.threads)
        return session

    def _bind(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        b = self._binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for name, arr in inputs.items():
            dev, ptr = self._where(arr)
            b.bind_input(name, dev, self.options.device_id, arr.dtype, list(arr.shape), ptr)
        for name, arr in outputs.items():
            dev, ptr = self._where(arr)
            b.bind_output(name, dev, self.options.device_id, arr.dtype, list(arr.shape), ptr)
        self._keep = inputs | outputs  # the binding holds raw pointers: keep the arrays alive
        # One run now: onnxruntime only learns here whether the output shapes fit the inputs.
        try:
            self._session.run_with_iobinding(b, self._run_options)
        except Exception as exc:
            shapes = {n: tuple(a.shape) for n, a in self._keep.items()}
            self._bound = False
            raise InputError(f"{self.model.name}: the bound shapes {shapes} do not fit the model: {exc}") from exc

    def _where(self, arr: Any) -> tuple[str, int]:
        if isinstance(arr, np.ndarray):
            return "cpu", arr.ctypes.data
        return "cuda", int(arr.data.ptr)

    def run(self) -> None:
        if not self._bound:
            self._require_bound()
        self._session.run_with_iobinding(self._binding, self._run_options)

    def fork(self, **options: Any) -> OrtRunner:
        stream = options.pop("stream", self._stream)
        if options:
            raise InputError(f"fork() takes only 'stream'; got {sorted(options)}")
        if _stream_ptr(stream) != _stream_ptr(self._stream):
            # The CUDA EP's stream is fixed per session: another stream needs another session.
            return OrtRunner(self.model, device=self.device, options=self.options, stream=stream)
        return OrtRunner(self.model, device=self.device, options=self.options, stream=stream, _session=self._session)

    def close(self) -> None:
        self._binding.clear_binding_inputs()
        self._binding.clear_binding_outputs()
        self._keep = {}
        super().close()
