"""The CPU projection runs raster_math.cuh's math on 8 Gaussians at a time (the last n % 8 one
by one, as the GPU and the emulated kernels do). Its 8-lane form must equal the float form bit
for bit: each Gaussian projected alone (a call of one row takes the float path) gives exactly
the rows, colours, blend records and tile box of the whole batch."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available
from test_oracle_raster import random_scene

from huma_rt.gaussians import Gaussians
from huma_rt.render._cpu import CpuStages

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")


def _project(stages: CpuStages, g: Gaussians, rows: slice, out_index=None):
    stages.project(g.means[rows], g.quats[rows], g.log_scales[rows], g.opacity_logits[rows],
                   g.sh[rows], g.scale_activation, out_index)
    return stages.tile_box.copy()


def _record_bytes(stages: CpuStages) -> np.ndarray:
    size = stages.lib.hr_cpu_record_size()
    return stages.records[:stages.proj.shape[0] * size].reshape(-1, size)


@pytest.mark.parametrize("seed,n,degree,activation,dense", [
    (61, 203, 3, "exp", False), (62, 157, 0, "softplus", True), (63, 90, 2, "exp", True),
    (64, 45, 1, "softplus", False)])
def test_eight_lane_projection_equals_one_at_a_time(seed, n, degree, activation, dense):
    # every hard case of the oracle scenes: behind the camera, off-screen, huge, sub-pixel
    g, cam = random_scene(seed, n, 96, 72, degree, activation=activation, dense=dense)
    g.quats[::17] = 0.0  # zero quaternions: NaN covariances, culled on every path
    batch = CpuStages(cam, n)
    batch.proj.view(np.uint8)[:] = 0xAB  # poisoned: every row must be written
    batch.colors[:] = np.nan
    box = _project(batch, g, slice(0, n))
    visible = batch.proj["rx"] > 0
    assert 10 < visible.sum() < n, "the scene must mix visible and culled Gaussians"

    one = CpuStages(cam, n)
    boxes = []
    for i in range(n):  # a call of one Gaussian: no full group of 8, the float path only
        boxes.append(_project(one, g, slice(i, i + 1), np.array([i], np.int32)))
    assert one.proj[visible].tobytes() == batch.proj[visible].tobytes()
    np.testing.assert_array_equal(one.proj["rx"], batch.proj["rx"])
    np.testing.assert_array_equal(one.proj["ry"], batch.proj["ry"])
    assert one.colors.tobytes() == batch.colors.tobytes()
    assert _record_bytes(one)[visible].tobytes() == _record_bytes(batch)[visible].tobytes()
    # the batch's box is the union of the rows' boxes (empty ones excluded)
    b = np.array([x for x in boxes if x[0] < x[2] and x[1] < x[3]])
    np.testing.assert_array_equal(box, [b[:, 0].min(), b[:, 1].min(), b[:, 2].max(),
                                        b[:, 3].max()])
