"""The only module that calls TensorRT's builder API (TensorRT 10.x and 11.x).

Small steps, each a plain function: ``create_network`` (strongly typed) -> ``parse_onnx`` ->
``create_config`` (profiles, optimization level, workspace, timing cache, progress) ->
``build_serialized`` -> ``save_timing_cache``. No precision builder flags: TensorRT 11 removed
``BuilderFlag.FP16``; with strongly typed networks the fp16 ONNX graph decides the precision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huma_rt.errors import BackendError

from .profiles import Profile

log = logging.getLogger(__name__)

# progress(phase, step, steps) -- step is -1 when a phase starts, steps when it finishes
ProgressFn = Callable[[str, int, int], None]


def create_network(trt: Any, logger: Any) -> tuple[Any, Any]:
    """(builder, network): a strongly typed network.

    TensorRT 10.x needs the STRONGLY_TYPED creation flag; 11.x networks are always strongly
    typed (the flag is accepted where it still exists). EXPLICIT_BATCH is the default since 10.0
    and is not passed.
    """
    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:
        flags |= 1 << int(strongly)
    elif int(trt.__version__.split(".")[0]) < 11:
        raise BackendError(f"TensorRT {trt.__version__} has no STRONGLY_TYPED network flag; huma-rt needs TensorRT >= 10")
    network = builder.create_network(flags)
    if network is None:
        raise BackendError("TensorRT could not create a network definition")
    return builder, network


def parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> Any:
    """Parse ``onnx_path`` into ``network``; BackendError with every parser error."""
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise BackendError(f"TensorRT's ONNX parser refused {onnx_path.name}: " + "; ".join(errors or ["(no detail)"]))
    return parser  # the parser must outlive the build (it owns weights the network points to)


def make_progress_monitor(trt: Any, progress: ProgressFn) -> Any:
    """A ``trt.IProgressMonitor`` forwarding phases and steps to ``progress``."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self._steps[phase_name] = int(num_steps)
            progress(str(phase_name), -1, int(num_steps))

        def step_complete(self, phase_name, step):
            progress(str(phase_name), int(step), self._steps.get(phase_name, 0))
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            n = self._steps.pop(phase_name, 0)
            progress(str(phase_name), n, n)

    return _Monitor()


def create_config(
    trt: Any, builder: Any, network: Any, *, profiles: dict[str, Profile], opt_level: int,
    workspace_mib: int, timing_cache: bytes, monitor: Any = None,
) -> Any:  # fmt: skip
    """Builder config: one optimization profile covering every dynamic input, level, workspace,
    timing cache (``timing_cache`` bytes; b"" starts an empty one) and progress monitor."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    config.builder_optimization_level = opt_level
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    missing = [t.name for t in inputs if t.name not in profiles and any(d < 0 for d in t.shape)]
    if missing:
        raise BackendError(f"dynamic inputs {missing} have no optimization profile")
    profile = builder.create_optimization_profile()
    for t in inputs:
        if t.name in profiles:
            p = profiles[t.name]
            profile.set_shape(t.name, p.min, p.opt, p.max)
    if config.add_optimization_profile(profile) < 0:
        raise BackendError(f"TensorRT refused the optimization profile {profiles}")
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    if monitor is not None:
        config.progress_monitor = monitor
    return config


def build_serialized(builder: Any, network: Any, config: Any) -> bytes:
    """Build and serialize the engine; BackendError when TensorRT returns nothing."""
    t0 = time.perf_counter()
    host = builder.build_serialized_network(network, config)
    if host is None:
        raise BackendError("TensorRT failed to build the engine (see the TensorRT log above)")
    log.info("engine built in %.1f s", time.perf_counter() - t0)
    return bytes(memoryview(host))


def merged_timing_cache(config: Any, on_disk: bytes) -> bytes:
    """This build's timing cache combined with what is on disk now, serialized."""
    cache = config.get_timing_cache()
    if on_disk:
        previous = config.create_timing_cache(on_disk)
        if not cache.combine(previous, ignore_mismatch=True):
            log.warning("could not combine the timing cache on disk into this build's")
    return bytes(memoryview(cache.serialize()))


def tensorrt_logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)
