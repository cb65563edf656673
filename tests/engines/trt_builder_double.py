"""TEST DOUBLE for the ``tensorrt`` module's builder API (TensorRT cannot be installed here).

It implements what engines/trt_build.py calls, with the names and signatures of the documented
TensorRT 10.x / 11.x Python API, and records every call in ``CALLS`` so tests can check the
sequence: Builder.create_network(flags), OnnxParser.parse_from_file, create_builder_config,
set_memory_pool_limit, builder_optimization_level, create_optimization_profile / set_shape /
add_optimization_profile, create_timing_cache / set_timing_cache / get_timing_cache /
ITimingCache.combine / serialize, progress_monitor (IProgressMonitor), build_serialized_network.
Version "11.x" has no STRONGLY_TYPED flag (networks are always strongly typed) and no
BuilderFlag.FP16, as in TensorRT 11. The parser reads the real ONNX file's inputs (with onnx);
the "engine" is a JSON description of what was built. Nothing is computed.
"""

from __future__ import annotations

import enum
import json
import types

import onnx

CALLS: list[tuple] = []


class _Flags:
    """Records every attribute read, so tests can assert a removed flag was never touched."""

    def __init__(self, names):
        self._names = dict(names)

    def __getattr__(self, name):
        CALLS.append(("BuilderFlag", name))
        if name not in self._names:
            raise AttributeError(f"type object 'tensorrt.BuilderFlag' has no attribute '{name}'")
        return self._names[name]


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class Logger:
    WARNING = 2

    def __init__(self, severity=None):
        self.severity = severity


class IProgressMonitor:
    def __init__(self):
        CALLS.append(("IProgressMonitor.__init__",))


class Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, tuple(shape)


class Network:
    def __init__(self, flags):
        self.flags, self.inputs = flags, []

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class ParserError:
    def __init__(self, msg):
        self.msg = msg

    def desc(self):
        return self.msg


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse_from_file(self, path):
        CALLS.append(("parse_from_file", path))
        model = onnx.load(path)
        init = {t.name for t in model.graph.initializer}
        for v in model.graph.input:
            if v.name not in init:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                self.network.inputs.append(Tensor(v.name, dims))
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class TimingCache:
    def __init__(self, data: bytes):
        self.entries = set(json.loads(data.decode())) if data else set()

    def combine(self, other, ignore_mismatch):
        CALLS.append(("TimingCache.combine", ignore_mismatch))
        self.entries |= other.entries
        return True

    def serialize(self):
        return memoryview(json.dumps(sorted(self.entries)).encode())


class OptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's parameter names
        CALLS.append(("set_shape", name, tuple(min), tuple(opt), tuple(max)))
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class BuilderConfig:
    def __init__(self):
        self.profiles, self.pools, self.cache = [], {}, None
        self.builder_optimization_level = 3
        self.progress_monitor = None

    def set_memory_pool_limit(self, pool, size):
        CALLS.append(("set_memory_pool_limit", pool, size))
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        CALLS.append(("add_optimization_profile", dict(profile.shapes)))
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        CALLS.append(("create_timing_cache", bytes(data)))
        return TimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        CALLS.append(("set_timing_cache", ignore_mismatch))
        self.cache = cache
        return True

    def get_timing_cache(self):
        CALLS.append(("get_timing_cache",))
        return self.cache

    def set_flag(self, flag):
        CALLS.append(("set_flag", flag))


class Builder:
    def __init__(self, logger):
        CALLS.append(("Builder",))

    def create_network(self, flags=0):
        CALLS.append(("create_network", flags))
        return Network(flags)

    def create_builder_config(self):
        return BuilderConfig()

    def create_optimization_profile(self):
        return OptimizationProfile()

    def build_serialized_network(self, network, config):
        CALLS.append(("build_serialized_network", config.builder_optimization_level))
        mon = config.progress_monitor
        if mon is not None:
            mon.phase_start("Building engine", None, 2)
            mon.step_complete("Building engine", 0)
            mon.step_complete("Building engine", 1)
            mon.phase_finish("Building engine")
        config.cache.entries.add("+".join(t.name for t in network.inputs))  # "tactics" timed
        engine = {
            "inputs": [t.name for t in network.inputs], "flags": network.flags,
            "profiles": {k: [list(s) for s in v] for p in config.profiles for k, v in p.shapes.items()},
            "workspace": config.pools.get(MemoryPoolType.WORKSPACE),
        }  # fmt: skip
        return memoryview(json.dumps(engine).encode())


def make_module(version: str) -> types.ModuleType:
    """A stand-in ``tensorrt`` module of ``version`` ("10.x.y" or "11.x.y")."""
    CALLS.clear()
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    major = int(version.split(".")[0])
    creation = {"STRONGLY_TYPED": 5} if major == 10 else {}
    mod.NetworkDefinitionCreationFlag = types.SimpleNamespace(**creation)
    mod.BuilderFlag = _Flags({"FP16": 0, "TF32": 2} if major == 10 else {"TF32": 2})
    for name in ("MemoryPoolType", "Logger", "IProgressMonitor", "OnnxParser", "Builder"):
        setattr(mod, name, globals()[name])
    return mod
