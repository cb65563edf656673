"""The bundle manifest: what a bundle holds, and the checks a loader runs on it.

A bundle is a folder (or an uncompressed tar of one) with ``manifest.json`` at its root:

- ``models/``: the export folder's ONNX graphs (``{encoder,spatial,deformer}.{fp32,fp16}.onnx``),
  ``encoder.json`` / ``deformer.json``, optional TensorRT plans (``<graph>.fp16.plan``) each with
  its sidecar (``<plan>.json``) beside the ONNX they were built from.
- ``splats/``: one raw little-endian array per Gaussian attribute (``means.f32`` [N,3], ...,
  ``region.u8`` [N]) and an optional background image (``background.f32`` [H,W,3]), each
  loadable with ``np.memmap`` from the shape and dtype the manifest records.
- ``manifest.sig`` (optional, never listed in ``files``): an ed25519 signature over the exact
  bytes of ``manifest.json`` (see huma_rt/bundle/signing.py).

No file is ever unpickled; every file's sha256 is in ``files``. ``parse_manifest`` checks the
manifest in three steps: the format and schema version (so a newer bundle asks for a newer
huma-rt), the JSON Schema ``manifest.schema.json`` (types, ranges, required keys, fixed file
names and dtypes), then the cross-field rules below that a schema cannot state.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from typing import Any

from huma_rt.bundle.schema import check, describe, parse_json
from huma_rt.errors import FormatError

FORMAT = "huma-rt-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
MAX_MANIFEST_BYTES = 256 << 10  # a real manifest is ~5-10 KB (64 files at most); refuse before reading

# attribute -> (file, little-endian dtype); the only arrays and dtypes a bundle may hold
SPLAT_ARRAYS: dict[str, tuple[str, str]] = {
    "means": ("splats/means.f32", "<f4"),
    "log_scales": ("splats/log_scales.f32", "<f4"),
    "quats": ("splats/quats.f32", "<f4"),
    "opacity_logits": ("splats/opacity_logits.f32", "<f4"),
    "sh": ("splats/sh.f32", "<f4"),
    "region": ("splats/region.u8", "|u1"),
}
BACKGROUND_FILE = "splats/background.f32"
BACKGROUND_DTYPE = "<f4"
GRAPHS = ("encoder", "spatial", "deformer")
PRECISIONS = ("fp32", "fp16")
MAX_FEATURE_FLOATS = 1 << 30  # dynamic_count * hidden: the preload feature buffer (4 GiB of f32)
_ITEMSIZE = {"<f4": 4, "|u1": 1}


def check_member_name(name: str) -> str:
    """A bundle-relative POSIX path, normalised ("./a/./b" -> "a/b"; "." and "./" -> "").

    FormatError for absolute paths, '..', backslashes and drive-like first parts.
    """
    if not isinstance(name, str) or "\x00" in name:
        raise FormatError(f"bundle member {describe(name)} is not a valid path")
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith(("/", "\\")) or (p.parts and ":" in p.parts[0]):
        raise FormatError(f"bundle member {name!r} is an absolute path; members must stay inside the bundle")
    if any(part == ".." for part in p.parts) or "\\" in name:
        raise FormatError(f"bundle member {name!r} escapes the bundle ('..' or backslash in its path)")
    return "/".join(p.parts)


def parse_manifest(text: bytes | str, where: str) -> dict[str, Any]:
    """Parse and check a manifest; FormatError naming the first problem (field path and rule)."""
    what = f"bundle {where}: manifest.json"
    m = parse_json(text, what)
    _check_version(m, what)
    check(m, "#", what)
    check_consistency(m, what)
    return m


def _check_version(m: Any, what: str) -> None:
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        got = m.get("format") if isinstance(m, dict) else m
        raise FormatError(f"{what}: format must be {FORMAT!r}; got {describe(got)} (is this a huma-rt bundle?)")
    version = m.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FormatError(f"{what}: schema_version must be a positive integer; got {describe(version)}")
    if version > SCHEMA_VERSION:
        raise FormatError(
            f"{what}: bundle schema_version {version} is newer than this huma-rt reads ({SCHEMA_VERSION}); "
            "upgrade huma-rt (pip install -U huma-rt) to load it"
        )
    if version < SCHEMA_VERSION:
        raise FormatError(
            f"{what}: bundle schema_version {version} is older than this huma-rt reads ({SCHEMA_VERSION}); "
            "re-pack the avatar with this version's 'huma-rt pack'"
        )


def check_consistency(m: dict[str, Any], what: str) -> None:
    """Cross-field rules, on a manifest that already passed the schema."""
    from huma_rt.model_config import DeformerConfig, EncoderConfig

    enc = EncoderConfig.from_dict(m["encoder"], what=f"{what} field $.encoder")
    dfm = DeformerConfig.from_dict(m["deformer"], what=f"{what} field $.deformer")
    if m["fps"] * m["samples_per_frame"] != m["sample_rate"]:
        raise FormatError(f"{what}: fps * samples_per_frame must equal sample_rate; got {m['fps']} * "
                          f"{m['samples_per_frame']} != {m['sample_rate']}")  # fmt: skip
    top = {"fps": m["fps"], "sample_rate": m["sample_rate"], "samples_per_frame": m["samples_per_frame"],
           "past_frames": m["past_frames"], "lookahead_frames": m["lookahead_frames"],
           "lookahead_samples": m["lookahead_samples"]}  # fmt: skip
    derived = {"fps": enc.fps, "sample_rate": enc.mel.sample_rate, "samples_per_frame": enc.samples_per_frame,
               "past_frames": enc.past_frames, "lookahead_frames": enc.lookahead_frames,
               "lookahead_samples": enc.lookahead_samples}  # fmt: skip
    for key, want in derived.items():
        if top[key] != want:
            raise FormatError(f"{what}: field $.{key} is {top[key]}, but the encoder config gives {want}")
    if enc.code_dim != dfm.code_dim:
        raise FormatError(f"{what}: $.encoder.code_dim {enc.code_dim} must equal $.deformer.code_dim {dfm.code_dim}")
    expressions = m.get("expressions", {})
    if "blink_regions" in expressions:
        if "blink" not in expressions:
            raise FormatError(f"{what}: $.expressions.blink_regions needs $.expressions.blink")
        regions = m["gaussians"].get("regions", {})
        missing = [r for r in expressions["blink_regions"] if regions.get(str(r), 0) == 0]
        if missing:
            raise FormatError(f"{what}: $.expressions.blink_regions names region ids {missing} that hold no Gaussian "
                              f"($.gaussians.regions: {sorted(regions)})")  # fmt: skip
    for name in ("blink",):
        code = expressions.get(name)
        if code is not None and len(code) != dfm.code_dim:
            raise FormatError(f"{what}: $.expressions.{name} has {len(code)} values; the deformer's code_dim is "
                              f"{dfm.code_dim}")  # fmt: skip
    cam = m["camera"]
    if not cam.get("near", 0.01) < cam.get("far", 1e10):
        raise FormatError(f"{what}: camera needs near < far; got near={cam.get('near')}, far={cam.get('far')}")
    _check_gaussians(m, dfm.hidden, what)
    _check_arrays(m, what)
    _check_files(m, what)


def _check_gaussians(m: dict[str, Any], hidden: int, what: str) -> None:
    g = m["gaussians"]
    n, dyn = g["count"], g["dynamic_count"]
    if dyn > n:
        raise FormatError(f"{what}: $.gaussians.dynamic_count {dyn} must be <= $.gaussians.count {n}")
    if "regions" in g:
        total = sum(g["regions"].values())
        moving = total - g["regions"].get("0", 0)
        if total != n or moving != dyn:
            raise FormatError(f"{what}: $.gaussians.regions counts {total} Gaussians ({moving} dynamic); "
                              f"count and dynamic_count say {n} ({dyn})")  # fmt: skip
    if dyn * hidden > MAX_FEATURE_FLOATS:
        raise FormatError(f"{what}: dynamic_count * deformer hidden = {dyn} * {hidden} floats exceeds the "
                          f"preload feature buffer limit of {MAX_FEATURE_FLOATS}")  # fmt: skip


def _check_arrays(m: dict[str, Any], what: str) -> None:
    """Shapes recorded for the arrays must agree with the counts and with their byte sizes."""
    n, deg = m["gaussians"]["count"], m["gaussians"]["sh_degree"]
    k = (deg + 1) ** 2
    want = {"means": [n, 3], "log_scales": [n, 3], "quats": [n, 4], "opacity_logits": [n], "sh": [n, k, 3], "region": [n]}
    for name, (file, dtype) in SPLAT_ARRAYS.items():
        a = m["arrays"][name]
        if a["file"] != file or a["dtype"] != dtype:  # the schema says so too; memmaps rely on it
            raise FormatError(f"{what}: array {name} must be {file} as {dtype}; got {a['file']} as {a['dtype']}")
        if a["shape"] != want[name]:
            raise FormatError(
                f"{what}: array {name} has shape {a['shape']} in the manifest, but gaussians.count={n} "
                f"and sh_degree={deg} need {want[name]}"
            )
    entries = [*m["arrays"].values()]
    bg = m["background"]
    if bg["kind"] == "image":
        w, h = m["camera"]["width"], m["camera"]["height"]
        if bg["shape"] != [h, w, 3]:
            raise FormatError(f"{what}: background image shape {bg['shape']} must be [{h}, {w}, 3] (the camera's)")
        entries.append(bg)
    for entry in entries:
        nbytes = math.prod(entry["shape"]) * _ITEMSIZE[entry["dtype"]]
        rec = m["files"].get(entry["file"])
        if rec is None:
            raise FormatError(f"{what}: {entry['file']} is not listed in $.files")
        if rec["bytes"] != nbytes:
            raise FormatError(
                f"{what}: {entry['file']} is {rec['bytes']} bytes in $.files, but shape {entry['shape']} "
                f"{entry['dtype']} needs {nbytes}"
            )


def _check_files(m: dict[str, Any], what: str) -> None:
    """Every model, plan and sidecar the runtime may open is listed (and so hashed)."""
    files = m["files"]
    for graph in GRAPHS:
        for prec in PRECISIONS:
            rel = m["models"][graph][prec]
            if rel not in files:
                raise FormatError(f"{what}: model $.models.{graph}.{prec} = {rel} is not listed in $.files")
    engines = {}
    for i, e in enumerate(m["engines"]):
        stem = e["file"][: -len(".plan")]
        if e["onnx"] != stem + ".onnx" or not stem.endswith("." + e["precision"]):
            raise FormatError(f"{what}: $.engines[{i}] {e['file']} must name {stem}.onnx and precision "
                              f"{stem.rsplit('.', 1)[-1]}; got {e['onnx']}, {e['precision']}")  # fmt: skip
        for rel in (e["file"], e["file"] + ".json"):
            if rel not in files:
                raise FormatError(f"{what}: $.engines[{i}] needs {rel} listed in $.files")
        if e["file"] in engines:
            raise FormatError(f"{what}: $.engines lists {e['file']} twice")
        engines[e["file"]] = e
    for rel in files:
        if rel.endswith(".plan") and rel not in engines:
            raise FormatError(f"{what}: {rel} is listed in $.files but has no $.engines entry (its target)")
