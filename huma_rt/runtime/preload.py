"""Preload: everything that does not change between frames, done once per Avatar and timed.

Phases (each logged and recorded in ``PreloadReport.phases``): ``manifest`` (read + verify the
bundle), ``map`` (memory-map splat buffers, gather the dynamic Gaussians), ``networks`` (open
encoder/spatial/deformer runners), ``spatial`` (run the spatial encoder once over the dynamic
Gaussians' canonical means: the deformer's per-Gaussian features), ``renderer`` (FrameRenderer:
static projections, colours and the static frame, which depend only on the camera),
``session`` (allocate every buffer of the first session), ``warmup`` (one silent frame through
the whole chain; on a GPU this is where the frame is captured as a CUDA graph).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from huma_rt._optional import has_cuda, require_cuda
from huma_rt.errors import FormatError, InputError, MissingDependencyError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
RendererFactory = Callable[..., Any]
"""factory(camera, gaussians, dynamic [N] bool, *, background) -> object with the FrameRenderer
``render(means, quats, log_scales, out)`` method (docs/INTERFACES.md, Rendering)."""


@dataclass
class PreloadReport:
    """What preload did and how long each phase took (seconds, in order)."""

    phases: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    renderer: str = ""
    backends: dict[str, str] = field(default_factory=dict)
    gaussians: int = 0
    dynamic: int = 0

    @property
    def total_s(self) -> float:
        return float(sum(self.phases.values()))

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.phases[name] = time.perf_counter() - t0
        log.info("preload %-9s %7.1f ms", name, 1e3 * self.phases[name])

    def to_dict(self) -> dict[str, Any]:
        return {
            "phases_ms": {k: 1e3 * v for k, v in self.phases.items()}, "total_ms": 1e3 * self.total_s,
            "device": self.device, "precision": self.precision, "renderer": self.renderer,
            "backends": dict(self.backends), "gaussians": self.gaussians, "dynamic": self.dynamic,
        }  # fmt: skip

    def __str__(self) -> str:
        rows = [f"  {k:<9} {1e3 * v:8.1f} ms" for k, v in self.phases.items()]
        return "\n".join([f"preload {1e3 * self.total_s:.1f} ms on {self.device} ({self.precision}):", *rows])


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a CUDA GPU is usable, else 'cpu'; 'cuda' without one -> DeviceError."""
    if device not in DEVICES:
        raise InputError(f"device must be one of {list(DEVICES)}; got {device!r}")
    if device == "auto":
        return "cuda" if has_cuda() else "cpu"
    if device == "cuda":
        require_cuda("Avatar.load(device='cuda')")
    return device


def resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"  # fp16 graphs only pay off on GPUs
    if precision not in ("fp32", "fp16"):
        raise InputError(f"precision must be 'auto', 'fp32' or 'fp16'; got {precision!r}")
    return precision


def renderer_factory(renderer: str | RendererFactory, device: str, threads: int | None = None) -> tuple[RendererFactory, str]:
    """(factory, description) for ``renderer``: 'auto', a huma_rt.render backend name, or a callable."""
    if callable(renderer):
        return renderer, getattr(renderer, "__name__", type(renderer).__name__)
    if not isinstance(renderer, str):
        raise InputError(f"renderer must be 'auto', a backend name or a factory; got {renderer!r}")
    backend = ("cuda" if device == "cuda" else "cpu") if renderer == "auto" else renderer
    try:
        from huma_rt.render import FrameRenderer
    except ImportError:
        try:  # no incremental renderer in this installation: re-render whole frames
            from huma_rt.runtime.whole_frame import WholeFrameRenderer as FrameRenderer
        except ImportError as exc:
            raise MissingDependencyError(f"the renderer (huma_rt.render) cannot be imported: {exc}") from exc
        log.info("huma_rt.render has no FrameRenderer: rendering whole frames with huma_rt.render.Renderer")

    extra = {}
    if "threads" in inspect.signature(FrameRenderer).parameters:  # CPU backends: OpenMP threads
        extra["threads"] = threads or 0

    def make(camera, gaussians, dynamic, *, background):
        return FrameRenderer(camera, gaussians, dynamic, background=background, backend=backend, **extra)

    return make, f"{FrameRenderer.__module__}.{FrameRenderer.__name__}/{backend}"


def io_names(runner, graph: str, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    """FormatError unless the runner's signature has the contract's tensor names."""
    if tuple(runner.inputs) != inputs or set(runner.outputs) != set(outputs):
        raise FormatError(
            f"{graph} network must have inputs {list(inputs)} and outputs {sorted(outputs)} "
            f"(docs/INTERFACES.md); got {list(runner.inputs)} -> {sorted(runner.outputs)}"
        )


def io_dims(runners: dict, encoder, deformer, where: str) -> None:
    """FormatError unless each network's fixed trailing axes equal the bundle's configs.

    Preload allocates the feature, code and delta buffers from the configs; a manifest that
    claims other widths than its graphs have must be refused before those allocations (a
    hidden width of 4096 on 46k Gaussians would be 750 MB of features), naming the field.
    """
    want = {
        ("encoder", "inputs", "mel"): (encoder.mel.n_mels, "encoder.mel.n_mels"),
        ("encoder", "outputs", "code"): (encoder.code_dim, "encoder.code_dim"),
        ("spatial", "outputs", "feat"): (deformer.hidden, "deformer.hidden"),
        ("deformer", "inputs", "feat"): (deformer.hidden, "deformer.hidden"),
        ("deformer", "inputs", "code"): (deformer.code_dim, "deformer.code_dim"),
    }
    for (graph, side, name), (size, field_name) in want.items():
        spec = getattr(runners[graph], side).get(name)
        last = spec.shape[-1] if spec is not None and spec.shape else -1
        if last not in (-1, size):  # -1: a dynamic axis, checked when the runner binds its buffer
            raise FormatError(
                f"{where}: the manifest's {field_name} is {size}, but the {graph} network's {name!r} "
                f"has {last} on its last axis (a manifest that does not match its models)"
            )


def dynamic_rows(region: np.ndarray) -> np.ndarray:
    """Indices [Nd] int64 of the dynamic Gaussians (region id != 0)."""
    return np.flatnonzero(np.asarray(region) != 0)
