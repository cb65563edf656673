"""Open a bundle (folder or uncompressed tar), verify it and map its splat buffers.

Refuses with FormatError: missing files, size or sha256 mismatch, unknown schema version,
shapes that contradict the manifest, NaN/Inf in splat buffers, and archive members that are
not plain files inside the bundle (``../``, absolute paths, links, devices).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt.bundle.manifest import (
    GRAPHS,
    MANIFEST,
    PRECISIONS,
    check_member_name,
    parse_manifest,
    sha256_bytes_of,
)
from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig, EncoderConfig

log = logging.getLogger(__name__)


@dataclass
class Bundle:
    """A verified bundle. Arrays are read-only memory maps into the bundle's files.

    ``model_file(graph, precision)`` gives a filesystem path for onnxruntime/TensorRT (archive
    members are extracted once into a private temporary folder, removed with the Bundle).
    """

    path: Path
    manifest: dict[str, Any]
    camera: Camera
    encoder: EncoderConfig
    deformer: DeformerConfig
    arrays: dict[str, np.ndarray]
    background: np.ndarray | tuple[float, float, float]
    models_dir: Path
    archive: bool = False
    _cleanup: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    def gaussians(self) -> Gaussians:
        """The canonical Gaussians, backed by the memory maps (finite values already checked)."""
        a = self.arrays
        return Gaussians(
            means=a["means"], log_scales=a["log_scales"], quats=a["quats"], opacity_logits=a["opacity_logits"],
            sh=a["sh"], region=a["region"], scale_activation=self.manifest["gaussians"]["scale_activation"],
        )  # fmt: skip

    def model_file(self, graph: str, precision: str) -> Path:
        if graph not in GRAPHS or precision not in PRECISIONS:
            raise InputError(f"graph must be one of {GRAPHS} and precision one of {PRECISIONS}; got {graph!r}, {precision!r}")
        return self.models_dir / Path(self.manifest["models"][graph][precision]).name

    def plans(self) -> list[dict[str, Any]]:
        """The engines entries of the manifest (file, onnx, trt_version, compute_capability, ...)."""
        return list(self.manifest["engines"])


def open_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Open and check the bundle at ``path`` (a folder or a .tar). ``verify`` hashes every file."""
    path = Path(path)
    if path.is_dir():
        return _open_dir(path, verify)
    if path.is_file():
        return _open_tar(path, verify)
    raise FormatError(f"bundle {path} does not exist")


# -- folders -------------------------------------------------------------------------------------

def _open_dir(root: Path, verify: bool) -> Bundle:
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise FormatError(f"bundle {root} has no {MANIFEST} (is it a bundle written by 'huma-rt pack'?)")
    m = parse_manifest(mpath.read_bytes(), str(root))
    for rel, rec in m["files"].items():
        f = root / rel
        if f.is_symlink():
            raise FormatError(f"bundle {root}: {rel} is a symbolic link; bundle files must be plain files")
        if not f.is_file():
            raise FormatError(f"bundle {root} is missing {rel} (listed in its manifest)")
        if f.stat().st_size != rec["bytes"]:
            raise FormatError(f"bundle {root}: {rel} is {f.stat().st_size} bytes; the manifest says {rec['bytes']}")
        if verify:
            with open(f, "rb") as fh:
                _check_digest(root, rel, sha256_bytes_of(fh), rec["sha256"])
    arrays = {name: _memmap(root / e["file"], e, 0) for name, e in m["arrays"].items()}
    bg = _background(m, lambda e: _memmap(root / e["file"], e, 0))
    return _finish(root, m, arrays, bg, root / "models", archive=False)


# -- archives ------------------------------------------------------------------------------------

def _open_tar(path: Path, verify: bool) -> Bundle:
    try:
        tar = tarfile.open(path, "r:")  # "r:" = uncompressed only: compressed members cannot be mapped
    except tarfile.ReadError as exc:
        raise FormatError(f"bundle {path} is not an uncompressed tar archive or a folder: {exc}") from exc
    with tar:
        members: dict[str, tarfile.TarInfo] = {}
        for mem in tar.getmembers():
            name = check_member_name(mem.name)
            if mem.isdir():
                continue
            if not mem.isfile():
                kind = "a link" if (mem.issym() or mem.islnk()) else "not a regular file"
                raise FormatError(f"bundle {path}: member {mem.name!r} is {kind}; bundle members must be plain files")
            if name in members:
                raise FormatError(f"bundle {path}: member {name!r} appears twice")
            members[name] = mem
        if MANIFEST not in members:
            raise FormatError(f"bundle {path} has no {MANIFEST} member")
        m = parse_manifest(tar.extractfile(members[MANIFEST]).read(), str(path))
        for rel, rec in m["files"].items():
            mem = members.get(rel)
            if mem is None:
                raise FormatError(f"bundle {path} is missing {rel} (listed in its manifest)")
            if mem.size != rec["bytes"]:
                raise FormatError(f"bundle {path}: {rel} is {mem.size} bytes; the manifest says {rec['bytes']}")
            if verify:
                _check_digest(path, rel, sha256_bytes_of(tar.extractfile(mem)), rec["sha256"])
        unlisted = sorted(set(members) - set(m["files"]) - {MANIFEST})
        if unlisted:
            raise FormatError(f"bundle {path} holds members its manifest does not list: {unlisted[:5]}")
        tmp = Path(tempfile.mkdtemp(prefix="huma-bundle-"))
        models = tmp / "models"
        models.mkdir()
        for rel, mem in members.items():
            if rel.startswith("models/"):
                with tar.extractfile(mem) as src, open(models / Path(rel).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    try:
        arrays = {name: _memmap(path, e, members[e["file"]].offset_data) for name, e in m["arrays"].items()}
        bg = _background(m, lambda e: _memmap(path, e, members[e["file"]].offset_data))
        b = _finish(path, m, arrays, bg, models, archive=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    b._cleanup = weakref.finalize(b, shutil.rmtree, tmp, True)  # extracted models go with the Bundle
    return b


# -- shared --------------------------------------------------------------------------------------

def _check_digest(where: Path, rel: str, got: str, want: str) -> None:
    if got != want:
        raise FormatError(f"bundle {where}: checksum mismatch for {rel}: sha256 {got[:16]}…, manifest says {want[:16]}…")


def _memmap(file: Path, entry: dict, offset: int) -> np.ndarray:
    shape = tuple(entry["shape"])
    return np.memmap(file, dtype=np.dtype(entry["dtype"]), mode="r", offset=offset, shape=shape)


def _background(m: dict, mapper) -> np.ndarray | tuple[float, float, float]:
    bg = m["background"]
    if bg["kind"] == "image":
        img = mapper(bg)
        if not np.isfinite(img).all():
            raise FormatError(f"bundle background {bg['file']} holds NaN or Inf")
        return img
    return tuple(float(v) for v in bg["rgb"])


def _finish(path: Path, m: dict, arrays: dict, bg, models: Path, archive: bool) -> Bundle:
    for name, arr in arrays.items():
        if arr.dtype.kind == "f":
            flat = arr.reshape(arr.shape[0], -1)
            bad = ~np.isfinite(flat).all(axis=1)
            if bad.any():
                raise FormatError(
                    f"bundle {path}: {m['arrays'][name]['file']} holds NaN or Inf (Gaussian {int(np.argmax(bad))}, "
                    f"{int(bad.sum())} Gaussians in all)"
                )
    dyn = int(np.count_nonzero(arrays["region"]))
    if dyn != m["gaussians"].get("dynamic_count"):
        raise FormatError(f"bundle {path}: region.u8 marks {dyn} dynamic Gaussians; the manifest says {m['gaussians'].get('dynamic_count')}")
    try:
        camera = Camera.from_dict(m["camera"])
        enc = EncoderConfig.from_dict(m["encoder"])
        dfm = DeformerConfig.from_dict(m["deformer"])
    except InputError as exc:
        raise FormatError(f"bundle {path}: {exc}") from exc
    if (m["fps"], m["sample_rate"], m["lookahead_samples"]) != (enc.fps, enc.mel.sample_rate, enc.lookahead_samples):
        raise FormatError(f"bundle {path}: fps/sample_rate/lookahead in the manifest contradict its encoder config")
    return Bundle(path=path, manifest=m, camera=camera, encoder=enc, deformer=dfm, arrays=arrays, background=bg,
                  models_dir=models, archive=archive)  # fmt: skip
