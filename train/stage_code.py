"""A fingerprint of the code each training stage runs, so ``--resume`` redoes a stage whose code
changed (after an upgrade, or an edit) instead of keeping its old output.

The fingerprint is the sha256 of huma-rt's version and of the source of the stage's modules and
every ``huma_rt.train`` module they import (relative or absolute, lazy ones included), transitively. The
runtime's own code (the rasterizer, the exported model classes) enters through the version only:
it changes with releases, and an edit to it in a checkout is not seen here.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import huma_rt

__all__ = ["STAGE_MODULES", "modules_code", "stage_code", "train_imports"]

_TRAIN_DIR = Path(__file__).resolve().parent
_PACKAGE = "huma_rt.train"

# the modules whose functions each stage calls (their train imports are followed from there)
STAGE_MODULES: dict[str, tuple[str, ...]] = {
    "video": ("video",),
    "track": ("tracking",),
    "static": ("fit_data", "fit_static"),
    "codes": ("articulation_codes",),
    "articulated": ("fit_articulated",),
    "audio": ("audio_adapt",),
    "pack": ("pack_avatar", "prune_hidden"),
}


def train_imports(module: str) -> frozenset[str]:
    """``module`` (a name inside huma_rt.train) and every train module it imports, transitively."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if not (_TRAIN_DIR / f"{name}.py").is_file():
            continue  # a name imported from the package, not a module
        seen.add(name)
        tree = ast.parse((_TRAIN_DIR / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 1:
                if node.module:  # from .x import y
                    todo.append(node.module.split(".")[0])
                else:  # from . import x, y
                    todo.extend(a.name for a in node.names)
            elif node.level == 0 and (node.module or "").startswith(_PACKAGE + "."):
                todo.append(node.module.split(".")[2])  # from huma_rt.train.x import y
            elif node.level == 0 and node.module == _PACKAGE:
                todo.extend(a.name for a in node.names)  # from huma_rt.train import x
    return frozenset(seen)


def stage_code(stage: str) -> str:
    """16 hex digits naming huma-rt's version and the source the training ``stage`` runs."""
    if stage not in STAGE_MODULES:
        raise KeyError(f"unknown training stage {stage!r}; expected one of {sorted(STAGE_MODULES)}")
    return modules_code(*STAGE_MODULES[stage])


def modules_code(*modules: str) -> str:
    """16 hex digits naming huma-rt's version and the source of the huma_rt.train ``modules``
    and every train module they import (the report stamps its drawings with it too)."""
    names = sorted(set().union(*(train_imports(m) for m in modules)))
    h = hashlib.sha256(huma_rt.__version__.encode())
    for name in names:
        h.update(name.encode() + b"\0" + (_TRAIN_DIR / f"{name}.py").read_bytes())
    return h.hexdigest()[:16]
