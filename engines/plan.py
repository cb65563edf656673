"""The build plan of an export folder, and every check that needs neither a GPU nor TensorRT.

``make_plan`` reads ``DIR/<model>.<precision>.onnx`` for each model to build, runs the ONNX
checker, the TensorRT op-set check (export/checks.py), the FP16 precision rule
(engines/precision.py) and the profile checks (engines/profiles.py), and returns a BuildPlan
whose ``problems`` list says what would make the build fail or the engine wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from huma_rt.errors import FormatError, HumaError, InputError
from huma_rt.model_config import EncoderConfig

from . import profiles as P
from .precision import declared_precision, precision_problems

log = logging.getLogger(__name__)

MODELS = ("encoder", "spatial", "deformer")
DEFAULT_MODELS = ("encoder", "deformer")  # the per-frame networks; spatial runs once at preload


@dataclass
class BuildFlags:
    """Builder settings that change the engine (they enter the cache key).

    opt_level: TensorRT builder optimization level 0..5; workspace_mib: workspace pool limit.
    """

    opt_level: int = 3
    workspace_mib: int = 2048
    strongly_typed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.opt_level, int) or not 0 <= self.opt_level <= 5:
            raise InputError(f"opt_level must be an integer in 0..5; got {self.opt_level!r}")
        if not isinstance(self.workspace_mib, int) or self.workspace_mib < 16:
            raise InputError(f"workspace_mib must be an integer >= 16; got {self.workspace_mib!r}")


@dataclass
class ModelPlan:
    """One engine to build: which ONNX, which profiles, where the plan goes."""

    model: str
    precision: str
    onnx: Path
    plan: Path
    onnx_sha256: str = ""
    inputs: list[P.InputSig] = field(default_factory=list)
    io_axes: dict[str, dict] = field(default_factory=dict)
    profiles: dict[str, P.Profile] = field(default_factory=dict)
    ops: list[str] = field(default_factory=list)

    def flags(self, build: BuildFlags) -> dict:
        """Everything besides the ONNX bytes that decides the engine (cache key, sidecar)."""
        return {
            "precision": self.precision,
            "strongly_typed": build.strongly_typed,
            "builder_optimization_level": build.opt_level,
            "workspace_mib": build.workspace_mib,
            "profiles": {n: p.to_dict() for n, p in self.profiles.items()},
        }

    def trtexec(self, build: BuildFlags, timing_cache: Path | None = None) -> str:
        """The equivalent trtexec command line (for building with NVIDIA's tool in a container)."""
        args = ["trtexec", f"--onnx={self.onnx}", f"--saveEngine={self.plan}", "--stronglyTyped"]
        dynamic = {s.name: self.profiles[s.name] for s in self.inputs if s.dynamic and s.name in self.profiles}
        if dynamic:
            args += [f"--{k}Shapes={P.shape_arg(dynamic, k)}" for k in ("min", "opt", "max")]
        args += [f"--builderOptimizationLevel={build.opt_level}", f"--memPoolSize=workspace:{build.workspace_mib}M"]
        if timing_cache is not None:
            args.append(f"--timingCacheFile={timing_cache}")
        return shlex.join(args)


@dataclass
class BuildPlan:
    """Every engine of one build, the shared settings, and the problems found."""

    export_dir: Path
    out_dir: Path
    flags: BuildFlags
    sizes: P.ProfileOptions
    models: list[ModelPlan] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Human-readable plan (printed by ``huma-rt build --check``)."""
        lines = [
            f"build plan: {self.export_dir} -> {self.out_dir}",
            f"  sizes: {self.sizes.to_dict()}",
            f"  builder: strongly typed, optimization level {self.flags.opt_level}, workspace {self.flags.workspace_mib} MiB",
        ]
        for m in self.models:
            lines.append(f"  {m.model} ({m.precision}): {m.onnx.name} sha256 {m.onnx_sha256[:12]} -> {m.plan.name}")
            for name, p in m.profiles.items():
                lines.append(f"    profile {name}: min {list(p.min)} opt {list(p.opt)} max {list(p.max)}")
            lines.append(f"    trtexec: {m.trtexec(self.flags)}")
        return "\n".join(lines)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _signature(model) -> tuple[list[P.InputSig], dict[str, dict]]:
    init = {t.name for t in model.graph.initializer}
    sigs, axes = [], {}
    for v in [*model.graph.input, *model.graph.output]:
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in v.type.tensor_type.shape.dim
        )
        axes[v.name] = {"axes": [d if isinstance(d, str) else "" for d in dims]}
        if v in model.graph.input and v.name not in init:
            sigs.append(P.InputSig(v.name, dims))
    return sigs, axes


def _encoder_timing(export_dir: Path) -> tuple[int | None, int]:
    path = export_dir / "encoder.json"
    if not path.is_file():
        return None, 4
    cfg = EncoderConfig.load(path)
    return cfg.receptive_mels, cfg.mels_per_frame


def make_plan(
    export_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    models: tuple[str, ...] = DEFAULT_MODELS,
    precision: str = "fp16",
    sizes: P.ProfileOptions | None = None,
    flags: BuildFlags | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> BuildPlan:
    """Plan and check the build of ``models`` from ``export_dir``; problems go in ``.problems``."""
    from huma_rt.export import checks  # the op-set check and onnx.checker live with the export

    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise FormatError(f"export folder {export_dir} does not exist (write it with 'huma-rt export -o DIR')")
    if precision not in ("fp16", "fp32"):
        raise InputError(f"precision must be 'fp16' or 'fp32'; got {precision!r}")
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        raise InputError(f"models must be a non-empty subset of {list(MODELS)}; got {list(models)}")
    plan = BuildPlan(export_dir, Path(out_dir) if out_dir else export_dir, flags or BuildFlags(), sizes or P.ProfileOptions())
    receptive, mels_per_frame = _encoder_timing(export_dir)
    ranges = P.axis_ranges(plan.sizes, receptive, mels_per_frame)
    parsed = [P.parse_override(o) for o in overrides]
    used: set[str] = set()
    for name in models:
        onnx_path = export_dir / f"{name}.{precision}.onnx"
        mp = ModelPlan(name, precision, onnx_path, plan.out_dir / f"{name}.{precision}.plan")
        plan.models.append(mp)
        if not onnx_path.is_file():
            plan.problems.append(f"{name}: {onnx_path} does not exist")
            continue
        try:
            model = checks.load_model(onnx_path)
            checks.check_graph(onnx_path)
        except FormatError as exc:
            plan.problems.append(f"{name}: {exc}")
            continue
        mp.onnx_sha256 = _sha256(onnx_path)
        mp.ops = checks.op_types(model)
        mp.inputs, mp.io_axes = _signature(model)
        plan.problems += [f"{name}: {onnx_path.name}: TensorRT does not support {op}" for op in checks.unsupported_ops(model)]
        declared = declared_precision(model, onnx_path.name)
        if declared != precision:
            plan.problems.append(f"{name}: {onnx_path.name} declares precision {declared}, the build asks {precision}")
        plan.problems += precision_problems(model, precision, onnx_path.name)
        _profiles(plan, mp, ranges, parsed, used, receptive)
    for key, _ in parsed:
        if key not in used:
            known = sorted({f"{m.model}.{s.name}" for m in plan.models for s in m.inputs})
            plan.problems.append(f"--profile names '{key}', which is no input of the models built (inputs: {known})")
    return plan


def _profiles(plan: BuildPlan, mp: ModelPlan, ranges, parsed, used: set[str], receptive: int | None) -> None:
    for sig in mp.inputs:
        override = [(k, p) for k, p in parsed if k in (sig.name, f"{mp.model}.{sig.name}")]
        try:
            prof = override[-1][1] if override else P.default_profile(sig, ranges)
        except HumaError as exc:
            plan.problems.append(f"{mp.model}: {exc}")
            continue
        used.update(k for k, _ in override)
        mp.profiles[sig.name] = prof
        plan.problems += P.check_profile(mp.model, sig, prof)
        if mp.model == "encoder" and "T" in sig.dims and receptive is not None and len(prof.min) == len(sig.dims):
            i = sig.dims.index("T")
            if prof.min[i] < receptive:
                plan.problems.append(f"encoder: profile of '{sig.name}' min T = {prof.min[i]} is below the encoder's receptive field of {receptive} mel frames")
    plan.problems += P.check_shared_axes(mp.model, mp.inputs, mp.profiles)


def plan_to_json(plan: BuildPlan) -> str:
    """The plan as JSON (for tools)."""
    return json.dumps(
        {
            "export_dir": str(plan.export_dir), "out_dir": str(plan.out_dir),
            "models": [{"model": m.model, "onnx": str(m.onnx), "plan": str(m.plan), **m.flags(plan.flags)} for m in plan.models],
            "problems": plan.problems,
        }, indent=2,
    )  # fmt: skip
