"""INRIA 3D Gaussian Splatting PLY files <-> :class:`huma_rt.gaussians.Gaussians`.

Layout (as the INRIA code writes it): one ``vertex`` element with float32 properties
``x y z nx ny nz f_dc_0..2 f_rest_0..M-1 opacity scale_0..2 rot_0..3``; ``f_rest`` is
channel-major (all red coefficients 1..K-1, then green, then blue); ``rot`` is wxyz; ``scale`` is
the pre-activation value and ``opacity`` the logit. Which activation the scales use is recorded in
a header comment ``comment huma_rt scale_activation=<exp|softplus>``; a file without it is read as
``exp`` (the INRIA convention) and a warning says so. Our parser reads the header itself and
memory-maps binary bodies (no plyfile at run time); ascii bodies and other property orders or
extra properties (other tools' layouts) load too.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import SCALE_ACTIVATIONS, Gaussians

log = logging.getLogger(__name__)

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": None}
_ACT_COMMENT = re.compile(r"^comment huma_rt scale_activation=(\S+)\s*$")
_MAX_HEADER = 1 << 20  # a PLY header is a few KB; stop reading garbage long before this
_MAX_COUNT = 1 << 31  # more Gaussians than any scene; also keeps int32 indexing valid


def _parse_header(f, path: Path) -> tuple[str | None, int, list[tuple[str, str]], str | None, int]:
    """-> (byte order or None for ascii, vertex count, [(name, dtype)], activation, header bytes)."""
    first = f.readline(64)
    if first.rstrip(b"\r\n") != b"ply":
        raise FormatError(f"{path}: not a PLY file (first line {first[:20]!r}, expected b'ply')")
    fmt = None
    activation = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    size = len(first)
    while True:
        raw = f.readline(4096)
        size += len(raw)
        if not raw or size > _MAX_HEADER:
            raise FormatError(f"{path}: PLY header has no 'end_header' line (truncated file?)")
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_header":
            break
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "format":
            if len(parts) < 2 or parts[1] not in _FORMATS:
                raise FormatError(f"{path}: unsupported PLY format {line!r}; expected one of "
                                  f"{sorted(_FORMATS)}")
            fmt = parts[1]
        elif parts[0] == "comment":
            m = _ACT_COMMENT.match(line)
            if m:
                activation = m.group(1)
        elif parts[0] == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise FormatError(f"{path}: bad element line {line!r}; expected 'element <name> <count>'")
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise FormatError(f"{path}: property before any element: {line!r}")
            if len(parts) >= 2 and parts[1] == "list":
                if elements[-1][0] == "vertex":
                    raise FormatError(f"{path}: list property in the vertex element ({line!r}); "
                                      "3DGS vertices hold scalar properties only")
                elements[-1][2].append((parts[-1], "list"))
                continue
            if len(parts) != 3 or parts[1] not in _TYPES:
                raise FormatError(f"{path}: bad property line {line!r}; expected a scalar type of "
                                  f"{sorted(set(_TYPES))}")
            elements[-1][2].append((parts[2], _TYPES[parts[1]]))
    if fmt is None:
        raise FormatError(f"{path}: PLY header has no 'format' line")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise FormatError(f"{path}: no 'vertex' element (elements: {names})")
    if names[0] != "vertex":
        # Skipping elements before the vertices needs their sizes; 3DGS files never have any.
        raise FormatError(f"{path}: the 'vertex' element must come first (elements: {names})")
    _, count, props = elements[0]
    if count > _MAX_COUNT:
        raise FormatError(f"{path}: vertex count {count} in the header is absurd (> {_MAX_COUNT})")
    return _FORMATS[fmt], count, props, activation, size


def _load_body(path: Path, order: str | None, count: int, props, offset: int) -> np.ndarray:
    """The vertex records as a structured array (memory-mapped for binary files)."""
    if order is None:
        dt = np.dtype([(n, t) for n, t in props])
        try:
            rows = np.loadtxt(path, dtype=np.float64, max_rows=count, ndmin=2,
                              comments=None, **_ascii_skip(path, offset))
        except ValueError as e:
            raise FormatError(f"{path}: bad ascii vertex data: {e}") from None
        if rows.shape[0] != count or (count and rows.shape[1] != len(props)):
            raise FormatError(f"{path}: ascii body holds {rows.shape[0]} rows of {rows.shape[1]} "
                              f"values; the header promises {count} rows of {len(props)} (truncated?)")
        out = np.empty(count, dt)
        for j, (n, _) in enumerate(props):
            out[n] = rows[:, j]
        return out
    dt = np.dtype([(n, order + t) for n, t in props])
    have = os.path.getsize(path) - offset
    need = count * dt.itemsize
    if have < need:
        raise FormatError(f"{path}: truncated: the header promises {count} vertices "
                          f"({need} bytes) but the body holds {have} bytes")
    if count == 0:
        return np.empty(0, dt)
    return np.memmap(path, dtype=dt, mode="r", offset=offset, shape=(count,))


def _ascii_skip(path: Path, offset: int) -> dict:
    with open(path, "rb") as f:
        header_lines = f.read(offset).count(b"\n")
    return {"skiprows": header_lines}


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY file into Gaussians (float32; region from a ``huma_region`` property).

    Raises FormatError naming the problem for a non-PLY or truncated file, a missing property,
    NaN/Inf values or a zero quaternion; InputError when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PLY file {path} does not exist")
    with open(path, "rb") as f:
        order, count, props, activation, offset = _parse_header(f, path)
    names = [n for n, _ in props]
    if len(set(names)) != len(names):
        raise FormatError(f"{path}: duplicate vertex properties in {names}")
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    n_rest = len(rest)
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise FormatError(f"{path}: {n_rest} f_rest_* properties; expected 0, 9, 24 or 45 "
                          "(SH degree 0..3)")
    if rest != [f"f_rest_{i}" for i in range(n_rest)]:
        raise FormatError(f"{path}: f_rest_* properties are not numbered 0..{n_rest - 1}")
    need = (["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
            + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    missing = [n for n in need if n not in names]
    if missing:
        raise FormatError(f"{path}: missing vertex properties {missing} (has {names})")
    if activation is None:
        activation = "exp"
        log.warning("%s records no scale activation; assuming exp (the INRIA convention)", path)
    elif activation not in SCALE_ACTIVATIONS:
        raise FormatError(f"{path}: scale_activation={activation!r} in the header; expected one "
                          f"of {SCALE_ACTIVATIONS}")
    body = _load_body(path, order, count, props, offset)

    def cols(keys: list[str]) -> np.ndarray:
        out = np.empty((count, len(keys)), np.float32)
        for j, k in enumerate(keys):
            out[:, j] = body[k]
            bad = ~np.isfinite(out[:, j])
            if bad.any():
                raise FormatError(f"{path}: property {k!r} of vertex {int(np.argmax(bad))} is "
                                  f"{out[int(np.argmax(bad)), j]} (must be finite)")
        return out

    k = n_rest // 3 + 1
    sh = np.empty((count, k, 3), np.float32)
    sh[:, 0, :] = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    if n_rest:
        sh[:, 1:, :] = cols(rest).reshape(count, 3, k - 1).transpose(0, 2, 1)
    quats = cols([f"rot_{i}" for i in range(4)])
    zero = ~(np.abs(quats).sum(1) > 0)
    if zero.any():
        raise FormatError(f"{path}: vertex {int(np.argmax(zero))} has a zero quaternion (rot_0..3)")
    region = None
    if "huma_region" in names:
        region = np.ascontiguousarray(body["huma_region"], dtype=np.uint8)
    return Gaussians(
        means=cols(["x", "y", "z"]), log_scales=cols([f"scale_{i}" for i in range(3)]),
        quats=quats, opacity_logits=np.ascontiguousarray(cols(["opacity"])[:, 0]), sh=sh,
        region=region, scale_activation=activation)


def write_ply(path: str | os.PathLike, g: Gaussians) -> Path:
    """Write ``g`` as a binary little-endian INRIA 3DGS PLY (plus ``huma_region`` when any
    Gaussian is dynamic) with its scale activation recorded; returns the path."""
    path = Path(path)
    g.validate()
    n, k = g.count, g.sh.shape[1]
    fields = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
              + [f"f_rest_{i}" for i in range(3 * (k - 1))] + ["opacity"]
              + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)])
    with_region = bool(g.region.any())
    dt = np.dtype([(f, "<f4") for f in fields] + ([("huma_region", "u1")] if with_region else []))
    rec = np.zeros(n, dt)
    for j, c in enumerate("xyz"):
        rec[c] = g.means[:, j]
    for c in range(3):
        rec[f"f_dc_{c}"] = g.sh[:, 0, c]
    rest = g.sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)  # channel-major as INRIA writes it
    for i in range(rest.shape[1]):
        rec[f"f_rest_{i}"] = rest[:, i]
    rec["opacity"] = g.opacity_logits
    for i in range(3):
        rec[f"scale_{i}"] = g.log_scales[:, i]
    for i in range(4):
        rec[f"rot_{i}"] = g.quats[:, i]
    if with_region:
        rec["huma_region"] = g.region
    header = ["ply", "format binary_little_endian 1.0",
              f"comment huma_rt scale_activation={g.scale_activation}", f"element vertex {n}"]
    header += [f"property {'uchar' if f == 'huma_region' else 'float'} {f}" for f in dt.names]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        rec.tofile(f)
    return path
