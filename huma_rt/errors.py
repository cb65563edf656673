"""The error hierarchy. Every error a user can cause is a HumaError subclass.

Messages name the contract and the bad value: ``"sample_rate must be 16000; got 44100"``.
The CLI prints ``error: <message>`` and exits 1 for any HumaError, without a traceback.
"""

from __future__ import annotations


class HumaError(Exception):
    """Base of every error huma-rt raises on purpose."""


class InputError(HumaError, ValueError):
    """A value passed by the caller breaks the documented contract."""


class FormatError(HumaError):
    """A file (bundle, checkpoint, PLY, ONNX, config) is missing, corrupt or inconsistent."""


class ConfigError(FormatError, InputError):
    """A model config breaks its schema, whether it was read from a file or built in code (so it
    is both a FormatError and an InputError: callers catching either see it)."""


class MissingDependencyError(HumaError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class DeviceError(HumaError):
    """The requested device (a CUDA GPU) or its driver is not available."""


class BackendError(HumaError):
    """An inference backend (TensorRT, onnxruntime, Triton) failed or refused a model."""
