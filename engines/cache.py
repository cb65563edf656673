"""The engine cache and the shared timing cache.

An engine is keyed by sha256(ONNX bytes + build flags + TensorRT version + compute capability):
exactly what decides its bytes, so a second build of the same thing is a cache hit. Entries are
``<key>.plan`` + ``<key>.plan.json`` (the sidecar). The TensorRT timing cache (one file per
TensorRT version and compute capability) is read and merged back under a file lock, so
concurrent builds on one machine share and never corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from huma_rt.backends.sidecar import Sidecar, load_sidecar, sha256_file, sidecar_path
from huma_rt.errors import FormatError

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 600.0  # a build on a big GPU takes minutes; waiting longer means a stale lock


def default_cache_dir() -> Path:
    """$HUMA_RT_CACHE/engines, else $XDG_CACHE_HOME/huma-rt/engines, else ~/.cache/huma-rt/engines."""
    if os.environ.get("HUMA_RT_CACHE"):
        return Path(os.environ["HUMA_RT_CACHE"]) / "engines"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "huma-rt" / "engines"


def cache_key(onnx_bytes: bytes, flags: dict, trt_version: str, compute_capability: str) -> str:
    """sha256 over the ONNX bytes, the canonical JSON of the flags, TensorRT version and sm."""
    h = hashlib.sha256()
    h.update(onnx_bytes)
    h.update(json.dumps(flags, sort_keys=True, separators=(",", ":")).encode())
    h.update(f"\0trt={trt_version}\0sm={compute_capability}".encode())
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EngineCache:
    """Plans and sidecars by cache key in ``root``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def plan_path(self, key: str) -> Path:
        return self.root / f"{key}.plan"

    def get(self, key: str) -> tuple[Path, Sidecar] | None:
        """(plan path, sidecar) of a valid entry, or None (a corrupt entry is dropped)."""
        plan = self.plan_path(key)
        if not plan.is_file():
            return None
        try:
            sc = load_sidecar(plan)
            if sc.cache_key != key or sha256_file(plan) != sc.plan_sha256:
                raise FormatError("key or plan bytes do not match the sidecar")
        except FormatError as exc:
            log.warning("dropping corrupt engine cache entry %s: %s", plan.name, exc)
            plan.unlink(missing_ok=True)
            sidecar_path(plan).unlink(missing_ok=True)
            return None
        return plan, sc

    def put(self, key: str, plan_file: Path, sc: Sidecar) -> Path:
        """Copy ``plan_file`` and its sidecar into the cache under ``key``."""
        dest = self.plan_path(key)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
        shutil.copyfile(plan_file, tmp)
        os.replace(tmp, dest)
        atomic_write(sidecar_path(dest), (json.dumps(sc.to_dict(), indent=2) + "\n").encode())
        return dest

    def timing_cache_path(self, trt_version: str, compute_capability: str) -> Path:
        return self.root / f"timing-trt{trt_version}-sm{compute_capability.replace('.', '')}.cache"

    def _lock(self, path: Path):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)

    def read_timing_cache(self, path: Path) -> bytes:
        """The timing cache's bytes (b"" when there is none yet), read under its lock."""
        with self._lock(path):
            return path.read_bytes() if path.is_file() else b""

    def update_timing_cache(self, path: Path, merge) -> None:
        """Under the lock: ``merge(bytes on disk now) -> bytes`` and write the result."""
        with self._lock(path):
            on_disk = path.read_bytes() if path.is_file() else b""
            atomic_write(path, merge(on_disk))
