"""Articulation: each of the 5 parameters moves the right Gaussians the right way."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.export.demo.articulation import PARAMS, Articulation
from huma_rt.export.demo.head import MOUTH_Y, REGION_LIDS, REGION_LIPS, HeadSpec, build_head

from huma_rt.errors import InputError


@pytest.fixture(scope="module")
def art():
    return Articulation.for_head(build_head(HeadSpec(seed=0, density=0.3)))


def _pose(art, **kw):
    p = np.zeros(5)
    for k, v in kw.items():
        p[PARAMS.index(k)] = v
    return art.deform(p)


def test_shapes_and_rest(art):
    dmu, dquat, dscale = art.deform(np.zeros((3, 5)))
    n = art.count
    assert dmu.shape == (3, n, 3) and dquat.shape == (3, n, 4) and dscale.shape == (3, n, 3)
    assert dmu.dtype == np.float32
    # float64 rounding of a zero-angle rotation about an off-origin point only
    assert np.abs(dmu).max() < 1e-9 and np.abs(dquat).max() < 1e-9 and np.abs(dscale).max() == 0
    single = art.deform(np.zeros(5))
    assert single[0].shape == (n, 3)
    rows = np.arange(0, n, 7)
    full = art.deform(np.full((1, 5), 0.5))
    sub = art.deform(np.full((1, 5), 0.5), rows=rows)
    np.testing.assert_array_equal(sub[0], full[0][:, rows])


def test_jaw_drops_lower_lip_only(art):
    dmu, dquat, _ = _pose(art, jaw=1.0)
    m = art.means
    lips = art.w["lips"] > 0
    lower, upper = lips & (m[:, 1] < MOUTH_Y - 0.002), lips & (m[:, 1] > MOUTH_Y + 0.002)
    assert dmu[lower, 1].mean() < -0.06
    assert np.abs(dmu[upper]).max() < 0.02
    assert np.abs(dquat[lower]).max() > 0.05  # rotating, not only translating


def test_round_spread_closure(art):
    lips = art.w["lips"] > 0
    x = art.means[lips, 0]
    width0 = np.ptp(x)
    d_round = _pose(art, round=1.0)[0][lips]
    d_spread = _pose(art, spread=1.0)[0][lips]
    assert np.ptp(x + d_round[:, 0]) < 0.8 * width0  # corners pulled in by > 20 %
    assert d_round[:, 2].mean() > 0.01  # lips protrude
    assert np.ptp(x + d_spread[:, 0]) > 1.1 * width0
    lower = lips & (art.means[:, 1] < MOUTH_Y - 0.002)
    open_ = _pose(art, jaw=0.5)[0][lower, 1].mean()
    pressed = _pose(art, jaw=0.5, closure=1.0)[0][lower, 1].mean()
    assert pressed > 0.5 * open_  # less drop (both negative)


def test_blink_closes_lids(art):
    lids = art.w["lids"] > 0
    dmu = _pose(art, blink=1.0)[0]
    assert dmu[lids, 1].mean() < -0.02
    assert np.abs(dmu[~lids]).max() < 1e-9


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros((2, 6)), np.array([np.nan, 0, 0, 0, 0])])
def test_bad_params(art, bad):
    with pytest.raises(InputError, match="params"):
        art.deform(bad)


def test_region_constants_cover_moving_parts():
    head = build_head(HeadSpec(seed=0, density=0.3))
    assert (head.region == REGION_LIPS).any() and (head.region == REGION_LIDS).any()
