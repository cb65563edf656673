"""TEST DOUBLE for the ``tensorrt`` module's runtime API (TensorRT cannot be installed here).

It implements only what huma_rt.backends.trt calls, with the names and signatures of the
documented TensorRT 10.x/11.x Python API (Runtime.deserialize_cuda_engine, ICudaEngine
num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_shape / get_tensor_dtype,
IExecutionContext set_input_shape / set_tensor_address / get_tensor_shape / execute_async_v3),
and records every call so tests can check the sequence. It computes nothing.
"""

from __future__ import annotations

import enum
import types

import numpy as np


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1


def nptype(dt):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dt]


class Logger:
    WARNING = 2

    def __init__(self, severity=None):
        self.severity = severity


# the deformer's I/O: name -> (mode, shape with -1 dynamic)
DEFORMER_IO = {
    "feat": (TensorIOMode.INPUT, (-1, 48)),
    "code": (TensorIOMode.INPUT, (-1, 32)),
    "dmu": (TensorIOMode.OUTPUT, (-1, -1, 3)),
    "dquat": (TensorIOMode.OUTPUT, (-1, -1, 4)),
    "dscale": (TensorIOMode.OUTPUT, (-1, -1, 3)),
}


class ExecutionContext:
    def __init__(self, engine):
        self.engine, self.calls, self.shapes = engine, [], {}

    def set_input_shape(self, name, shape):
        self.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, ptr):
        self.calls.append(("set_tensor_address", name, ptr))
        return True

    def get_tensor_shape(self, name):
        # deformer rule: outputs are [B, N, c] with B from code, N from feat
        b, n = self.shapes["code"][0], self.shapes["feat"][0]
        return (b, n, DEFORMER_IO[name][1][2])

    def execute_async_v3(self, stream_handle):
        self.calls.append(("execute_async_v3", stream_handle))
        return True


class CudaEngine:
    def __init__(self):
        self.names = list(DEFORMER_IO)
        self.contexts = []

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return DEFORMER_IO[name][0]

    def get_tensor_shape(self, name):
        return DEFORMER_IO[name][1]

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def create_execution_context(self):
        ctx = ExecutionContext(self)
        self.contexts.append(ctx)
        return ctx


class Runtime:
    deserialized: list = []

    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, data):
        Runtime.deserialized.append(bytes(data))
        return CudaEngine()


def make_module(version: str = "10.9.0.34") -> types.ModuleType:
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.TensorIOMode, mod.DataType, mod.nptype = TensorIOMode, DataType, nptype
    mod.Logger, mod.Runtime = Logger, Runtime
    Runtime.deserialized = []
    return mod


class DeviceArray:
    """TEST DOUBLE for a CuPy array: shape, dtype, C order and a fake device address."""

    _next = 0x7F0000000000

    def __init__(self, shape, dtype=np.float32):
        self.shape, self.dtype, self.flags = tuple(shape), np.dtype(dtype), {"C_CONTIGUOUS": True}
        DeviceArray._next += 1 << 20
        self.__cuda_array_interface__ = {"data": (DeviceArray._next, False), "shape": self.shape, "typestr": self.dtype.str, "version": 3}
