"""The JSON sidecar beside every TensorRT plan, and the check that a plan fits this machine.

``engines/`` writes it (``<plan>.json``: ``encoder.fp16.plan`` -> ``encoder.fp16.plan.json``);
the runtime reads it before deserializing a plan, because a TensorRT engine only runs on the
TensorRT version and GPU compute capability it was built for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from huma_rt._files import sha256_file
from huma_rt.errors import FormatError

log = logging.getLogger(__name__)

SCHEMA = 1


@dataclass
class Sidecar:
    """What a plan was built from and for.

    profiles: {input: {"min": [..], "opt": [..], "max": [..]}}; compute_capability: "8.9";
    flags: every build setting that changes the engine (also part of the cache key).
    """

    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profiles: dict[str, dict[str, list[int]]]
    onnx_file: str
    onnx_sha256: str
    plan_sha256: str
    flags: dict[str, Any]
    build_time_s: float
    built_at: str
    cache_key: str
    trtexec: str
    huma_rt_version: str = ""
    schema: int = SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sidecar:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            raise FormatError(f"engine sidecar has unknown fields {unknown}; known: {sorted(names)}")
        try:
            sc = cls(**d)
        except TypeError as exc:
            raise FormatError(f"engine sidecar is incomplete: {exc}") from exc
        if sc.schema != SCHEMA:
            raise FormatError(f"engine sidecar schema must be {SCHEMA}; got {sc.schema}")
        return sc

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p


def sidecar_path(plan: str | Path) -> Path:
    """``x.plan`` -> ``x.plan.json``."""
    p = Path(plan)
    return p.with_name(p.name + ".json")


def load_sidecar(plan: str | Path) -> Sidecar:
    """Read the sidecar of ``plan``; FormatError when it is missing or malformed."""
    p = sidecar_path(plan)
    if not p.is_file():
        raise FormatError(f"TensorRT plan {plan} has no sidecar {p.name}; rebuild it with 'huma-rt build'")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"engine sidecar {p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FormatError(f"engine sidecar {p} must hold a JSON object; got {type(data).__name__}")
    return Sidecar.from_dict(data)


def mismatches(sc: Sidecar, *, trt_version: str, compute_capability: str, gpu_name: str = "") -> list[str]:
    """Reasons why a plan described by ``sc`` cannot run here; empty when it can.

    TensorRT refuses (or misbehaves on) a plan from another TensorRT version or another compute
    capability; another GPU model of the same capability runs it, so that only logs a warning.
    """
    reasons = []
    if sc.trt_version != trt_version:
        reasons.append(f"built with TensorRT {sc.trt_version}, this machine has TensorRT {trt_version}")
    if sc.compute_capability != compute_capability:
        reasons.append(
            f"built for compute capability {sc.compute_capability} ({sc.gpu_name}), this GPU is "
            f"{compute_capability}" + (f" ({gpu_name})" if gpu_name else "")
        )
    if not reasons and gpu_name and sc.gpu_name != gpu_name:
        log.warning("plan built on %s runs on %s (same compute capability %s); tactics may be slower",
                    sc.gpu_name, gpu_name, compute_capability)  # fmt: skip
    return reasons


def verify_plan_file(plan: str | Path, sc: Sidecar) -> None:
    """FormatError when the plan's bytes are not the ones its sidecar describes."""
    got = sha256_file(plan)
    if got != sc.plan_sha256:
        raise FormatError(f"TensorRT plan {plan} has sha256 {got[:12]}…, its sidecar says {sc.plan_sha256[:12]}…")
