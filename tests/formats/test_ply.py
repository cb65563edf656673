"""INRIA 3DGS PLY: round trip, files from other tools (written by plyfile), and bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from huma_rt.errors import FormatError, InputError
from huma_rt.formats import read_ply, write_ply
from huma_rt.gaussians import Gaussians


def make(n: int, degree: int, activation: str = "exp", seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    region = rng.integers(0, 3, n).astype(np.uint8)
    return Gaussians(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        log_scales=rng.normal(-3, 1, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, (degree + 1) ** 2, 3)).astype(np.float32),
        region=region, scale_activation=activation)


def assert_same(a: Gaussians, b: Gaussians) -> None:
    for f in ("means", "log_scales", "quats", "opacity_logits", "sh", "region"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.scale_activation == b.scale_activation


@pytest.mark.parametrize("degree,activation", [(0, "exp"), (1, "softplus"), (2, "exp"), (3, "softplus")])
def test_round_trip(tmp_path, degree, activation):
    g = make(257, degree, activation, seed=degree)
    p = write_ply(tmp_path / "g.ply", g)
    assert_same(read_ply(p), g)
    # INRIA's f_rest order is channel-major: f_rest_1 is the red channel's second coefficient.
    if degree:
        v = PlyData.read(str(p))["vertex"]
        np.testing.assert_array_equal(v["f_rest_1"], g.sh[:, 2, 0])
        np.testing.assert_array_equal(v[f"f_rest_{(degree + 1) ** 2 - 1}"], g.sh[:, 1, 1])


def inria_like(g: Gaussians, extra: bool = True, shuffle: bool = True) -> np.ndarray:
    n, k = g.count, g.sh.shape[1]
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2]}
    for c in range(3):
        cols[f"f_dc_{c}"] = g.sh[:, 0, c]
        for i in range(k - 1):
            cols[f"f_rest_{c * (k - 1) + i}"] = g.sh[:, 1 + i, c]
    cols["opacity"] = g.opacity_logits
    for j in range(3):
        cols[f"scale_{j}"] = g.log_scales[:, j]
    for j in range(4):
        cols[f"rot_{j}"] = g.quats[:, j]
    if extra:
        cols["red"] = np.full(n, 7, np.uint8)
        cols["confidence"] = np.linspace(0, 1, n)  # float64
    names = list(cols)
    if shuffle:
        names = list(np.random.default_rng(1).permutation(names))
    rec = np.zeros(n, [(p, cols[p].dtype.str) for p in names])
    for p in names:
        rec[p] = cols[p]
    return rec


@pytest.mark.parametrize("text,byte_order", [(False, "<"), (False, ">"), (True, "=")])
def test_other_tools_layout_loads(tmp_path, caplog, text, byte_order):
    g = make(50, 2)
    g.region[:] = 0
    el = PlyElement.describe(inria_like(g), "vertex")
    faces = PlyElement.describe(np.zeros(2, [("flag", "u1")]), "extra")  # another element after
    p = tmp_path / "other.ply"
    PlyData([el, faces], text=text, byte_order=byte_order).write(str(p))
    with caplog.at_level(logging.WARNING):
        got = read_ply(p)
    assert "assuming exp" in caplog.text  # no record in the file: said, not silent
    tol = 1e-6 if text else 0  # plyfile's ascii writes floats with limited digits
    np.testing.assert_allclose(got.sh, g.sh, atol=tol, rtol=tol)
    np.testing.assert_allclose(got.means, g.means, atol=tol, rtol=tol)
    np.testing.assert_allclose(got.quats, g.quats, atol=tol, rtol=tol)
    np.testing.assert_allclose(got.log_scales, g.log_scales, atol=tol, rtol=tol)
    np.testing.assert_allclose(got.opacity_logits, g.opacity_logits, atol=tol, rtol=tol)
    assert got.scale_activation == "exp"
    assert read_ply(p, scale_activation="softplus").scale_activation == "softplus"


def test_recorded_activation_wins_and_conflict_is_an_error(tmp_path):
    p = write_ply(tmp_path / "g.ply", make(5, 0, "softplus"))
    assert read_ply(p).scale_activation == "softplus"
    with pytest.raises(InputError, match="records scale_activation 'softplus'"):
        read_ply(p, scale_activation="exp")


def _write_raw(tmp_path, rec, header_extra="", count=None):
    p = tmp_path / "raw.ply"
    n = len(rec) if count is None else count
    props = "".join(f"property float {name}\n" for name in rec.dtype.names)
    head = f"ply\nformat binary_little_endian 1.0\n{header_extra}element vertex {n}\n{props}end_header\n"
    p.write_bytes(head.encode() + rec.astype([(q, "<f4") for q in rec.dtype.names]).tobytes())
    return p


def test_truncated_file(tmp_path):
    p = write_ply(tmp_path / "g.ply", make(100, 1))
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(FormatError, match="declares 100 vertices"):
        read_ply(p)
    p.write_bytes(data[:40])  # cut inside the header
    with pytest.raises(FormatError, match="end_header"):
        read_ply(p)


def test_absurd_count(tmp_path):
    rec = inria_like(make(3, 0), extra=False)
    p = _write_raw(tmp_path, rec, count=10**15)
    with pytest.raises(FormatError, match="declares 1000000000000000 vertices"):
        read_ply(p)


def test_missing_attributes(tmp_path):
    rec = inria_like(make(4, 0), extra=False, shuffle=False)
    keep = [q for q in rec.dtype.names if q not in ("rot_2", "opacity")]
    p = _write_raw(tmp_path, rec[keep])
    with pytest.raises(FormatError, match=r"lacks the 3DGS properties \['opacity', 'rot_2'\]"):
        read_ply(p)


def test_bad_f_rest_count(tmp_path):
    rec = inria_like(make(4, 1), extra=False, shuffle=False)
    keep = [q for q in rec.dtype.names if q != "f_rest_8"]
    with pytest.raises(FormatError, match="8 f_rest properties"):
        read_ply(_write_raw(tmp_path, rec[keep]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(tmp_path, bad):
    rec = inria_like(make(6, 0), extra=False, shuffle=False)
    rec["scale_1"][4] = bad
    with pytest.raises(FormatError, match="property scale_1 of vertex 4"):
        read_ply(_write_raw(tmp_path, rec))


def test_zero_quaternion(tmp_path):
    rec = inria_like(make(6, 0), extra=False, shuffle=False)
    for j in range(4):
        rec[f"rot_{j}"][2] = 0.0
    with pytest.raises(FormatError, match="vertex 2 has a zero quaternion"):
        read_ply(_write_raw(tmp_path, rec))


def test_not_ply_and_bad_headers(tmp_path):
    p = tmp_path / "x.ply"
    p.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(FormatError, match="not a PLY file"):
        read_ply(p)
    p.write_bytes(b"ply\nformat binary_middle_endian 1.0\nend_header\n")
    with pytest.raises(FormatError, match="unsupported format"):
        read_ply(p)
    p.write_bytes(b"ply\nformat ascii 1.0\nelement face 1\nproperty float a\nend_header\n1\n")
    with pytest.raises(FormatError, match="no 'vertex' element"):
        read_ply(p)
    with pytest.raises(InputError, match="does not exist"):
        read_ply(tmp_path / "none.ply")


def test_ascii_truncated(tmp_path):
    g = make(10, 0)
    p = tmp_path / "a.ply"
    PlyData([PlyElement.describe(inria_like(g, extra=False), "vertex")], text=True).write(str(p))
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join(lines[:-3]))
    with pytest.raises(FormatError, match="ends after 7"):
        read_ply(p)
