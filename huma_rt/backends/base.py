"""The Runner interface: run one network on arrays bound once.

A runner is created per model and per session. ``bind()`` takes the caller's preallocated
input and output arrays once (the caller owns them; the runner only keeps references and
pointers), checks them against the model's signature and fixes the concrete dynamic shapes;
``run()`` then reads the bound inputs and writes the bound outputs in place, allocating nothing.
``fork()`` makes a runner for another session that shares the loaded model (one TensorRT engine,
one onnxruntime session) but has its own bindings (its own execution context on TensorRT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from huma_rt.errors import BackendError, InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a network.

    shape: ints, -1 for a dynamic axis. dtype: numpy dtype. axes: the symbolic name of each
    axis ("" for a fixed one); two axes with the same name must have the same length.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    axes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        dims = [a or str(s) if s < 0 else str(s) for s, a in zip(self.shape, self.axes or ("",) * len(self.shape), strict=True)]
        return f"[{', '.join(dims)}] {np.dtype(self.dtype).name}"


def array_shape_dtype(arr: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a numpy or CuPy array (anything with .shape and .dtype)."""
    try:
        return tuple(int(s) for s in arr.shape), np.dtype(arr.dtype)
    except (AttributeError, TypeError) as exc:
        raise InputError(f"expected a numpy or CuPy array; got {type(arr).__name__}") from exc


def is_c_contiguous(arr: Any) -> bool:
    flags = getattr(arr, "flags", None)
    return bool(flags is not None and flags["C_CONTIGUOUS"])


def check_bindings(
    specs: dict[str, TensorSpec], arrays: dict[str, Any], kind: str, sizes: dict[str, int]
) -> None:
    """Check ``arrays`` against ``specs`` (names, dtype, rank, fixed dims, C order, shared axes).

    ``sizes`` maps axis names to lengths already seen (inputs first, then outputs) and is
    updated, so an output axis named like an input axis must match it.
    """
    missing, unknown = sorted(set(specs) - set(arrays)), sorted(set(arrays) - set(specs))
    if missing or unknown:
        raise InputError(
            f"{kind} must be exactly {sorted(specs)}; missing {missing}, unknown {unknown}"
        )
    for name, spec in specs.items():
        shape, dtype = array_shape_dtype(arrays[name])
        if dtype != np.dtype(spec.dtype):
            raise InputError(f"{kind[:-1]} '{name}' must be {np.dtype(spec.dtype).name}; got {dtype.name}")
        if len(shape) != len(spec.shape):
            raise InputError(f"{kind[:-1]} '{name}' must have shape {spec.describe()}; got {shape}")
        if not is_c_contiguous(arrays[name]):
            raise InputError(f"{kind[:-1]} '{name}' must be C-contiguous (bound by address)")
        axes = spec.axes or ("",) * len(shape)
        for i, (want, got, axis) in enumerate(zip(spec.shape, shape, axes, strict=True)):
            if want >= 0 and got != want:
                raise InputError(f"{kind[:-1]} '{name}' axis {i} must be {want}; got shape {shape}")
            if want < 0 and got < 1:
                raise InputError(f"{kind[:-1]} '{name}' axis {i} ({axis or 'dynamic'}) must be >= 1; got shape {shape}")
            if want < 0 and axis:
                seen = sizes.setdefault(axis, got)
                if seen != got:
                    raise InputError(
                        f"{kind[:-1]} '{name}' axis {i} ({axis}) is {got}, but another tensor gives {axis} = {seen}"
                    )


class Runner:
    """Run one network on preallocated arrays. Subclasses implement ``_bind`` and ``run``.

    Attributes: ``inputs`` / ``outputs`` ({name: TensorSpec}), ``backend`` (name), ``device``
    ("cpu" or "cuda"), ``reason`` (why this backend was chosen; set by ``open_runner``).
    """

    backend = "none"

    def __init__(self, inputs: dict[str, TensorSpec], outputs: dict[str, TensorSpec], device: str) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.device = device
        self.reason = ""
        self._bound = False
        self._closed = False

    def bind(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Bind the caller's arrays (numpy on "cpu", CuPy on "cuda"); may be called again."""
        if self._closed:
            raise BackendError(f"{self.backend} runner is closed")
        sizes: dict[str, int] = {}
        check_bindings(self.inputs, inputs, "inputs", sizes)
        check_bindings(self.outputs, outputs, "outputs", sizes)
        self._check_device(inputs | outputs)
        self._bound = False  # a half-done rebind must not run on a mix of old and new buffers
        self._bind(dict(inputs), dict(outputs))
        self._bound = True

    def _check_device(self, arrays: dict[str, Any]) -> None:
        for name, arr in arrays.items():
            on_cpu = isinstance(arr, np.ndarray)
            if on_cpu != (self.device == "cpu"):
                want = "numpy arrays" if self.device == "cpu" else "CuPy (CUDA) arrays"
                raise InputError(f"'{name}' must be one of {want} for a {self.device} runner; got {type(arr).__name__}")

    def _bind(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        raise NotImplementedError

    def run(self) -> None:
        """Run once: read the bound inputs, write the bound outputs (asynchronously on CUDA)."""
        raise NotImplementedError

    def fork(self, **options: Any) -> Runner:
        """A runner for another session sharing this one's loaded model; bind it separately."""
        raise NotImplementedError

    def close(self) -> None:
        """Release this runner's bindings (the shared model goes when the last user does)."""
        self._closed = True
        self._bound = False

    def _require_bound(self) -> None:
        if not self._bound:
            raise BackendError(f"{self.backend} runner: call bind(inputs=..., outputs=...) before run()")

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        sig = ", ".join(f"{n}{s.describe()}" for n, s in self.inputs.items())
        return f"<{type(self).__name__} {self.backend}/{self.device} ({sig})>"
