"""Gaussians and Camera validation: bad values give InputError naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians


def make(n=5, deg=1, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        log_scales=rng.normal(-3, 0.5, size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, (deg + 1) ** 2, 3)).astype(np.float32),
    )


def test_valid_gaussians_and_activations():
    g = Gaussians(**make())
    assert g.count == 5 and g.sh_degree == 1
    assert g.region.dtype == np.uint8 and (g.region == 0).all()
    np.testing.assert_allclose(g.scales(), np.exp(g.log_scales))
    assert ((g.opacities() > 0) & (g.opacities() < 1)).all()
    soft = Gaussians(**make(), scale_activation="softplus")
    np.testing.assert_allclose(soft.scales(), np.log1p(np.exp(soft.log_scales)), rtol=1e-6)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("means", np.zeros((5, 2), np.float32), "means must have shape"),
        ("quats", np.zeros((5, 4), np.float64), "quats must be float32"),
        ("sh", np.zeros((5, 3, 3), np.float32), "SH coefficient count"),
        ("opacity_logits", "x", "opacity_logits must be a numpy array"),
    ],
)
def test_bad_fields_name_themselves(field, value, message):
    d = make()
    d[field] = value
    with pytest.raises(InputError, match=message):
        Gaussians(**d)


def test_nan_and_zero_quaternion_are_refused():
    d = make()
    d["means"][3, 1] = np.nan
    with pytest.raises(InputError, match="means must be finite; Gaussian 3"):
        Gaussians(**d)
    d = make()
    d["quats"][2] = 0
    with pytest.raises(InputError, match="Gaussian 2 has a zero quaternion"):
        Gaussians(**d)


def test_unknown_scale_activation():
    with pytest.raises(InputError, match="scale_activation must be one of"):
        Gaussians(**make(), scale_activation="relu")


def test_subset_keeps_rows():
    g = Gaussians(**make(n=10))
    s = g.subset(np.array([1, 4, 7]))
    np.testing.assert_array_equal(s.means, g.means[[1, 4, 7]])
    assert s.means.flags.c_contiguous


def test_camera_round_trip_and_errors():
    cam = Camera(width=64, height=48, fx=50.0, fy=50.0, cx=32.0, cy=24.0)
    again = Camera.from_dict(cam.to_dict())
    assert again.to_dict() == cam.to_dict()
    with pytest.raises(InputError, match="camera width"):
        Camera(width=0, height=48, fx=50.0, fy=50.0, cx=32.0, cy=24.0)
    with pytest.raises(InputError, match="fx, fy must be positive"):
        Camera(width=64, height=48, fx=-1.0, fy=50.0, cx=32.0, cy=24.0)
    with pytest.raises(InputError, match="4x4"):
        Camera(width=64, height=48, fx=5.0, fy=5.0, cx=3.0, cy=2.0, world_to_camera=np.eye(3))
    with pytest.raises(InputError, match="incomplete"):
        Camera.from_dict({"width": 3})
