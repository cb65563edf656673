"""``huma-rt pack``: build a bundle from a 3DGS PLY + region ids + camera JSON + export folder,
or re-pack an existing bundle (to add TensorRT plans, replace the networks, or make an archive).

Inputs are plain data, never pickles: the PLY (INRIA 3DGS layout, read by huma_rt.formats.ply),
region ids as ``.npy`` (loaded with allow_pickle=False) or text (one integer per Gaussian), the
camera as JSON (``Camera.to_dict`` fields), a background as ``.npy`` [H, W, 3] float32 or a colour.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from huma_rt.errors import FormatError, InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ply", type=Path, help="Gaussians in the INRIA 3DGS PLY layout")
    src.add_argument("--from-bundle", type=Path, help="re-pack this bundle (its Gaussians, camera, background)")
    p.add_argument("--regions", type=Path, help="region id per Gaussian (.npy or text; 0 = static) [with --ply]")
    p.add_argument("--camera", type=Path, help="camera JSON (width, height, fx, fy, cx, cy, world_to_camera) [with --ply]")
    p.add_argument("--export", type=Path, help="'huma-rt export' folder (required with --ply; replaces the networks with --from-bundle)")
    p.add_argument("--plans", type=Path, help="folder of TensorRT plans + sidecars from 'huma-rt build'")
    p.add_argument("--background", help="background: .npy [H, W, 3] float32 image, or 'r,g,b' in [0, 1]")
    p.add_argument("--name", help="avatar name (default: the PLY's stem or the old bundle's name)")
    p.add_argument("-o", "--output", type=Path, required=True, help="bundle folder (or .tar with --archive)")
    p.add_argument("--archive", action="store_true", help="write one uncompressed tar instead of a folder")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    p.add_argument("--sign", type=Path, metavar="KEY",
                   help="sign the bundle with this ed25519 private key (PEM or raw 32 bytes; make one with "
                        "'huma-rt keygen -o KEY'); needs pip install 'huma-rt[sign]'")  # fmt: skip


def _regions(path: Path, n: int) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"regions file {path} does not exist")
    try:
        ids = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64, ndmin=1)
    except ValueError as exc:
        raise FormatError(f"regions file {path} is not a .npy array or a text column of integers: {exc}") from exc
    ids = np.asarray(ids).reshape(-1)
    if ids.shape[0] != n:
        raise InputError(f"regions file {path} has {ids.shape[0]} ids; the PLY has {n} Gaussians")
    if ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() > 255:
        raise InputError(f"region ids must be integers in 0..255; got dtype {ids.dtype}, range {ids.min()}..{ids.max()}")
    return ids.astype(np.uint8)


def _camera(path: Path):
    from huma_rt.gaussians import Camera

    try:
        return Camera.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"camera JSON {path} cannot be read: {exc}") from exc


def _background(spec: str | None):
    if spec is None:
        return None
    if spec.endswith(".npy"):
        return np.load(spec, allow_pickle=False).astype(np.float32)
    try:
        rgb = tuple(float(v) for v in spec.split(","))
    except ValueError as exc:
        raise InputError(f"--background must be a .npy file or 'r,g,b'; got {spec!r}") from exc
    if len(rgb) != 3:
        raise InputError(f"--background colour needs 3 values; got {spec!r}")
    return rgb


def _source(args):
    from huma_rt.bundle import AvatarSource, open_bundle

    if args.from_bundle is not None:
        old = open_bundle(args.from_bundle)
        bg = _background(args.background)
        if bg is None:
            bg = np.array(old.background) if isinstance(old.background, np.ndarray) else old.background
        export = args.export or old.models_dir
        g = old.gaussians()
        return AvatarSource(gaussians=g.subset(np.arange(g.count)), camera=old.camera, background=bg,
                            export_dir=export, plans_dir=args.plans, name=args.name or old.name), old  # fmt: skip
    missing = [f"--{k}" for k in ("regions", "camera", "export") if getattr(args, k) is None]
    if missing:
        raise InputError(f"--ply needs {', '.join(missing)}")
    try:
        from huma_rt.formats.ply import read_ply
    except ImportError as exc:
        raise InputError(f"PLY reading (huma_rt.formats.ply) is not in this installation: {exc}") from exc
    g = read_ply(args.ply)
    g.region = _regions(args.regions, g.count)
    g.validate()
    return AvatarSource(gaussians=g, camera=_camera(args.camera), background=_background(args.background),
                        export_dir=args.export, plans_dir=args.plans, name=args.name or args.ply.stem), None  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from huma_rt.bundle import pack

    source, _keep = _source(args)  # _keep: an old bundle's temp files live while packing

    def progress(step: str, done: int, total: int) -> None:
        print(f"\r{step:<12} {100 * done // max(total, 1):3d}%", end="\n" if done >= total else "", file=sys.stderr)

    t0 = time.perf_counter()
    out = pack(source, args.output, archive=args.archive, overwrite=args.force, progress=progress, sign_key=args.sign)
    g = source.gaussians
    signed = f", signed with {args.sign}" if args.sign is not None else ""
    print(f"packed {g.count} Gaussians ({int(np.count_nonzero(g.region))} dynamic) into {out}{signed} "
          f"in {time.perf_counter() - t0:.2f} s")  # fmt: skip
    return 0
