"""File helpers shared by the bundle, the engine sidecars and the speech caches: sha256 read in
blocks, a digest remembered per (path, size, mtime), and atomic writes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

BLOCK = 1 << 22  # 4 MiB reads: hashing a model or a splat buffer never holds it whole


def _feed(h, fileobj, progress: Callable[[int], None] | None = None,
          sink: Callable[[bytes], object] | None = None) -> None:  # fmt: skip
    done = 0
    for block in iter(lambda: fileobj.read(BLOCK), b""):
        h.update(block)
        if sink is not None:
            sink(block)
        done += len(block)
        if progress is not None:
            progress(done)


def sha256_bytes_of(fileobj, progress: Callable[[int], None] | None = None,
                    sink: Callable[[bytes], object] | None = None) -> str:  # fmt: skip
    """Hex sha256 of a binary file object; ``progress(done_bytes)`` per block; ``sink(block)``
    receives each block (a copy hashed as it is written)."""
    h = hashlib.sha256()
    _feed(h, fileobj, progress, sink)
    return h.hexdigest()


def sha256_file(*paths: str | os.PathLike) -> str:
    """Hex sha256 of the files' contents, one after the other."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            _feed(h, f)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers see the old file
    or the whole new one, never a part. Creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_sha256(index_path: Path, *paths: Path, keep: int = 64) -> str:
    """``sha256_file(*paths)``, remembered in the JSON ``index_path`` per (path, size, mtime) of
    every file: hashing the packaged voice or ASR model on every load costs ~0.1-0.2 s. Keeps the
    newest ``keep`` entries (reinstalls add stamps); a cache that cannot be written only costs time."""
    stamp = "|".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if not isinstance(index, dict):
        index = {}
    if isinstance(index.get(stamp), str):
        return index[stamp]
    digest = sha256_file(*paths)
    index[stamp] = digest
    try:
        atomic_write(index_path, json.dumps(dict(list(index.items())[-keep:])).encode())
    except OSError as exc:
        log.debug("cannot record the digest in %s: %s", index_path, exc)
    return digest
