"""Open a bundle (folder or uncompressed tar), verify it and map its splat buffers.

Refuses with FormatError: a manifest that breaks the schema or its cross-field rules, missing
files, size or sha256 mismatch, files the manifest does not list, symbolic links anywhere on a
path inside the bundle, archive members that are not plain files inside the bundle (``../``,
absolute paths, links, devices, sparse files), truncated archives, NaN/Inf in splat buffers, and
(with ``trusted_keys``) unsigned or untrusted bundles (SignatureError). Sizes are checked before
anything is read; every file the runtime later opens (models, plans, sidecars) is listed and
hashed.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt._files import sha256_bytes_of
from huma_rt.bundle.manifest import (
    GRAPHS,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    PRECISIONS,
    SIGNATURE,
    SPLAT_ARRAYS,
    check_member_name,
    parse_manifest,
)
from huma_rt.bundle.signing import MAX_SIG_BYTES, KeySource, verify_manifest
from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig, EncoderConfig

log = logging.getLogger(__name__)

MAX_MEMBERS = 256  # a bundle has ~20 files; an archive with more entries is not one of ours
_FOLDERS = ("models", "splats")


@dataclass
class Bundle:
    """A verified bundle. Arrays are read-only memory maps into the bundle's files.

    ``model_file(graph, precision)`` gives a filesystem path for onnxruntime/TensorRT (archive
    members are extracted once into a private temporary folder, removed with the Bundle).
    ``signer``: hex public key of a verified signature, or None.
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
    signer: str | None = None
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

    @property
    def blink_code(self) -> np.ndarray | None:
        """[code_dim] f32: the motion code of shut eyes (``expressions.blink``), or None."""
        code = self.manifest.get("expressions", {}).get("blink")
        return None if code is None else np.asarray(code, np.float32)

    @property
    def blink_regions(self) -> list[int] | None:
        """The region ids a blink moves (``expressions.blink_regions``), or None (not declared)."""
        regions = self.manifest.get("expressions", {}).get("blink_regions")
        return None if regions is None else [int(r) for r in regions]

    def model_file(self, graph: str, precision: str) -> Path:
        if graph not in GRAPHS or precision not in PRECISIONS:
            raise InputError(f"graph must be one of {GRAPHS} and precision one of {PRECISIONS}; got {graph!r}, {precision!r}")
        return self.models_dir / Path(self.manifest["models"][graph][precision]).name

    def plans(self) -> list[dict[str, Any]]:
        """The engines entries of the manifest (file, onnx, trt_version, compute_capability, ...)."""
        return list(self.manifest["engines"])


def open_bundle(path: str | Path, *, verify: bool = True, trusted_keys: Sequence[KeySource] | None = None) -> Bundle:
    """Open and check the bundle at ``path`` (a folder or a .tar).

    verify: hash every file (False skips the sha256 of the files, never the manifest checks or
    the signature). trusted_keys: public keys (files or bytes, see huma_rt.bundle.signing); when
    given, the bundle must carry a valid signature by one of them.
    """
    path = Path(path)
    if path.is_dir():
        return _open_dir(path, verify, trusted_keys)
    if path.is_file():
        return _open_tar(path, verify, trusted_keys)
    raise FormatError(f"bundle {path} does not exist")


# -- folders -------------------------------------------------------------------------------------

def _lstat_inside(root: Path, rel: str) -> os.stat_result | None:
    """lstat of root/rel, refusing a symbolic link on any part of the path; None if absent."""
    cur = root
    st = None
    for part in rel.split("/"):
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FormatError(f"bundle {root}: cannot inspect {rel}: {exc}") from exc
        if stat.S_ISLNK(st.st_mode):
            raise FormatError(f"bundle {root}: {cur.relative_to(root).as_posix()} is a symbolic link; "
                              "bundle files and folders must be plain files and folders inside the bundle")  # fmt: skip
    return st


def _open_plain(root: Path, rel: str, size: int | None, cap: int | None = None):
    """Open root/rel for reading: a regular file (no links on its path) of ``size`` bytes (or at most ``cap``)."""
    st = _lstat_inside(root, rel)
    if st is None:
        raise FormatError(f"bundle {root} is missing {rel}" + (" (listed in its manifest)" if size is not None else ""))
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"bundle {root}: {rel} is not a regular file")
    if size is not None and st.st_size != size:
        raise FormatError(f"bundle {root}: {rel} is {st.st_size} bytes; the manifest says {size}")
    if cap is not None and st.st_size > cap:
        raise FormatError(f"bundle {root}: {rel} is {st.st_size} bytes; at most {cap} are allowed")
    try:
        fd = os.open(root / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise FormatError(f"bundle {root}: cannot open {rel}: {exc}") from exc
    f = os.fdopen(fd, "rb")
    fst = os.fstat(f.fileno())
    if (fst.st_dev, fst.st_ino, fst.st_size) != (st.st_dev, st.st_ino, st.st_size):
        f.close()
        raise FormatError(f"bundle {root}: {rel} changed while it was being opened")
    return f


def _read_small(root: Path, rel: str, cap: int) -> bytes | None:
    if _lstat_inside(root, rel) is None:
        return None
    with _open_plain(root, rel, None, cap) as f:
        return f.read(cap + 1)


def _open_dir(path: Path, verify: bool, trusted_keys) -> Bundle:
    root = path.resolve()  # the bundle folder itself may be reached through links; nothing inside it may be
    text = _read_small(root, MANIFEST, MAX_MANIFEST_BYTES)
    if text is None:
        raise FormatError(f"bundle {path} has no {MANIFEST} (is it a bundle written by 'huma-rt pack'?)")
    sig = _read_small(root, SIGNATURE, MAX_SIG_BYTES)
    signer = verify_manifest(text, sig, trusted_keys, f"bundle {path}")
    m = parse_manifest(text, str(path))
    _refuse_unlisted_dir(root, path, m)
    for rel, rec in m["files"].items():
        with _open_plain(root, rel, rec["bytes"]) as f:
            if verify:
                _check_digest(path, rel, sha256_bytes_of(f), rec["sha256"])

    def mapper(rel: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        return _memmap(root / rel, dtype, shape, 0)

    return _finish(path, m, mapper, root / "models", archive=False, signer=signer)


def _refuse_unlisted_dir(root: Path, shown: Path, m: dict) -> None:
    """Nothing but manifest.json, manifest.sig and the listed files: the runtime opens files by
    name (a plan beside its ONNX), so an unlisted file would load unhashed."""
    listed = set(m["files"])
    allowed_top = {MANIFEST, SIGNATURE, *_FOLDERS}
    with os.scandir(root) as it:
        extra = sorted(e.name for e in it if e.name not in allowed_top)
    for folder in _FOLDERS:
        st = _lstat_inside(root, folder)
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise FormatError(f"bundle {shown}: {folder} must be a folder")
        with os.scandir(root / folder) as it:
            extra += sorted(f"{folder}/{e.name}" for e in it if f"{folder}/{e.name}" not in listed)
    if extra:
        raise FormatError(f"bundle {shown} holds files its manifest does not list: {extra[:5]} "
                          "(a bundle holds manifest.json, manifest.sig and the files in its manifest only)")  # fmt: skip


# -- archives ------------------------------------------------------------------------------------

def _members(tar: tarfile.TarFile, path: Path, archive_size: int) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    count = 0
    while True:
        try:
            mem = tar.next()
        except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
            raise FormatError(f"bundle {path} is a truncated or corrupt tar archive: {exc}") from exc
        if mem is None:
            return members
        count += 1
        if count > MAX_MEMBERS:
            raise FormatError(f"bundle {path} has more than {MAX_MEMBERS} archive members; a bundle has a few dozen")
        name = check_member_name(mem.name)
        if mem.isdir():
            if name not in ("", *_FOLDERS):  # what `tar -cf b.tar -C bundle .` holds; a folder bundle allows no more
                raise FormatError(f"bundle {path}: folder member {mem.name!r} is not part of a bundle (only models/, splats/)")
            continue
        if not mem.isreg() or mem.issparse():
            kind = "a link" if (mem.issym() or mem.islnk()) else "not a regular file"
            raise FormatError(f"bundle {path}: member {mem.name!r} is {kind}; bundle members must be plain files")
        if not name:
            raise FormatError(f"bundle {path}: member {mem.name!r} is a file without a name")
        if name in members:
            raise FormatError(f"bundle {path}: member {name!r} appears twice")
        if mem.offset_data + mem.size > archive_size:
            raise FormatError(f"bundle {path} is truncated: member {name!r} needs bytes up to "
                              f"{mem.offset_data + mem.size}, the archive has {archive_size}")  # fmt: skip
        members[name] = mem


def _read_member(tar: tarfile.TarFile, mem: tarfile.TarInfo | None, cap: int, path: Path) -> bytes | None:
    if mem is None:
        return None
    if mem.size > cap:
        raise FormatError(f"bundle {path}: member {mem.name!r} is {mem.size} bytes; at most {cap} are allowed")
    with tar.extractfile(mem) as f:
        return f.read(cap + 1)


def _open_tar(path: Path, verify: bool, trusted_keys) -> Bundle:
    try:
        fh = open(path, "rb")
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise FormatError(f"bundle {path} cannot be read: {exc}") from exc
    tmp: Path | None = None
    try:
        try:
            tar = tarfile.open(fileobj=fh, mode="r:")  # "r:" = uncompressed only: compressed members cannot be mapped
        except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
            raise FormatError(f"bundle {path} is not an uncompressed tar archive or a folder: {exc}") from exc
        with tar:
            members = _members(tar, path, size)
            text = _read_member(tar, members.get(MANIFEST), MAX_MANIFEST_BYTES, path)
            if text is None:
                raise FormatError(f"bundle {path} has no {MANIFEST} member")
            sig = _read_member(tar, members.get(SIGNATURE), MAX_SIG_BYTES, path)
            signer = verify_manifest(text, sig, trusted_keys, f"bundle {path}")
            m = parse_manifest(text, str(path))
            unlisted = sorted(set(members) - set(m["files"]) - {MANIFEST, SIGNATURE})
            if unlisted:
                raise FormatError(f"bundle {path} holds members its manifest does not list: {unlisted[:5]}")
            for rel, rec in m["files"].items():
                mem = members.get(rel)
                if mem is None:
                    raise FormatError(f"bundle {path} is missing {rel} (listed in its manifest)")
                if mem.size != rec["bytes"]:
                    raise FormatError(f"bundle {path}: {rel} is {mem.size} bytes; the manifest says {rec['bytes']}")
            tmp = Path(tempfile.mkdtemp(prefix="huma-bundle-"))
            models = tmp / "models"
            models.mkdir()
            for rel, rec in m["files"].items():
                # models are hashed as they are extracted: the runtime opens exactly the checked bytes
                dest = models / Path(rel).name if rel.startswith("models/") else None
                digest = _copy_member(tar, members[rel], dest)
                if verify:
                    _check_digest(path, rel, digest, rec["sha256"])

        def mapper(rel: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            return _memmap(path, dtype, shape, members[rel].offset_data)

        b = _finish(path, m, mapper, models, archive=True, signer=signer)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        fh.close()
    b._cleanup = weakref.finalize(b, shutil.rmtree, tmp, True)  # extracted models go with the Bundle
    return b


def _copy_member(tar: tarfile.TarFile, mem: tarfile.TarInfo, dest: Path | None) -> str:
    """sha256 of a member, written to ``dest`` (when given) as it is hashed."""
    try:
        with tar.extractfile(mem) as src:
            if dest is None:
                return sha256_bytes_of(src)
            with open(dest, "xb") as out:
                return sha256_bytes_of(src, sink=out.write)
    except (tarfile.TarError, EOFError) as exc:
        raise FormatError(f"bundle {tar.name}: member {mem.name!r} cannot be read: {exc}") from exc


# -- shared --------------------------------------------------------------------------------------

def _check_digest(where: Path, rel: str, got: str, want: str) -> None:
    if got != want:
        raise FormatError(f"bundle {where}: checksum mismatch for {rel}: sha256 {got[:16]}…, manifest says {want[:16]}…")


def _memmap(file: Path, dtype: str, shape: tuple[int, ...], offset: int) -> np.ndarray:
    return np.memmap(file, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)


def _finish(path: Path, m: dict, mapper, models: Path, archive: bool, signer: str | None) -> Bundle:
    # dtypes come from the fixed table, never from the manifest (which the schema pins to the same)
    arrays = {name: mapper(file, dtype, tuple(m["arrays"][name]["shape"])) for name, (file, dtype) in SPLAT_ARRAYS.items()}
    for name, arr in arrays.items():
        if arr.dtype.kind == "f":
            flat = arr.reshape(arr.shape[0], -1)
            bad = ~np.isfinite(flat).all(axis=1)
            if bad.any():
                raise FormatError(
                    f"bundle {path}: {SPLAT_ARRAYS[name][0]} holds NaN or Inf (Gaussian {int(np.argmax(bad))}, "
                    f"{int(bad.sum())} Gaussians in all)"
                )
    dyn = int(np.count_nonzero(arrays["region"]))
    if dyn != m["gaussians"]["dynamic_count"]:
        raise FormatError(f"bundle {path}: region.u8 marks {dyn} dynamic Gaussians; the manifest says {m['gaussians']['dynamic_count']}")
    bg_entry = m["background"]
    if bg_entry["kind"] == "image":
        bg = mapper(bg_entry["file"], "<f4", tuple(bg_entry["shape"]))
        if not np.isfinite(bg).all():
            raise FormatError(f"bundle {path}: {bg_entry['file']} holds NaN or Inf")
    else:
        bg = tuple(float(v) for v in bg_entry["rgb"])
    try:
        camera = Camera.from_dict(m["camera"])
        enc = EncoderConfig.from_dict(m["encoder"])
        dfm = DeformerConfig.from_dict(m["deformer"])
    except InputError as exc:
        raise FormatError(f"bundle {path}: {exc}") from exc
    return Bundle(path=path, manifest=m, camera=camera, encoder=enc, deformer=dfm, arrays=arrays, background=bg,
                  models_dir=models, archive=archive, signer=signer)  # fmt: skip
