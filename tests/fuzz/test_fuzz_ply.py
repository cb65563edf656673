"""Fuzz the PLY reader: mutated headers (counts, property types and names, formats, lines
dropped or repeated), truncated and extended bodies, flipped bytes, random files after ``ply``.
The verdict is always the same: Gaussians, or a HumaError (never another exception, never an
allocation sized by a header count the file cannot hold)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement

from huma_rt.formats import read_ply, write_ply
from huma_rt.gaussians import Gaussians

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _outcome import succeeds_or_huma_error  # noqa: E402

_TYPES = ["char", "uchar", "short", "ushort", "int", "uint", "float", "double", "int8", "uint8", "float32",
          "float64", "float16", "list uchar int", "list int float", "", "floatx", "int64"]  # fmt: skip
_COUNTS = st.one_of(st.integers(-5, 40), st.sampled_from([2**31 - 1, 2**31, 2**32 + 3, 10**18, 10**40]),
                    st.text(alphabet="0123456789-+.xe_ ", min_size=0, max_size=6))  # fmt: skip


def _scene(n: int = 4) -> Gaussians:
    rng = np.random.default_rng(3)
    return Gaussians(means=rng.normal(size=(n, 3)).astype(np.float32),
                     log_scales=rng.uniform(-4, -1, (n, 3)).astype(np.float32),
                     quats=rng.normal(size=(n, 4)).astype(np.float32),
                     opacity_logits=rng.normal(size=n).astype(np.float32),
                     sh=rng.normal(size=(n, 4, 3)).astype(np.float32),
                     region=np.array([0, 1, 0, 1][:n], np.uint8), scale_activation="exp")  # fmt: skip


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("ply")
    binary = write_ply(d / "b.ply", _scene()).read_bytes()
    v = PlyData.read(str(d / "b.ply"))["vertex"].data
    PlyData([PlyElement.describe(np.array(v), "vertex")], text=True,
            comments=["huma_rt scale_activation=softplus"]).write(str(d / "a.ply"))  # fmt: skip
    return {"binary": binary, "ascii": (d / "a.ply").read_bytes()}


_MORE = settings(max_examples=settings.default.max_examples * 4)  # cheap: ~1 ms an example


def _check(path: Path) -> None:
    out = succeeds_or_huma_error(lambda: read_ply(path))
    if isinstance(out, Gaussians):
        assert np.isfinite(out.means).all() and out.region.dtype == np.uint8


def _split(data: bytes) -> tuple[list[bytes], bytes]:
    end = data.index(b"end_header\n") + len(b"end_header\n")
    return data[:end].split(b"\n")[:-1], data[end:]


@_MORE
@given(kind=st.sampled_from(["binary", "ascii"]), line=st.integers(0, 60), count=_COUNTS,
       ptype=st.sampled_from(_TYPES), pname=st.sampled_from(["x", "f_rest_3", "f_rest_x", "huma_region", "rot_0", ""]),
       edit=st.sampled_from(["count", "type", "drop", "repeat", "insert", "format"]),
       junk=st.binary(max_size=24))  # fmt: skip
def test_mutated_header(tmp_path, originals, kind, line, count, ptype, pname, edit, junk):
    lines, body = _split(originals[kind])
    i = line % len(lines)
    if edit == "count":
        lines = [b"element vertex " + str(count).encode() if x.startswith(b"element vertex") else x for x in lines]
    elif edit == "type":
        lines[i] = f"property {ptype} {pname}".encode()
    elif edit == "drop":
        del lines[i]
    elif edit == "repeat":
        lines.insert(i, lines[i])
    elif edit == "insert":
        lines.insert(i, junk.replace(b"\n", b" "))
    else:
        lines[1] = b"format " + junk.replace(b"\n", b" ") + b" 1.0"
    path = tmp_path / "m.ply"
    path.write_bytes(b"\n".join(lines) + b"\n" + body)
    _check(path)


@_MORE
@given(kind=st.sampled_from(["binary", "ascii"]), cut=st.integers(0, 4000), extra=st.binary(max_size=300),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))  # fmt: skip
def test_truncated_extended_and_flipped(tmp_path, originals, kind, cut, extra, flips):
    data = bytearray(originals[kind][: max(4, len(originals[kind]) - cut)] + extra)
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path / "t.ply"
    path.write_bytes(bytes(data))
    _check(path)


@_MORE
@given(st.binary(max_size=2000))
def test_random_bytes_after_the_magic(tmp_path, tail):
    path = tmp_path / "r.ply"
    path.write_bytes(b"ply\n" + tail)
    _check(path)


@_MORE
@given(count=st.integers(0, 2**40), n_props=st.integers(0, 70),
       fmt=st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian"]), body=st.binary(max_size=600),
       after=st.lists(st.tuples(st.integers(0, 2**40), st.sampled_from(["float w", "list uchar int idx", "uchar c"])),
                      max_size=2))  # fmt: skip
def test_synthetic_headers_with_any_count(tmp_path, count, n_props, fmt, body, after):
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"] + [f"f_rest_{i}" for i in range(56)]  # fmt: skip
    header = [b"ply", f"format {fmt} 1.0".encode(), f"element vertex {count}".encode()]
    header += [f"property float {n}".encode() for n in names[:n_props]]
    for i, (rows, prop) in enumerate(after):  # other elements after the vertices, any count
        header += [f"element extra{i} {rows}".encode(), f"property {prop}".encode()]
    header += [b"end_header"]
    path = tmp_path / "s.ply"
    path.write_bytes(b"\n".join(header) + b"\n" + body)
    _check(path)
