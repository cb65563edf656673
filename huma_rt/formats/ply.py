"""INRIA 3D Gaussian Splatting PLY files <-> huma_rt.gaussians.Gaussians.

Layout (as INRIA's reference code writes it): one ``vertex`` element with float32 properties
``x y z nx ny nz f_dc_0..2 f_rest_0..M-1 opacity scale_0..2 rot_0..3``; ``f_rest`` is
channel-major (all red higher-order coefficients, then green, then blue); ``opacity`` is a
logit, ``rot`` a wxyz quaternion, ``scale`` pre-activation. The scale activation is recorded in
a ``comment scale_activation <exp|softplus>`` header line; a file without it (INRIA's own) is
read as exp and a log line says so. The reader takes any property order, extra properties,
other elements after the vertices, ascii and both binary endiannesses; binary data is mapped,
not read into Python objects. Our optional ``huma_region`` uchar property keeps region ids.
"""

from __future__ import annotations

import logging
import os
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
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "ascii"}
_MAX_HEADER = 1 << 20
_ACT_KEY = "scale_activation"
REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
            "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


def _header(f, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]], list[str], int]:
    """Parse the header: (format, elements [(name, count, [(prop, dtype)])], comments, size)."""
    first = f.readline(16)
    if first.rstrip(b"\r\n") != b"ply":
        raise FormatError(f"{path}: not a PLY file (first line {first[:16]!r}; expected b'ply')")
    fmt, elements, comments = None, [], []
    while True:
        raw = f.readline(4096)
        if not raw.endswith(b"\n"):
            raise FormatError(f"{path}: header ends without 'end_header' (truncated file?)")
        if f.tell() > _MAX_HEADER:
            raise FormatError(f"{path}: header longer than {_MAX_HEADER} bytes; not a PLY header")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise FormatError(f"{path}: non-ASCII bytes in the header line {raw[:40]!r}") from None
        words = line.split()
        if not words:
            continue
        key = words[0]
        if key == "end_header":
            break
        if key == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise FormatError(f"{path}: unsupported format line {line!r}; expected one of "
                                  f"{sorted(_FORMATS)}")
            fmt = _FORMATS[words[1]]
        elif key in ("comment", "obj_info"):
            comments.append(line[len(key):].strip())
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise FormatError(f"{path}: bad element line {line!r}; expected 'element NAME COUNT'")
            elements.append((words[1], int(words[2]), []))
        elif key == "property":
            if not elements:
                raise FormatError(f"{path}: property before any element: {line!r}")
            if len(words) >= 2 and words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
            elif len(words) == 3 and words[1] in _TYPES:
                elements[-1][2].append((words[2], _TYPES[words[1]]))
            else:
                raise FormatError(f"{path}: bad property line {line!r}; expected 'property TYPE NAME'"
                                  f" with TYPE in {sorted(set(_TYPES))}")
        else:
            raise FormatError(f"{path}: unknown header keyword {key!r} in line {line!r}")
    if fmt is None:
        raise FormatError(f"{path}: header has no 'format' line")
    return fmt, elements, comments, f.tell()


def _scale_activation(comments: list[str], path: Path, override: str | None) -> str:
    recorded = None
    for c in comments:
        words = c.replace("=", " ").split()
        if len(words) == 2 and words[0] == _ACT_KEY:
            recorded = words[1]
            if recorded not in SCALE_ACTIVATIONS:
                raise FormatError(f"{path}: scale_activation {recorded!r} recorded in the header is "
                                  f"not one of {SCALE_ACTIVATIONS}")
    if override is not None:
        if override not in SCALE_ACTIVATIONS:
            raise InputError(f"scale_activation must be one of {SCALE_ACTIVATIONS}; got {override!r}")
        if recorded is not None and recorded != override:
            raise InputError(f"{path} records scale_activation {recorded!r}; the caller asked for "
                             f"{override!r}")
        return override
    if recorded is None:
        log.warning("%s records no scale activation; assuming exp (INRIA 3DGS convention)", path)
        return "exp"
    return recorded


def read_ply(path: str | os.PathLike, *, scale_activation: str | None = None) -> Gaussians:
    """Read a 3DGS PLY file into Gaussians (float32 arrays, SH degree from the f_rest count).

    scale_activation: used for files that record none (default then: exp, logged); a file's
    own record wins and a conflicting argument raises InputError. Raises FormatError naming the
    problem for anything malformed: not PLY, truncated, missing properties, counts the file
    cannot hold, NaN/Inf values, zero quaternions.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PLY file {path} does not exist")
    size = path.stat().st_size
    with open(path, "rb") as f:
        fmt, elements, comments, offset = _header(f, path)
        vi = next((i for i, e in enumerate(elements) if e[0] == "vertex"), None)
        if vi is None:
            raise FormatError(f"{path}: no 'vertex' element in the header")
        if vi != 0:
            raise FormatError(f"{path}: the 'vertex' element must come first; found "
                              f"{[e[0] for e in elements[:vi]]} before it")
        _, n, props = elements[0]
        lists = [p for p, t in props if t == "list"]
        if lists:
            raise FormatError(f"{path}: list properties {lists} in 'vertex' are not supported")
        names = [p for p, _ in props]
        missing = [r for r in REQUIRED if r not in names]
        if missing:
            raise FormatError(f"{path}: vertex lacks the 3DGS properties {missing}")
        if len(set(names)) != len(names):
            raise FormatError(f"{path}: duplicate vertex properties in {names}")
        if fmt == "ascii":
            data = _read_ascii(f, path, n, props)
        else:
            dtype = np.dtype([(p, fmt + t) for p, t in props])
            avail = size - offset
            if n * dtype.itemsize > avail:
                raise FormatError(f"{path}: header declares {n} vertices ({n * dtype.itemsize} "
                                  f"bytes) but the file holds {avail} bytes of data (truncated "
                                  f"or bad count)")
            data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(n,)) if n else \
                np.zeros(0, dtype)
    return _to_gaussians(data, names, path, _scale_activation(comments, path, scale_activation))


def _read_ascii(f, path: Path, n: int, props: list[tuple[str, str]]) -> np.ndarray:
    dtype = np.dtype([(p, t) for p, t in props])
    rows = np.zeros(n, dtype)
    cols = len(props)
    for i in range(n):
        line = f.readline()
        if not line:
            raise FormatError(f"{path}: header declares {n} vertices but the file ends after {i} "
                              f"(truncated)")
        words = line.split()
        if len(words) < cols:
            raise FormatError(f"{path}: vertex {i} has {len(words)} values; expected {cols}")
        try:
            rows[i] = tuple(float(w) for w in words[:cols])
        except (ValueError, OverflowError) as e:
            raise FormatError(f"{path}: vertex {i}: {e}") from None
    return rows


def _to_gaussians(data: np.ndarray, names: list[str], path: Path, activation: str) -> Gaussians:
    n = data.shape[0]
    rest = sorted((p for p in names if p.startswith("f_rest_")), key=lambda p: int(p[7:]))
    if [int(p[7:]) for p in rest] != list(range(len(rest))):
        raise FormatError(f"{path}: f_rest properties must be f_rest_0..f_rest_M-1; got {rest}")
    k = len(rest) // 3 + 1
    if len(rest) % 3 or k not in (1, 4, 9, 16):
        raise FormatError(f"{path}: {len(rest)} f_rest properties; expected 0, 9, 24 or 45 "
                          f"(SH degree 0..3)")

    def cols(keys) -> np.ndarray:
        out = np.empty((n, len(keys)), np.float32)
        for j, key in enumerate(keys):
            out[:, j] = data[key]
            bad = ~np.isfinite(out[:, j])
            if bad.any():
                raise FormatError(f"{path}: property {key} of vertex {int(np.argmax(bad))} is "
                                  f"{out[int(np.argmax(bad)), j]} (NaN/Inf not allowed)")
        return out

    means = cols(["x", "y", "z"])
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        r = cols(rest).reshape(n, 3, k - 1)  # channel-major, as INRIA writes it
        sh[:, 1:, :] = r.transpose(0, 2, 1)
    quats = cols(["rot_0", "rot_1", "rot_2", "rot_3"])
    zero = np.einsum("ij,ij->i", quats, quats) <= 0
    if zero.any():
        raise FormatError(f"{path}: vertex {int(np.argmax(zero))} has a zero quaternion (rot_0..3)")
    region = None
    if "huma_region" in names:
        region = np.ascontiguousarray(data["huma_region"]).astype(np.uint8)
    return Gaussians(means=means, log_scales=cols(["scale_0", "scale_1", "scale_2"]), quats=quats,
                     opacity_logits=np.ascontiguousarray(cols(["opacity"])[:, 0]), sh=sh,
                     region=region, scale_activation=activation)


def write_ply(path: str | os.PathLike, g: Gaussians) -> Path:
    """Write ``g`` as a binary little-endian INRIA 3DGS PLY (normals zero), recording its scale
    activation; region ids go in a ``huma_region`` uchar property when any is non-zero.
    Written to a temporary file and renamed, so a reader never sees half a file."""
    if not isinstance(g, Gaussians):
        raise InputError(f"write_ply needs a huma_rt.gaussians.Gaussians; got {type(g).__name__}")
    g.validate()
    path = Path(path)
    n, k = g.count, g.sh.shape[1]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    fields = [(p, "<f4") for p in names]
    with_region = bool(g.region is not None and g.region.any())
    if with_region:
        fields.append(("huma_region", "u1"))
    rec = np.zeros(n, np.dtype(fields))
    for j, p in enumerate("xyz"):
        rec[p] = g.means[:, j]
    for c in range(3):
        rec[f"f_dc_{c}"] = g.sh[:, 0, c]
        for i in range(k - 1):
            rec[f"f_rest_{c * (k - 1) + i}"] = g.sh[:, 1 + i, c]
    rec["opacity"] = g.opacity_logits
    for j in range(3):
        rec[f"scale_{j}"] = g.log_scales[:, j]
    for j in range(4):
        rec[f"rot_{j}"] = g.quats[:, j]
    if with_region:
        rec["huma_region"] = g.region
    header = ["ply", "format binary_little_endian 1.0", f"comment {_ACT_KEY} {g.scale_activation}",
              f"element vertex {n}"]
    header += [f"property {'uchar' if t == 'u1' else 'float'} {p}" for p, t in fields]
    header.append("end_header")
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())
    tmp.replace(path)
    return path
