"""PLY files from elsewhere: every header count, body length and region value is checked before
it is trusted (issue 16). Each test here failed on the hand-written reader plyfile replaced."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from huma_rt.errors import FormatError
from huma_rt.formats import read_ply, write_ply

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from test_ply import scene  # noqa: E402


def _good(tmp_path, n=20, degree=1):
    return write_ply(tmp_path / "g.ply", scene(n=n, degree=degree))


def _edit(path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    return path


@pytest.mark.parametrize("name", [b"f_rest_x", b"f_rest_", b"f_rest_1e"])
def test_malformed_f_rest_name_is_a_format_error(tmp_path, name):
    p = _edit(_good(tmp_path), b"property float f_rest_8\n", b"property float " + name + b"\n")
    with pytest.raises(FormatError, match="f_rest"):
        read_ply(p)


@pytest.mark.parametrize("count", [b"1.5", b"-1", b"0x10", b"twenty", b"\xef\xbc\x91"])
def test_malformed_count_is_a_format_error(tmp_path, count):
    p = _edit(_good(tmp_path), b"element vertex 20\n", b"element vertex " + count + b"\n")
    with pytest.raises(FormatError, match="g.ply"):
        read_ply(p)


def _ascii(tmp_path, n=3, count=None):
    g = scene(n=n, degree=0)
    g.region[:] = 0
    p = write_ply(tmp_path / "b.ply", g)
    v = PlyData.read(str(p))["vertex"].data
    PlyData([PlyElement.describe(np.array(v), "vertex")], text=True).write(str(tmp_path / "a.ply"))
    p = tmp_path / "a.ply"
    if count is not None:
        _edit(p, f"element vertex {n}\n".encode(), f"element vertex {count}\n".encode())
    return p


def _refused_before_allocating(path, match: str) -> None:
    """read_ply refuses ``path`` with FormatError(match) in < 5 s, tracing < 10 MiB of memory."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FormatError, match=match):
            read_ply(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert peak < 10 << 20 and elapsed < 5, (peak, elapsed)


def test_ascii_count_of_2_31_is_refused_before_allocating(tmp_path):
    _refused_before_allocating(_ascii(tmp_path, count=2**31), "2147483648 vertices")


def test_binary_count_of_2_31_is_refused_before_allocating(tmp_path):
    p = _edit(_good(tmp_path), b"element vertex 20\n", b"element vertex 2147483648\n")
    _refused_before_allocating(p, "2147483648 vertices")


def test_body_longer_than_the_records_is_refused(tmp_path):
    p = _good(tmp_path)
    record = (p.stat().st_size - p.read_bytes().index(b"end_header\n") - 11) // 20
    p.write_bytes(p.read_bytes() + b"\0" * record)  # one record more than the header says
    with pytest.raises(FormatError, match="records take"):
        read_ply(p)


def test_header_missing_a_property_is_refused_not_read_shifted(tmp_path):
    p = _edit(_good(tmp_path), b"property float nz\n", b"")
    with pytest.raises(FormatError, match="read shifted"):
        read_ply(p)


def test_ascii_rows_beyond_the_count_are_refused(tmp_path):
    p = _ascii(tmp_path, n=3, count=2)
    with pytest.raises(FormatError, match="1 more non-empty lines"):
        read_ply(p)


def _with_region(tmp_path, values, dtype):
    p = _good(tmp_path, n=len(values))
    v = PlyData.read(str(p))["vertex"].data
    names = [n for n in v.dtype.names if n != "huma_region"]
    arr = np.empty(len(values), [(n, v.dtype[n]) for n in names] + [("huma_region", dtype)])
    for n in names:
        arr[n] = v[n]
    arr["huma_region"] = values
    PlyData([PlyElement.describe(arr, "vertex")], comments=["huma_rt scale_activation=exp"]).write(str(p))
    return p


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 300.0, 2.5])
def test_float_region_must_be_an_integer_0_255(tmp_path, bad):
    p = _with_region(tmp_path, [0.0, 1.0, 0.0, bad, 1.0], "f4")
    with pytest.raises(FormatError, match=r"'huma_region' of vertex 3 is .*expected an integer region id in 0..255"):
        read_ply(p)


@pytest.mark.parametrize("dtype", ["i2", "u2", "i4"])
def test_integer_region_out_of_range(tmp_path, dtype):
    p = _with_region(tmp_path, [0, 300 if dtype != "i2" else -3, 1], dtype)
    with pytest.raises(FormatError, match="vertex 1"):
        read_ply(p)


def test_integral_float_and_wide_int_regions_load(tmp_path):
    assert read_ply(_with_region(tmp_path, [0.0, 7.0, 255.0], "f8")).region.tolist() == [0, 7, 255]
    assert read_ply(_with_region(tmp_path, [0, 3, 1], "i4")).region.tolist() == [0, 3, 1]


def test_header_without_end_is_bounded(tmp_path):
    p = tmp_path / "long.ply"
    p.write_bytes(b"ply\nformat binary_little_endian 1.0\ncomment " + b"x" * (3 << 20))
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="no 'end_header' line in its first"):
        read_ply(p)
    assert time.perf_counter() - t0 < 5


def test_non_ascii_header_is_a_format_error(tmp_path):
    p = _edit(_good(tmp_path), b"property float x\n", b"property float \xff\xfe\n")
    with pytest.raises(FormatError, match="bad PLY header"):
        read_ply(p)


def test_elements_after_the_vertices(tmp_path):
    g = scene(n=5, degree=0)
    g.region[:] = 0
    v = PlyData.read(str(write_ply(tmp_path / "g.ply", g)))["vertex"].data
    faces = np.empty(0, [("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(np.array(v), "vertex"), PlyElement.describe(faces, "face")]).write(str(tmp_path / "e.ply"))
    assert read_ply(tmp_path / "e.ply").count == 5  # an empty face element (point-cloud tools write one)
    faces = np.zeros(2, [("vertex_indices", "i4", (3,))])
    PlyData([PlyElement.describe(np.array(v), "vertex"), PlyElement.describe(faces, "face")]).write(str(tmp_path / "f.ply"))
    with pytest.raises(FormatError, match="list properties"):
        read_ply(tmp_path / "f.ply")


def test_big_endian_and_zero_vertices(tmp_path):
    g = scene(n=6, degree=1)
    g.region[:] = 0
    v = PlyData.read(str(write_ply(tmp_path / "g.ply", g)))["vertex"].data
    PlyData([PlyElement.describe(np.array(v), "vertex")], byte_order=">").write(str(tmp_path / "be.ply"))
    np.testing.assert_array_equal(read_ply(tmp_path / "be.ply").sh, g.sh)
    PlyData([PlyElement.describe(np.array(v)[:0], "vertex")]).write(str(tmp_path / "zero.ply"))
    assert read_ply(tmp_path / "zero.ply").count == 0


def _pack_args(ply, tmp_path):
    return ["pack", "--ply", str(ply), "--regions", str(tmp_path / "r.npy"), "--camera", str(tmp_path / "c.json"),
            "--export", str(tmp_path / "export"), "-o", str(tmp_path / "out")]  # fmt: skip


@pytest.mark.parametrize("case", ["f_rest_name", "count_2_31_ascii", "longer_body", "region_nan"])
def test_pack_cli_prints_error_for_bad_ply(tmp_path, capsys, case):
    from huma_rt.cli import main

    if case == "f_rest_name":
        p = _edit(_good(tmp_path), b"property float f_rest_8\n", b"property float f_rest_x\n")
    elif case == "count_2_31_ascii":
        p = _ascii(tmp_path, count=2**31)
    elif case == "longer_body":
        p = _good(tmp_path)
        p.write_bytes(p.read_bytes() + b"\0" * 7)
    else:
        p = _with_region(tmp_path, [0.0, np.nan], "f4")
    assert main(_pack_args(p, tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and p.name in err and "Traceback" not in err


def test_pack_cli_subprocess_bad_ply(tmp_path):
    p = _with_region(tmp_path, [0.0, 2.5], "f4")
    proc = subprocess.run([sys.executable, "-m", "huma_rt", *_pack_args(p, tmp_path)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "vertex 1 is 2.5" in proc.stderr


def test_ascii_element_after_the_vertices_with_an_absurd_count(tmp_path):
    p = _ascii(tmp_path, n=3)
    _edit(p, b"end_header\n", b"element face 1000000000000\nproperty list uchar int vertex_indices\nend_header\n")
    _refused_before_allocating(p, "'face' .1000000000000 rows")
