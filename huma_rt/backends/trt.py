"""TensorRT runner: one deserialized engine per process, one execution context per session.

``TrtEngine.load(plan)`` checks the sidecar (TensorRT version, compute capability, plan bytes)
and deserializes once; ``TrtRunner`` owns one ``IExecutionContext`` and one CUDA stream (the
session's); ``bind()`` sets input shapes and every tensor address once; ``run()`` is a single
``execute_async_v3`` on that stream. Written against the TensorRT 10.x / 11.x Python API
(name-based I/O; no bindings indices, no ``execute_v2``).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt._optional import require, require_cuda
from huma_rt.backends.base import Runner, TensorSpec
from huma_rt.backends.sidecar import Sidecar, load_sidecar, mismatches, verify_plan_file
from huma_rt.errors import BackendError, FormatError, InputError

log = logging.getLogger(__name__)


def tensorrt_module():
    """The ``tensorrt`` module, or MissingDependencyError naming the 'trt' extra."""
    return require("tensorrt", "TensorRT engines")


def gpu_info(device_id: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device ``device_id``."""
    cupy = require_cuda("TensorRT engines")
    props = cupy.cuda.runtime.getDeviceProperties(device_id)
    name = props["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return name, f"{props['major']}.{props['minor']}"


@functools.lru_cache(maxsize=1)
def _logger():
    trt = tensorrt_module()
    return trt.Logger(trt.Logger.WARNING)


def device_pointer(arr: Any) -> int:
    """Device address of a CuPy array (or anything with ``__cuda_array_interface__``)."""
    data = getattr(arr, "data", None)
    if data is not None and hasattr(data, "ptr"):
        return int(data.ptr)
    cai = getattr(arr, "__cuda_array_interface__", None)
    if cai is None:
        raise InputError(f"expected a CUDA array (CuPy); got {type(arr).__name__}")
    return int(cai["data"][0])


class TrtEngine:
    """A deserialized plan, shared by every session's TrtRunner."""

    def __init__(self, plan: Path, sidecar: Sidecar, engine: Any, runtime: Any) -> None:
        self.plan = plan
        self.sidecar = sidecar
        self.engine = engine
        self._runtime = runtime  # the engine must not outlive its runtime
        trt = tensorrt_module()
        io = sidecar.extra.get("io", {})
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs: dict[str, TensorSpec] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(int(d) for d in engine.get_tensor_shape(name))
            axes = tuple(io.get(name, {}).get("axes", ("",) * len(shape)))
            spec = TensorSpec(shape, np.dtype(trt.nptype(engine.get_tensor_dtype(name))), axes)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[name] = spec

    @classmethod
    def load(cls, plan: str | Path, device_id: int = 0) -> TrtEngine:
        """Check ``plan``'s sidecar against this machine and deserialize it.

        BackendError (with the reasons) when the plan was built for another TensorRT version or
        compute capability; FormatError when the plan or its sidecar is missing or corrupt.
        """
        plan = Path(plan)
        if not plan.is_file():
            raise FormatError(f"TensorRT plan {plan} does not exist")
        sc = load_sidecar(plan)
        trt = tensorrt_module()
        name, cc = gpu_info(device_id)
        reasons = mismatches(sc, trt_version=trt.__version__, compute_capability=cc, gpu_name=name)
        if reasons:
            raise BackendError(f"TensorRT plan {plan.name} does not fit this machine: " + "; ".join(reasons))
        verify_plan_file(plan, sc)
        runtime = trt.Runtime(_logger())
        engine = runtime.deserialize_cuda_engine(plan.read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT could not deserialize {plan} (see the TensorRT log above)")
        log.info("deserialized %s (TensorRT %s, %s sm %s)", plan.name, trt.__version__, name, cc)
        return cls(plan, sc, engine, runtime)

    def create_runner(self, stream: Any = None) -> TrtRunner:
        """A runner with its own execution context for one session (on ``stream``)."""
        return TrtRunner(self, stream=stream)


class TrtRunner(Runner):
    """One execution context of a shared TrtEngine, on one CUDA stream; CuPy buffers only.

    stream: a CuPy stream or a raw cudaStream_t (int); None creates a non-blocking CuPy stream.
    The caller synchronizes the stream before reading outputs on the host.
    """

    backend = "tensorrt"

    def __init__(self, engine: TrtEngine, stream: Any = None) -> None:
        super().__init__(engine.inputs, engine.outputs, "cuda")
        self.engine = engine
        if stream is None:
            stream = require_cuda("TensorRT engines").cuda.Stream(non_blocking=True)
        self.stream = stream
        self._stream_handle = int(getattr(stream, "ptr", stream))
        self.context = engine.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"TensorRT could not create an execution context for {engine.plan.name}")
        self._keep: dict[str, Any] = {}

    def _check_device(self, arrays: dict[str, Any]) -> None:
        for name, arr in arrays.items():
            if isinstance(arr, np.ndarray):
                raise InputError(f"'{name}' must be a CuPy (CUDA) array for the TensorRT runner; got numpy")

    def _bind(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        profiles = self.engine.sidecar.profiles
        ctx = self.context
        for name, arr in inputs.items():
            shape = tuple(arr.shape)
            prof = profiles.get(name)
            if prof and not all(lo <= s <= hi for s, lo, hi in zip(shape, prof["min"], prof["max"], strict=True)):
                raise InputError(
                    f"input '{name}' shape {shape} is outside the plan's profile "
                    f"min {prof['min']} .. max {prof['max']}; rebuild with larger --gaussians/--max-batch"
                )
            if not ctx.set_input_shape(name, shape):
                raise InputError(f"TensorRT refused shape {shape} for input '{name}'")
            ctx.set_tensor_address(name, device_pointer(arr))
        for name, arr in outputs.items():
            want = tuple(int(d) for d in ctx.get_tensor_shape(name))
            if want != tuple(arr.shape):
                raise InputError(f"output '{name}' must have shape {want} for these inputs; got {tuple(arr.shape)}")
            ctx.set_tensor_address(name, device_pointer(arr))
        self._keep = inputs | outputs  # TensorRT holds raw addresses: keep the arrays alive

    def run(self) -> None:
        if not self._bound:
            self._require_bound()
        if not self.context.execute_async_v3(self._stream_handle):
            raise BackendError(f"TensorRT execute_async_v3 failed for {self.engine.plan.name}")

    def fork(self, **options: Any) -> TrtRunner:
        stream = options.pop("stream", None)
        if options:
            raise InputError(f"fork() takes only 'stream'; got {sorted(options)}")
        return self.engine.create_runner(stream=stream)

    def close(self) -> None:
        self._keep = {}
        self.context = None
        super().close()
