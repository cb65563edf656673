"""The bundle manifest: what a bundle holds, and the checks a loader runs on it.

A bundle is a folder (or an uncompressed tar of one) with ``manifest.json`` at its root:

- ``models/``: the export folder's ONNX graphs (``{encoder,spatial,deformer}.{fp32,fp16}.onnx``),
  ``encoder.json`` / ``deformer.json``, optional TensorRT plans (``<graph>.fp16.plan``) each with
  its sidecar (``<plan>.json``) beside the ONNX they were built from.
- ``splats/``: one raw little-endian array per Gaussian attribute (``means.f32`` [N,3], ...,
  ``region.u8`` [N]) and an optional background image (``background.f32`` [H,W,3]), each
  loadable with ``np.memmap`` from the shape and dtype the manifest records.

No file is ever unpickled; every file's sha256 is in ``files``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from huma_rt.errors import FormatError

FORMAT = "huma-rt-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

# attribute -> (file, little-endian dtype, per-Gaussian trailing shape; None = SH coefficients)
SPLAT_ARRAYS: dict[str, tuple[str, str]] = {
    "means": ("splats/means.f32", "<f4"),
    "log_scales": ("splats/log_scales.f32", "<f4"),
    "quats": ("splats/quats.f32", "<f4"),
    "opacity_logits": ("splats/opacity_logits.f32", "<f4"),
    "sh": ("splats/sh.f32", "<f4"),
    "region": ("splats/region.u8", "|u1"),
}
BACKGROUND_FILE = "splats/background.f32"
GRAPHS = ("encoder", "spatial", "deformer")
PRECISIONS = ("fp32", "fp16")
REQUIRED_KEYS = (
    "format", "schema_version", "name", "fps", "sample_rate", "samples_per_frame", "lookahead_frames",
    "lookahead_samples", "camera", "background", "gaussians", "arrays", "encoder", "deformer", "models",
    "precisions", "engines", "files",
)  # fmt: skip


def sha256_bytes_of(fileobj, size_hint: int = 0, progress=None) -> str:
    """sha256 of a binary file object read in 4 MiB blocks; ``progress(done_bytes)`` per block."""
    h = hashlib.sha256()
    done = 0
    for block in iter(lambda: fileobj.read(1 << 22), b""):
        h.update(block)
        done += len(block)
        if progress is not None:
            progress(done)
    return h.hexdigest()


def check_member_name(name: str) -> str:
    """A bundle-relative POSIX path; FormatError for absolute paths, '..', or empty parts."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or name.startswith(("/", "\\")) or ":" in p.parts[0]:
        raise FormatError(f"bundle member {name!r} is an absolute path; members must stay inside the bundle")
    if any(part in ("..", "") for part in p.parts) or "\\" in name:
        raise FormatError(f"bundle member {name!r} escapes the bundle ('..' or backslash in its path)")
    return str(p)


def parse_manifest(text: bytes | str, where: str) -> dict[str, Any]:
    """Parse and structurally check a manifest; FormatError naming the first problem."""
    try:
        m = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{where}: manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise FormatError(f"{where}: manifest.json format must be {FORMAT!r}; got {got!r}")
    version = m.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FormatError(
            f"{where}: unknown bundle schema_version {version!r}; this huma-rt reads version {SCHEMA_VERSION} "
            "(re-pack the avatar with this version's 'huma-rt pack')"
        )
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise FormatError(f"{where}: manifest.json lacks {missing}")
    if not isinstance(m["files"], dict) or not m["files"]:
        raise FormatError(f"{where}: manifest 'files' must map every file to its sha256")
    for name, entry in m["files"].items():
        check_member_name(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
            raise FormatError(f"{where}: manifest entry for {name!r} must be {{'sha256': str, 'bytes': int}}")
    _check_arrays(m, where)
    return m


def _check_arrays(m: dict[str, Any], where: str) -> None:
    """Shapes recorded for the arrays must agree with each other and with their byte sizes."""
    n = m["gaussians"].get("count")
    if not isinstance(n, int) or n < 1:
        raise FormatError(f"{where}: gaussians.count must be a positive integer; got {n!r}")
    k = (m["gaussians"].get("sh_degree", -1) + 1) ** 2
    want = {"means": [n, 3], "log_scales": [n, 3], "quats": [n, 4], "opacity_logits": [n], "sh": [n, k, 3], "region": [n]}
    for name, (file, dtype) in SPLAT_ARRAYS.items():
        a = m["arrays"].get(name)
        if not isinstance(a, dict):
            raise FormatError(f"{where}: manifest arrays lack {name!r}")
        if a.get("file") != file or a.get("dtype") != dtype:
            raise FormatError(f"{where}: array {name} must be {file} as {dtype}; manifest says {a.get('file')} as {a.get('dtype')}")
        if a.get("shape") != want[name]:
            raise FormatError(
                f"{where}: array {name} has shape {a.get('shape')} in the manifest, but gaussians.count={n} "
                f"and sh_degree={m['gaussians'].get('sh_degree')} need {want[name]}"
            )
    bg = m["background"]
    if bg.get("kind") == "image":
        w, h = m["camera"]["width"], m["camera"]["height"]
        if bg.get("shape") != [h, w, 3] or bg.get("file") != BACKGROUND_FILE:
            raise FormatError(f"{where}: background image must be {BACKGROUND_FILE} of shape {[h, w, 3]}; got {bg}")
    elif bg.get("kind") != "color" or len(bg.get("rgb", ())) != 3:
        raise FormatError(f"{where}: background must be {{'kind': 'color', 'rgb': [r, g, b]}} or an image; got {bg}")
    for entry in [*m["arrays"].values(), bg]:
        if "file" not in entry:
            continue
        nbytes = int(np.prod(entry["shape"])) * np.dtype(entry["dtype"]).itemsize
        rec = m["files"].get(entry["file"])
        if rec is None:
            raise FormatError(f"{where}: {entry['file']} is not listed in manifest files")
        if rec["bytes"] != nbytes:
            raise FormatError(
                f"{where}: {entry['file']} is {rec['bytes']} bytes in the manifest, but shape {entry['shape']} "
                f"{entry['dtype']} needs {nbytes}"
            )
