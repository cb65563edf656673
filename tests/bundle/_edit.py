"""Helpers that tamper with a packed bundle the way an attacker or a broken tool would."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path


def rewrite_manifest(root: Path, edit) -> dict:
    """Apply ``edit(manifest_dict)`` to root/manifest.json; returns the new manifest."""
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))
    return m


def replace_file(root: Path, rel: str, data: bytes, *, relist: bool = True) -> None:
    """Write ``data`` to root/rel and (with ``relist``) record its new size and sha256 in the manifest."""
    (root / rel).write_bytes(data)
    if relist:
        rec = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        rewrite_manifest(root, lambda m: m["files"].__setitem__(rel, rec))


def tar_dot(root: Path, out: Path) -> Path:
    """What ``tar -cf out -C root .`` writes: members ".", "./manifest.json", "./models", ..."""
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(root, arcname=".")
    return out
