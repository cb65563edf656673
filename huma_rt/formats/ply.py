"""INRIA 3D Gaussian Splatting PLY files <-> :class:`huma_rt.gaussians.Gaussians`, through plyfile.

Layout (as the INRIA code writes it): one ``vertex`` element with float32 properties
``x y z nx ny nz f_dc_0..2 f_rest_0..M-1 opacity scale_0..2 rot_0..3``; ``f_rest`` is
channel-major (all red coefficients 1..K-1, then green, then blue); ``rot`` is wxyz; ``scale`` is
the pre-activation value and ``opacity`` the logit. Which activation the scales use is recorded in
a header comment ``comment huma_rt scale_activation=<exp|softplus>``; a file without it is read as
``exp`` (the INRIA convention) and a warning says so. Other tools' layouts load too: ascii or
big-endian bodies, other property orders and types, extra properties, and empty or scalar-only
elements after the vertices.

Parsing is plyfile's (the field's standard reader: numpy only, memory-maps binary bodies); this
module adds the bounds a file from elsewhere needs before anything is allocated: the header is
read from its first ``_MAX_HEADER`` bytes only (plyfile would read a header without end); the
vertex count is checked against the bytes the file holds (plyfile's ascii and stream readers
allocate ``count`` records first); a binary body must be exactly the header's records (a body
longer than them means the header lists the wrong properties, and every record would be read
shifted); the ``huma_region`` property must hold integers 0..255. Why plyfile rather than our
own parser: the hand-written one it replaces missed these checks; measured on a 200k-Gaussian
degree-3 file, reading is no slower (2.4x faster, mostly from copying all float columns in one
pass; docs/formats.md).
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured

from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import SCALE_ACTIVATIONS, Gaussians

log = logging.getLogger(__name__)

_ACT_COMMENT = re.compile(r"^huma_rt scale_activation=(\S+)\s*$")
_MAX_HEADER = 1 << 20  # a PLY header is a few KB; stop reading garbage long before this
_MAX_COUNT = 1 << 31  # more Gaussians than any scene; also keeps int32 indexing valid
_PLY_ERRORS = (ValueError, OverflowError, UnicodeDecodeError, EOFError)  # plyfile's and numpy's


def _plyfile():
    import plyfile  # a core dependency; imported here so that huma_rt.formats costs nothing until used

    return plyfile


def _header(path: Path):
    """plyfile's parse of the header (its private ``PlyData._parse_header``, pinned plyfile<2),
    fed only the file's first bytes -> (PlyData without data, header length in bytes)."""
    plyfile = _plyfile()
    with open(path, "rb") as f:
        head = f.read(_MAX_HEADER)
    first = head.split(b"\n", 1)[0]
    if first.rstrip(b"\r") != b"ply":
        raise FormatError(f"{path}: not a PLY file (first line {first[:20]!r}, expected b'ply')")
    stream = io.BytesIO(head)
    try:
        meta = plyfile.PlyData._parse_header(stream)
    except plyfile.PlyHeaderParseError as exc:
        if "early end-of-file" in str(exc):
            where = f"in its first {_MAX_HEADER} bytes" if len(head) == _MAX_HEADER else "(truncated file?)"
            raise FormatError(f"{path}: PLY header has no 'end_header' line {where}") from None
        raise FormatError(f"{path}: bad PLY header: {exc}") from None
    except _PLY_ERRORS as exc:
        raise FormatError(f"{path}: bad PLY header: {exc}") from None
    return meta, stream.tell()


def _check_layout(path: Path, meta, size: int, offset: int) -> None:
    """Refuse what plyfile would allocate or read wrongly: counts beyond the file, a body longer
    than the header's records, list properties in the vertices, elements before them."""
    names = [e.name for e in meta.elements]
    if "vertex" not in names:
        raise FormatError(f"{path}: no 'vertex' element (elements: {names})")
    if names[0] != "vertex":
        # Skipping elements before the vertices needs their sizes; 3DGS files never have any.
        raise FormatError(f"{path}: the 'vertex' element must come first (elements: {names})")
    for e in meta.elements:
        if e.count < 0:
            raise FormatError(f"{path}: element {e.name!r} has count {e.count} in the header; expected >= 0")
    vertex = meta.elements[0]
    count = vertex.count
    if count > _MAX_COUNT:
        raise FormatError(f"{path}: vertex count {count} in the header is absurd (> {_MAX_COUNT})")
    lists = [p.name for p in vertex.properties if isinstance(p, _plyfile().PlyListProperty)]
    if lists:
        raise FormatError(f"{path}: list properties {lists} in the vertex element; 3DGS vertices hold "
                          "scalar properties only")  # fmt: skip
    if not vertex.properties:
        raise FormatError(f"{path}: the vertex element has no properties")
    have = size - offset
    if meta.text:
        # An ascii row holds one number and one separator per property at least (plyfile
        # allocates every element's rows before reading them, the vertices' and the others').
        need = count * 2 * len(vertex.properties)
        if have < need:
            raise FormatError(f"{path}: truncated: the header promises {count} vertices of "
                              f"{len(vertex.properties)} values; the ascii body holds {have} bytes")  # fmt: skip
        for e in meta.elements[1:]:
            need += e.count * 2 * max(1, len(e.properties))
            if have < need:
                raise FormatError(f"{path}: truncated: element {e.name!r} ({e.count} rows) cannot fit in "
                                  f"the ascii body's {have} bytes")  # fmt: skip
        return
    need = count * vertex.dtype(meta.byte_order).itemsize
    if have < need:
        raise FormatError(f"{path}: truncated: the header promises {count} vertices "
                          f"({need} bytes) but the body holds {have} bytes")
    for e in meta.elements[1:]:
        if e.count and any(isinstance(p, _plyfile().PlyListProperty) for p in e.properties):
            raise FormatError(f"{path}: element {e.name!r} ({e.count} rows) has list properties; a 3DGS "
                              "PLY holds vertices, and only empty or scalar elements may follow them")  # fmt: skip
        need += e.count * e.dtype(meta.byte_order).itemsize
        if have < need:
            raise FormatError(f"{path}: truncated: element {e.name!r} ({e.count} rows) ends past the "
                              f"file's end ({have} body bytes, {need} needed)")  # fmt: skip
    if have > need:
        raise FormatError(f"{path}: the body holds {have} bytes but the header's records take {need} "
                          f"({count} vertices x {vertex.dtype(meta.byte_order).itemsize} bytes); a longer "
                          "body means the header does not describe the records (they would be read "
                          "shifted)")  # fmt: skip


def _read_vertices(path: Path, meta, count: int, offset: int) -> np.ndarray:
    """The vertex records as a structured array (memory-mapped for binary files)."""
    plyfile = _plyfile()
    try:
        data = plyfile.PlyData.read(str(path), mmap="r" if count and not meta.text else False)
    except plyfile.PlyParseError as exc:
        raise FormatError(f"{path}: bad PLY body: {exc}") from None
    except _PLY_ERRORS as exc:
        raise FormatError(f"{path}: bad PLY body: {type(exc).__name__}: {exc}") from None
    if meta.text:
        extra = _ascii_rows_after(path, data, offset)
        if extra:
            raise FormatError(f"{path}: the ascii body holds {extra} more non-empty lines than the "
                              "header's records")  # fmt: skip
    return data["vertex"].data


def _ascii_rows_after(path: Path, data, offset: int) -> int:
    """Non-empty lines of an ascii PLY beyond the header's records (plyfile stops reading at them)."""
    with open(path, "rb") as f:
        f.seek(offset)
        rows = sum(1 for line in f if line.strip())
    return rows - sum(e.count for e in data.elements)


def _region(path: Path, column: np.ndarray) -> np.ndarray:
    """``huma_region`` as uint8, refusing anything that is not an integer 0..255."""
    x = np.asarray(column)
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x) | (x < 0) | (x > 255) | (np.trunc(x) != x)
    else:
        bad = (x < 0) | (x > 255)
    if bad.any():
        i = int(np.argmax(bad))
        raise FormatError(f"{path}: property 'huma_region' of vertex {i} is {x[i].item()!r}; expected an integer "
                          "region id in 0..255")  # fmt: skip
    return np.ascontiguousarray(x, dtype=np.uint8)


def read_ply(path: str | os.PathLike) -> Gaussians:
    """Read a 3DGS PLY file into Gaussians (float32; region from a ``huma_region`` property).

    Raises FormatError naming the problem for a non-PLY, truncated or over-long file, a header
    whose counts the file cannot hold, a missing property, NaN/Inf values, a zero quaternion or
    a region id that is not an integer 0..255; InputError when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"PLY file {path} does not exist")
    size = path.stat().st_size
    meta, offset = _header(path)
    _check_layout(path, meta, size, offset)
    vertex = meta.elements[0]
    count = vertex.count
    names = [p.name for p in vertex.properties]
    if len(set(names)) != len(names):
        raise FormatError(f"{path}: duplicate vertex properties in {names}")
    rest = sorted((n for n in names if re.fullmatch(r"f_rest_\d+", n)), key=lambda n: int(n[7:]))
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
    activation = None
    for comment in [*meta.comments, *(c for e in meta.elements for c in e.comments)]:
        m = _ACT_COMMENT.match(comment.strip())
        if m:
            activation = m.group(1)
    if activation is None:
        activation = "exp"
        log.warning("%s records no scale activation; assuming exp (the INRIA convention)", path)
    elif activation not in SCALE_ACTIVATIONS:
        raise FormatError(f"{path}: scale_activation={activation!r} in the header; expected one "
                          f"of {SCALE_ACTIVATIONS}")
    body = _read_vertices(path, meta, count, offset)
    region = _region(path, body["huma_region"]) if "huma_region" in names else None

    def cols(keys: list[str]) -> np.ndarray:
        # One pass over the records for all keys (not one per key): 3x faster on a 200k file.
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 -> inf, refused next
            out = structured_to_unstructured(body[keys], dtype=np.float32, copy=True)
        bad = ~np.isfinite(out)
        if bad.any():
            i, j = divmod(int(np.argmax(bad)), len(keys))
            raise FormatError(f"{path}: property {keys[j]!r} of vertex {i} is {body[keys[j]][i].item()!r} "
                              f"(must be finite in float32)")
        return np.ascontiguousarray(out)

    k = n_rest // 3 + 1
    sh = np.empty((count, k, 3), np.float32)
    sh[:, 0, :] = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    if n_rest:
        sh[:, 1:, :] = cols(rest).reshape(count, 3, k - 1).transpose(0, 2, 1)
    quats = cols([f"rot_{i}" for i in range(4)])
    zero = ~(np.abs(quats).sum(1) > 0)
    if zero.any():
        raise FormatError(f"{path}: vertex {int(np.argmax(zero))} has a zero quaternion (rot_0..3)")
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
    plyfile = _plyfile()
    ply = plyfile.PlyData([plyfile.PlyElement.describe(rec, "vertex")], byte_order="<",
                          comments=[f"huma_rt scale_activation={g.scale_activation}"])  # fmt: skip
    ply.write(str(path))
    return path
