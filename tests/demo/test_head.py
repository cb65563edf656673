"""The procedural head: deterministic, sized, coloured, framed, with region ids that match motion."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.export.demo.articulation import Articulation, assign_regions, weights
from huma_rt.export.demo.head import (
    MOUTH_Y,
    REGION_JAW,
    REGION_LIDS,
    REGION_LIPS,
    REGION_MOUTH,
    REGION_STATIC,
    HeadSpec,
    build_background,
    build_camera,
    build_head,
)


@pytest.fixture(scope="module")
def head():
    return build_head(HeadSpec(seed=0))


def test_deterministic_by_seed(head):
    again = build_head(HeadSpec(seed=0))
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh", "region"):
        np.testing.assert_array_equal(getattr(head, name), getattr(again, name))
    other = build_head(HeadSpec(seed=1, density=0.1))
    small = build_head(HeadSpec(seed=0, density=0.1))
    assert not np.array_equal(other.means, small.means)


def test_size_and_appearance(head):
    assert 30_000 <= head.count <= 60_000
    assert head.sh_degree >= 1
    assert np.abs(head.sh[:, 1:]).max() > 0.01  # view-dependent colour is really there
    head.validate()
    colours = 0.28209479 * head.sh[:, 0] + 0.5
    # skin dominates; dark mouth interior and white teeth exist
    assert (colours.min(1) < 0.15).sum() > 200
    assert (colours.min(1) > 0.8).sum() > 200


def test_regions_are_what_moves(head):
    counts = np.bincount(head.region, minlength=5)
    for region in (REGION_STATIC, REGION_JAW, REGION_LIPS, REGION_MOUTH, REGION_LIDS):
        assert counts[region] > 100, (region, counts)
    art = Articulation.for_head(head)
    rng = np.random.default_rng(0)
    dmu, dquat, dscale = art.deform(rng.uniform(0, 1, (4, 5)))
    moving = (np.abs(dmu).max((0, 2)) > 1e-6) | (np.abs(dquat).max((0, 2)) > 1e-6)
    assert moving.mean() > 0.9  # nearly every Gaussian marked dynamic really moves
    # and static Gaussians have no articulation weight
    static = head.region == REGION_STATIC
    part = build_head(HeadSpec(seed=0), part_ids=True).region
    np.testing.assert_array_equal(assign_regions(head.means, part), head.region)
    w = weights(head.means[static], part[static])
    assert max(float(w[k].max()) for k in ("jaw", "mouth", "lids")) <= 1e-3
    # lips straddle the mouth line; lids are above it
    lips = head.means[head.region == REGION_LIPS]
    assert (lips[:, 1] > MOUTH_Y).any() and (lips[:, 1] < MOUTH_Y).any()
    assert (head.means[head.region == REGION_LIDS][:, 1] > MOUTH_Y + 0.2).all()


def test_camera_frames_the_head(head):
    cam = build_camera(512)
    assert (cam.width, cam.height) == (512, 512)
    pc = head.means @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    assert (pc[:, 2] > cam.near).all()
    u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx
    v = cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
    face = head.region != REGION_STATIC
    assert (u[face] > 100).all() and (u[face] < 412).all() and (v[face] > 20).all() and (v[face] < 400).all()
    inside = (u > 0) & (u < 512) & (v > 0) & (v < 512)
    assert inside.mean() > 0.85
    bg = build_background(512)
    assert bg.shape == (512, 512, 3) and bg.dtype == np.float32 and 0 <= bg.min() and bg.max() <= 1
