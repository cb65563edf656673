"""INRIA 3DGS PLY: round trip, other tools' layouts (written by plyfile), and bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from huma_rt.errors import FormatError, InputError
from huma_rt.formats import read_ply, write_ply
from huma_rt.gaussians import Gaussians


def scene(n=50, degree=3, activation="exp", seed=0) -> Gaussians:
    rng = np.random.default_rng(seed)
    region = (rng.random(n) < 0.3).astype(np.uint8)
    return Gaussians(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        log_scales=rng.uniform(-5, -1, (n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, (degree + 1) ** 2, 3)).astype(np.float32),
        region=region, scale_activation=activation)


def assert_same(a: Gaussians, b: Gaussians) -> None:
    for f in ("means", "log_scales", "quats", "opacity_logits", "sh", "region"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.scale_activation == b.scale_activation


@pytest.mark.parametrize("degree", [0, 1, 3])
@pytest.mark.parametrize("activation", ["exp", "softplus"])
def test_round_trip(tmp_path, degree, activation):
    g = scene(degree=degree, activation=activation)
    back = read_ply(write_ply(tmp_path / "g.ply", g))
    assert_same(g, back)


def test_layout_is_inria_channel_major(tmp_path):
    g = scene(n=7, degree=2)
    v = PlyData.read(str(write_ply(tmp_path / "g.ply", g)))["vertex"].data
    names = v.dtype.names
    assert names[:9] == ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
    assert names[9:9 + 24] == tuple(f"f_rest_{i}" for i in range(24))
    assert names[33:41] == ("opacity", "scale_0", "scale_1", "scale_2",
                            "rot_0", "rot_1", "rot_2", "rot_3")
    # f_rest_(c*(K-1)+k) is coefficient k+1 of channel c (INRIA's transpose before flattening).
    assert v["f_rest_0"][3] == g.sh[3, 1, 0] and v["f_rest_8"][3] == g.sh[3, 1, 1]
    assert v["f_rest_17"][3] == g.sh[3, 2, 2]
    assert v["rot_0"][2] == g.quats[2, 0]


def _foreign(g: Gaussians, path, *, text: bool, drop_comment: bool = True):
    """Another tool's file: shuffled property order, extra properties, optional ascii."""
    n = g.count
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2],
            "opacity": g.opacity_logits, "red": np.zeros(n, np.uint8)}
    for c in range(3):
        cols[f"f_dc_{c}"] = g.sh[:, 0, c]
        cols[f"scale_{c}"] = g.log_scales[:, c]
    for i in range(4):
        cols[f"rot_{i}"] = g.quats[:, i]
    rest = g.sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)
    for i in range(rest.shape[1]):
        cols[f"f_rest_{i}"] = rest[:, i]
    cols["confidence"] = np.ones(n, np.float64)
    order = list(cols)[::-1]
    arr = np.empty(n, [(c, cols[c].dtype) for c in order])
    for c in order:
        arr[c] = cols[c]
    el = PlyElement.describe(arr, "vertex")
    comments = [] if drop_comment else ["huma_rt scale_activation=softplus"]
    PlyData([el], text=text, comments=comments).write(str(path))
    return path


@pytest.mark.parametrize("text", [False, True])
def test_plyfile_written_foreign_layout_loads(tmp_path, text, caplog):
    g = scene(n=30, degree=1)
    g.region[:] = 0
    with caplog.at_level(logging.WARNING):
        back = read_ply(_foreign(g, tmp_path / "f.ply", text=text))
    assert "assuming exp" in caplog.text  # no record -> exp, said out loud
    if text:  # ascii floats are printed with limited digits
        for f in ("means", "log_scales", "quats", "opacity_logits", "sh"):
            np.testing.assert_allclose(getattr(back, f), getattr(g, f), rtol=1e-6, atol=1e-7)
    else:
        assert_same(g, back)


def test_recorded_activation_is_used(tmp_path):
    g = scene(n=5, degree=0)
    back = read_ply(_foreign(g, tmp_path / "f.ply", text=False, drop_comment=False))
    assert back.scale_activation == "softplus"


def _good(tmp_path, n=20):
    return write_ply(tmp_path / "g.ply", scene(n=n, degree=1))


def test_truncated_body(tmp_path):
    p = _good(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    with pytest.raises(FormatError, match="truncated"):
        read_ply(p)


def test_truncated_header(tmp_path):
    p = _good(tmp_path)
    p.write_bytes(p.read_bytes()[:60])
    with pytest.raises(FormatError, match="end_header"):
        read_ply(p)


def test_absurd_count(tmp_path):
    p = _good(tmp_path)
    data = p.read_bytes().replace(b"element vertex 20\n", b"element vertex 99999999999\n")
    p.write_bytes(data)
    with pytest.raises(FormatError, match="99999999999"):
        read_ply(p)


def test_count_beyond_body(tmp_path):
    p = _good(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"element vertex 20\n", b"element vertex 2000000\n"))
    with pytest.raises(FormatError, match="2000000 vertices"):
        read_ply(p)


def test_missing_attribute(tmp_path):
    g = scene(n=4, degree=0)
    arr = np.zeros(4, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("f_dc_0", "f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "m.ply"))
    with pytest.raises(FormatError, match="missing vertex properties.*opacity"):
        read_ply(tmp_path / "m.ply")
    del g


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite(tmp_path, value):
    p = _good(tmp_path)
    v = PlyData.read(str(p))["vertex"].data.copy()
    v["scale_1"][7] = value
    PlyData([PlyElement.describe(v, "vertex")]).write(str(p))
    with pytest.raises(FormatError, match="'scale_1' of vertex 7"):
        read_ply(p)


def test_zero_quaternion(tmp_path):
    p = _good(tmp_path)
    v = PlyData.read(str(p))["vertex"].data.copy()
    for i in range(4):
        v[f"rot_{i}"][3] = 0.0
    PlyData([PlyElement.describe(v, "vertex")]).write(str(p))
    with pytest.raises(FormatError, match="vertex 3 has a zero quaternion"):
        read_ply(p)


def test_not_a_ply_and_missing_file(tmp_path):
    (tmp_path / "x.ply").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(FormatError, match="not a PLY"):
        read_ply(tmp_path / "x.ply")
    with pytest.raises(InputError, match="does not exist"):
        read_ply(tmp_path / "nope.ply")


def test_bad_sh_count(tmp_path):
    p = _good(tmp_path)
    v = PlyData.read(str(p))["vertex"].data
    keep = [n for n in v.dtype.names if n != "f_rest_8"]
    PlyData([PlyElement.describe(np.ascontiguousarray(v[keep]).astype(
        [(n, v.dtype[n]) for n in keep]), "vertex")]).write(str(p))
    with pytest.raises(FormatError, match="8 f_rest"):
        read_ply(p)
