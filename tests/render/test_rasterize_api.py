"""rasterize(): backgrounds, empty and invisible scenes, uint8 conversion, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _render_scenes import needs_cpu

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.render import Renderer, rasterize, to_uint8

pytestmark = needs_cpu


def _empty(n: int) -> Gaussians:
    z = np.zeros
    return Gaussians(means=z((n, 3), np.float32), log_scales=z((n, 3), np.float32) - 2,
                     quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                     opacity_logits=z(n, np.float32) + 3, sh=z((n, 1, 3), np.float32) + 1)


@pytest.mark.parametrize("backend", ["cpu", "emulated"])
def test_empty_and_invisible_scenes_show_the_background(backend):
    cam = Camera(40, 30, fx=40, fy=40, cx=20, cy=15)
    behind = _empty(5)
    behind.means[:, 2] = -1.0  # behind the camera (and closer than near for one)
    behind.means[0, 2] = 0.005
    for g in (_empty(0), behind):
        r = rasterize(g, cam, background=(0.1, 0.2, 0.3), backend=backend)
        assert r.rgb.shape == (30, 40, 3) and r.alpha.shape == (30, 40)
        np.testing.assert_array_equal(r.alpha, 0.0)
        np.testing.assert_allclose(r.rgb, np.broadcast_to([0.1, 0.2, 0.3], r.rgb.shape), atol=1e-7)


def test_background_image_composites_with_alpha(scene):
    g, cam = scene
    bg = np.random.default_rng(5).uniform(0, 1, (cam.height, cam.width, 3)).astype(np.float32)
    black = rasterize(g, cam, return_depth=True)
    over = rasterize(g, cam, background=bg)
    assert 0.05 < black.alpha.mean() < 0.95, "scene must be partly covered"
    np.testing.assert_allclose(over.alpha, black.alpha)
    np.testing.assert_allclose(over.rgb, black.rgb + (1 - black.alpha[..., None]) * bg, atol=1e-6)
    assert black.depth is not None and over.depth is None
    covered = black.alpha > 0.5
    assert np.all((black.depth[covered] > 2.0) & (black.depth[covered] < 4.5))  # blob at z ~3.2


def test_renderer_reuses_its_buffers(scene):
    g, cam = scene
    r = Renderer(cam)
    a = r.render(g).rgb.copy()
    b = r.render(g)
    np.testing.assert_array_equal(a, b.rgb)
    assert r.render(g).rgb is b.rgb


def test_to_uint8_rounds_and_clips():
    v = np.array([[-0.1, 0.5 / 255, 1.5 / 255], [0.5, 1.0, 7.0]], np.float32).reshape(2, 1, 3)
    np.testing.assert_array_equal(to_uint8(v).reshape(2, 3), [[0, 1, 2], [128, 255, 255]])
    with pytest.raises(InputError, match="last axis of 3"):
        to_uint8(np.zeros((4, 4)))


def test_bad_inputs_name_the_contract(scene):
    g, cam = scene
    with pytest.raises(InputError, match=r"out must be a C-contiguous float32 array of shape"):
        rasterize(g, cam, out=np.zeros((cam.height, cam.width, 3), np.float64))
    with pytest.raises(InputError, match=r"background must be an RGB triple or an image"):
        rasterize(g, cam, background=np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InputError, match="background image must be float32"):
        rasterize(g, cam, background=np.zeros((cam.height, cam.width, 3), np.uint8))
    with pytest.raises(InputError, match="gaussians must be"):
        rasterize(g.means, cam)
    with pytest.raises(InputError, match="camera must be"):
        rasterize(g, "cam")
    g.means = np.asfortranarray(g.means)
    with pytest.raises(InputError, match=r"gaussians.means must be a C-contiguous .*non-contiguous"):
        rasterize(g, cam)
    g.means = np.ascontiguousarray(g.means)
    with pytest.raises(InputError, match="background colour must be finite"):
        rasterize(g, cam, background=(0.0, np.nan, 0.0))
