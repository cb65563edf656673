"""bench/train_torso_bound's phase correlation: the torso shift it reports is the true one."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.bench.train_torso_bound import phase_shift
from scipy import ndimage


@pytest.mark.parametrize("dy, dx", [(0.0, 0.0), (2.0, -3.0), (-1.4, 2.6)])
def test_phase_shift_finds_a_known_shift_to_a_fraction_of_a_pixel(dy, dx):
    rng = np.random.default_rng(0)
    ref = ndimage.gaussian_filter(rng.random((24, 96)), 1.5)  # a textured band, like a sweater
    moved = ndimage.shift(ref, (dy, dx), order=3, mode="nearest")
    got = phase_shift(ref, moved)
    assert got == pytest.approx((dy, dx), abs=0.35)
