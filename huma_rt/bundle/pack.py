"""``pack``: write an avatar (Gaussians, camera, background, exported ONNX, optional plans) as a bundle."""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huma_rt._files import sha256_bytes_of
from huma_rt.bundle.manifest import (
    BACKGROUND_FILE,
    FORMAT,
    GRAPHS,
    MANIFEST,
    PRECISIONS,
    SCHEMA_VERSION,
    SIGNATURE,
    SPLAT_ARRAYS,
    check_consistency,
)  # fmt: skip
from huma_rt.bundle.schema import check
from huma_rt.bundle.signing import KeySource, load_private_key, sign_manifest
from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig, EncoderConfig

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""progress(step, done, total): step is a short label ("write splats", "hash", "archive")."""


@dataclass
class AvatarSource:
    """Everything a bundle is made of.

    gaussians: canonical Gaussians with region ids (0 = static, others dynamic).
    camera: the avatar's fixed camera. background: [H,W,3] float32 image in [0,1] matching the
    camera, an (r, g, b) colour in [0,1], or None (black). export_dir: a ``huma-rt export``
    folder. plans_dir: optional folder of TensorRT plans (``<graph>.fp16.plan`` + sidecar JSON).
    blink_code: optional [code_dim] motion code of shut eyes, which the deformer was trained on
    (live sessions add a weight of it to the encoder's code to blink); None: the avatar cannot blink.
    blink_regions: the region ids of the Gaussians a blink moves (e.g. the lids); None: the runtime
    keeps the blink near what its code moves most.
    """

    gaussians: Gaussians
    camera: Camera
    background: np.ndarray | tuple[float, float, float] | None
    export_dir: str | Path
    plans_dir: str | Path | None = None
    name: str = "avatar"
    blink_code: np.ndarray | None = None
    blink_regions: list[int] | None = None


def _log_progress(step: str, done: int, total: int) -> None:
    # INFO once per finished step; DEBUG in between (large avatars: -vv shows every block)
    log.log(logging.INFO if done >= total else logging.DEBUG, "pack: %s %d/%d", step, done, total)


def _background_entry(bg, camera: Camera) -> tuple[dict, np.ndarray | None]:
    if bg is None:
        return {"kind": "color", "rgb": [0.0, 0.0, 0.0]}, None
    if isinstance(bg, np.ndarray) and bg.ndim == 3:
        want = (camera.height, camera.width, 3)
        if bg.shape != want:
            raise InputError(f"background image must have shape {want} (the camera's H, W, 3); got {bg.shape}")
        img = np.ascontiguousarray(bg, dtype="<f4")
        if not np.isfinite(img).all():
            raise InputError("background image must be finite; it holds NaN or Inf")
        return {"kind": "image", "file": BACKGROUND_FILE, "shape": list(want), "dtype": "<f4"}, img
    rgb = np.asarray(bg, dtype=np.float64).reshape(-1)
    if rgb.shape != (3,) or not np.isfinite(rgb).all():
        raise InputError(f"background must be an [H,W,3] image or an (r, g, b) colour; got {bg!r}")
    return {"kind": "color", "rgb": [float(v) for v in rgb]}, None


def _export_files(export_dir: Path) -> dict[str, Path]:
    if not export_dir.is_dir():
        raise InputError(f"export_dir {export_dir} is not a folder (write one with 'huma-rt export -o DIR')")
    want = ["encoder.json", "deformer.json"] + [f"{g}.{p}.onnx" for g in GRAPHS for p in PRECISIONS]
    missing = [n for n in want if not (export_dir / n).is_file()]
    if missing:
        raise InputError(f"export_dir {export_dir} lacks {missing} (write it with 'huma-rt export -o DIR')")
    files = {f"models/{n}": export_dir / n for n in want}
    if (export_dir / "export_report.json").is_file():
        files["models/export_report.json"] = export_dir / "export_report.json"
    return files


def _plan_files(plans_dir: Path | None) -> tuple[dict[str, Path], list[dict]]:
    if plans_dir is None:
        return {}, []
    from huma_rt.backends.sidecar import load_sidecar, sidecar_path, verify_plan_file

    plans_dir = Path(plans_dir)
    if not plans_dir.is_dir():
        raise InputError(f"plans_dir {plans_dir} is not a folder")
    files, engines = {}, []
    for plan in sorted(plans_dir.glob("*.plan")):
        sc = load_sidecar(plan)
        verify_plan_file(plan, sc)
        stem = plan.name[: -len(".plan")]
        if stem not in {f"{g}.{p}" for g in GRAPHS for p in PRECISIONS}:
            raise InputError(f"plan {plan.name} must be named <graph>.<precision>.plan, graph in {GRAPHS}")
        files[f"models/{plan.name}"] = plan
        files[f"models/{sidecar_path(plan).name}"] = sidecar_path(plan)
        engines.append({
            "file": f"models/{plan.name}", "onnx": f"models/{stem}.onnx", "trt_version": sc.trt_version,
            "compute_capability": sc.compute_capability, "gpu_name": sc.gpu_name, "precision": sc.precision,
        })  # fmt: skip
    if not files:
        raise InputError(f"plans_dir {plans_dir} holds no .plan files")
    return files, engines


def _check_models(export_dir: Path, gaussians: Gaussians) -> tuple[EncoderConfig, DeformerConfig]:
    enc = EncoderConfig.load(export_dir / "encoder.json")
    dfm = DeformerConfig.load(export_dir / "deformer.json")
    if enc.code_dim != dfm.code_dim:
        raise InputError(f"encoder code_dim {enc.code_dim} must equal deformer code_dim {dfm.code_dim}")
    return enc, dfm


def _expressions(source: AvatarSource, dfm: DeformerConfig) -> dict:
    if source.blink_code is None:
        if source.blink_regions is not None:
            raise InputError("blink_regions needs a blink_code (the code a blink adds)")
        return {}
    code = np.asarray(source.blink_code)
    if code.shape != (dfm.code_dim,) or not np.issubdtype(code.dtype, np.floating) or not np.isfinite(code).all():
        raise InputError(f"blink_code must be {dfm.code_dim} finite floats (the deformer's code_dim); got an array "
                         f"of shape {code.shape}, dtype {code.dtype}")  # fmt: skip
    out = {"blink": [float(v) for v in code.astype(np.float32)]}
    if source.blink_regions is not None:
        out["blink_regions"] = [int(r) for r in source.blink_regions]
    return {"expressions": out}


def _write_array(path: Path, arr: np.ndarray, dtype: str) -> None:
    # raw little-endian bytes, C order: exactly what np.memmap(dtype, shape) reads back
    np.ascontiguousarray(arr, dtype=dtype).tofile(path)


def pack(source: AvatarSource, out: str | Path, *, archive: bool = False, overwrite: bool = False,
         progress: Progress | None = None, sign_key: KeySource | None = None) -> Path:  # fmt: skip
    """Write ``source`` as a bundle folder ``out`` (or, with ``archive``, one uncompressed tar ``out``).

    Returns the bundle path. Refuses an existing ``out`` unless ``overwrite``. ``progress``
    (default: INFO logging) is called per step so large avatars show progress. ``sign_key``
    (an ed25519 private key file or its bytes, see huma_rt.bundle.signing) adds ``manifest.sig``.
    The manifest is checked against the same schema and rules as a loader's before anything is
    written, so what pack writes, open_bundle reads.
    """
    progress = progress or _log_progress
    signer = load_private_key(sign_key) if sign_key is not None else None
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"bundle output {out} already exists (pass overwrite=True / --force to replace it)")
    g = source.gaussians
    if not isinstance(g, Gaussians) or not isinstance(source.camera, Camera):
        raise InputError("AvatarSource needs gaussians: huma_rt.gaussians.Gaussians and camera: Camera")
    g.validate()
    dynamic = int(np.count_nonzero(g.region))
    if dynamic == 0:
        raise InputError("gaussians have no dynamic region (every region id is 0): nothing would move")
    export_dir = Path(source.export_dir)
    models = _export_files(export_dir)
    enc, dfm = _check_models(export_dir, g)
    expressions = _expressions(source, dfm)
    plans, engines = _plan_files(Path(source.plans_dir) if source.plans_dir is not None else None)
    bg_entry, bg_img = _background_entry(source.background, source.camera)

    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".huma-pack-", dir=parent))
    try:
        root = stage / "bundle"
        (root / "splats").mkdir(parents=True)
        (root / "models").mkdir()
        arrays = {}
        steps = len(SPLAT_ARRAYS) + (bg_img is not None)
        for i, (name, (file, dtype)) in enumerate(SPLAT_ARRAYS.items()):
            arr = getattr(g, name)
            _write_array(root / file, arr, dtype)
            arrays[name] = {"file": file, "dtype": dtype, "shape": list(arr.shape)}
            progress("write splats", i + 1, steps)
        if bg_img is not None:
            _write_array(root / BACKGROUND_FILE, bg_img, "<f4")
            progress("write splats", steps, steps)
        for i, (rel, src) in enumerate({**models, **plans}.items()):
            shutil.copyfile(src, root / rel)
            progress("copy models", i + 1, len(models) + len(plans))
        files = {}
        rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        total = sum((root / r).stat().st_size for r in rels)
        done = 0
        for rel in rels:
            with open(root / rel, "rb") as f:
                digest = sha256_bytes_of(f)
            size = (root / rel).stat().st_size
            done += size
            files[rel] = {"sha256": digest, "bytes": size}
            progress("hash", done, total)
        regions, counts = np.unique(g.region, return_counts=True)
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "name": source.name,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "huma_rt_version": _version(),
            "fps": enc.fps,
            "sample_rate": enc.mel.sample_rate,
            "samples_per_frame": enc.samples_per_frame,
            "past_frames": enc.past_frames,
            "lookahead_frames": enc.lookahead_frames,
            "lookahead_samples": enc.lookahead_samples,
            "camera": source.camera.to_dict(),
            "background": bg_entry,
            "gaussians": {
                "count": g.count, "dynamic_count": dynamic, "sh_degree": g.sh_degree,
                "scale_activation": g.scale_activation, "opacity_activation": "sigmoid", "quaternion": "wxyz",
                "regions": {str(int(r)): int(c) for r, c in zip(regions, counts, strict=True)},
            },  # fmt: skip
            "arrays": arrays,
            "encoder": enc.to_dict(),
            "deformer": dfm.to_dict(),
            **expressions,
            "models": {gr: {p: f"models/{gr}.{p}.onnx" for p in PRECISIONS} for gr in GRAPHS},
            "precisions": list(PRECISIONS),
            "engines": engines,
            "files": files,
        }
        what = f"pack {source.name!r}: manifest"
        check(manifest, "#", what)
        check_consistency(manifest, what)
        text = (json.dumps(manifest, indent=1) + "\n").encode()
        (root / MANIFEST).write_bytes(text)
        if signer is not None:
            (root / SIGNATURE).write_bytes(sign_manifest(text, signer))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        if archive:
            tmp_tar = stage / "bundle.tar"
            _write_tar(root, tmp_tar, progress)
            os.replace(tmp_tar, out)
        else:
            os.replace(root, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("packed %s (%d Gaussians, %d dynamic) into %s", source.name, g.count, dynamic, out)
    return out


def _write_tar(root: Path, dest: Path, progress: Progress) -> None:
    # manifest first so a reader finds it without scanning; uncompressed so arrays memory-map
    first = [n for n in (MANIFEST, SIGNATURE) if (root / n).is_file()]
    rels = first + sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in first)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for i, rel in enumerate(rels):
            info = tar.gettarinfo(str(root / rel), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            with open(root / rel, "rb") as f:
                tar.addfile(info, f)
            progress("archive", i + 1, len(rels))


def _version() -> str:
    from huma_rt import __version__

    return __version__


