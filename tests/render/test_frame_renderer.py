"""FrameRenderer: dynamic-tile rendering equals a full render, allocates nothing per frame."""

from __future__ import annotations

import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from _render_scenes import blob_scene, needs_cpu

from huma_rt.errors import InputError
from huma_rt.render import FrameRenderer, rasterize, to_uint8

pytestmark = needs_cpu


def mouth_mask(g) -> np.ndarray:
    """A mouth-sized patch on the camera-facing side."""
    m = g.means
    return (m[:, 2] < -0.3) & (np.abs(m[:, 0]) < 0.3) & (m[:, 1] > 0.2) & (m[:, 1] < 0.6)


def moved(g, dyn, t: float):
    """The dynamic rows displaced, turned and rescaled for time t (jaw-like motion)."""
    rng = np.random.default_rng(int(t * 1000))
    means = g.means[dyn] + np.array([0.02 * t, 0.12 * np.sin(t), 0.0], np.float32)
    quats = g.quats[dyn] + rng.normal(scale=0.2, size=(int(dyn.sum()), 4)).astype(np.float32)
    scales = g.log_scales[dyn] + np.float32(0.2 * np.sin(2 * t))
    return (np.ascontiguousarray(means, np.float32), np.ascontiguousarray(quats),
            np.ascontiguousarray(scales, np.float32))


def full_render_u8(g, cam, dyn, parts, background):
    means, quats, scales = parts
    full = replace(g, means=g.means.copy(), quats=g.quats.copy(), log_scales=g.log_scales.copy())
    full.means[dyn], full.quats[dyn], full.log_scales[dyn] = means, quats, scales
    return to_uint8(rasterize(full, cam, background=background).rgb)


@pytest.mark.parametrize("bg_kind", ["colour", "image"])
def test_dynamic_region_equals_full_render(bg_kind):
    g, cam = blob_scene(3)
    dyn = mouth_mask(g)
    assert 10 < dyn.sum() < g.count // 4
    rng = np.random.default_rng(0)
    background = ((0.3, 0.5, 0.7) if bg_kind == "colour"
                  else rng.uniform(0, 1, (cam.height, cam.width, 3)).astype(np.float32))
    fr = FrameRenderer(cam, g, dyn, background=background)
    assert np.array_equal(fr.static_frame, full_render_u8(g, cam, dyn, (
        g.means[dyn], g.quats[dyn], g.log_scales[dyn]), background))
    out = np.full((cam.height, cam.width, 3), 7, dtype=np.uint8)  # poisoned
    prev = None
    for t in (0.4, 1.3, 2.1, 2.2):
        parts = moved(g, dyn, t)
        x0, y0, x1, y1 = fr.render(*parts, out=out)
        assert 0 <= x0 < x1 <= cam.width and 0 <= y0 < y1 <= cam.height
        assert (x1 - x0) * (y1 - y0) < cam.width * cam.height, "must not redraw the whole frame"
        want = full_render_u8(g, cam, dyn, parts, background)
        np.testing.assert_array_equal(out, want)
        if prev is not None:  # outside the rectangle nothing was written
            outside = np.ones(out.shape[:2], bool)
            outside[y0:y1, x0:x1] = False
            np.testing.assert_array_equal(out[outside], prev[outside])
        prev = out.copy()
        assert set(fr.stage_times) == {"project", "sort", "blend", "composite"}
        assert all(v > 0 for v in fr.stage_times.values())


def test_new_out_buffer_gets_the_static_frame_first(scene):
    g, cam = scene
    dyn = mouth_mask(g)
    fr = FrameRenderer(cam, g, dyn, background=(1.0, 1.0, 1.0))
    parts = moved(g, dyn, 0.9)
    a = np.zeros((cam.height, cam.width, 3), np.uint8)
    fr.render(*parts, out=a)
    b = np.full_like(a, 255)  # another buffer, poisoned differently
    fr.render(*parts, out=b)
    np.testing.assert_array_equal(a, b)


def test_no_allocation_per_frame(scene):
    g, cam = scene
    dyn = mouth_mask(g)
    fr = FrameRenderer(cam, g, dyn, background=(0.2, 0.2, 0.2))
    frames = [moved(g, dyn, t) for t in np.linspace(0, 3, 8)]
    out = np.zeros((cam.height, cam.width, 3), np.uint8)
    for p in frames[:3]:
        fr.render(*p, out=out)
    tracemalloc.start()
    try:
        for p in frames:  # first traced round: one-off caches (ctypes, stage_times floats)
            fr.render(*p, out=out)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(5):
            for p in frames:
                fr.render(*p, out=out)
        cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a frame's array-sized buffer would be >= 23 KB; transient small objects stay far below
    assert peak - base < 4096, f"per-frame allocation: peak grew by {peak - base} bytes"
    assert cur - base < 256, f"memory retained across 40 frames: {cur - base} bytes"


def test_bad_inputs_name_the_contract(scene):
    g, cam = scene
    dyn = mouth_mask(g)
    with pytest.raises(InputError, match="dynamic must be a bool mask"):
        FrameRenderer(cam, g, dyn.astype(np.uint8))
    fr = FrameRenderer(cam, g, dyn)
    means, quats, scales = moved(g, dyn, 0.1)
    out = np.zeros((cam.height, cam.width, 3), np.uint8)
    with pytest.raises(InputError, match=rf"means must be .*float32.*\({dyn.sum()}, 3\)"):
        fr.render(means[:-1], quats, scales, out)
    with pytest.raises(InputError, match="quats"):
        fr.render(means, quats.astype(np.float64), scales, out)
    with pytest.raises(InputError, match="out must be"):
        fr.render(means, quats, scales, out[:, :-1])
    with pytest.raises(InputError, match="background"):
        FrameRenderer(cam, g, dyn, background=np.zeros((3, 3, 3), np.float32))


def two_parts_scene():
    """A larger frame whose dynamic Gaussians are two small patches, eyes-like and mouth-like,
    with untouched tiles between them inside the rectangle that bounds both."""
    g, cam = blob_scene(5, n=2400, width=192, height=160)
    m = g.means
    front = (m[:, 2] < -0.3) & (np.abs(m[:, 0]) < 0.35)
    dyn = front & (((m[:, 1] > -0.7) & (m[:, 1] < -0.45)) | ((m[:, 1] > 0.45) & (m[:, 1] < 0.7)))
    log_scales = g.log_scales.copy()
    log_scales[dyn] = np.float32(-4.2)  # small splats: the parts do not reach across the gap
    return replace(g, log_scales=log_scales), cam, dyn


def test_tiles_between_moving_parts_are_not_redrawn():
    """The CPU renderer redraws only the tiles the dynamic Gaussians touch now or touched last
    frame: the frames still equal full renders, including after a part moved out of tiles it
    covered and after a new output buffer, while fewer tiles than the rectangle's are drawn."""
    g, cam, dyn = two_parts_scene()
    background = np.random.default_rng(1).uniform(0, 1, (cam.height, cam.width, 3)).astype(np.float32)
    fr = FrameRenderer(cam, g, dyn, background=background)
    out = np.full((cam.height, cam.width, 3), 7, dtype=np.uint8)
    fewer = 0
    for k, t in enumerate((0.4, 1.3, 2.1, 2.2, 4.0, 5.5, 0.0, 3.0)):
        if k == 5:
            out = np.full_like(out, 200)  # a new buffer mid-run: the static frame, then redrawn
        parts = moved(g, dyn, t)
        x0, y0, x1, y1 = fr.render(*parts, out=out)
        np.testing.assert_array_equal(out, full_render_u8(g, cam, dyn, parts, background), err_msg=f"t={t}")
        rect_tiles = -(-(x1 - x0) // 16) * -(-(y1 - y0) // 16)
        assert 0 < fr.redrawn_tiles <= rect_tiles
        fewer += fr.redrawn_tiles < rect_tiles
    assert fewer >= 4, "the gap between the parts should not be redrawn"


def test_bin_merge_growing_its_buffer_keeps_the_touched_tiles():
    """A frame whose tile lists overflow the key buffer is binned again after the buffer grows;
    the tiles touched last frame must survive the failed try (else the next frame's draw set
    loses them and a moved part leaves a ghost)."""
    from huma_rt.render._cpu import CpuStages

    g, cam, dyn = two_parts_scene()
    idx = np.flatnonzero(dyn).astype(np.int32)
    parts = moved(g, dyn, 1.3)

    def staged():
        s = CpuStages(cam, g.count, threads=1)
        s.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
        s.prebin_static(g.count, idx)
        s.project(*parts, np.ascontiguousarray(g.opacity_logits[dyn]), np.ascontiguousarray(g.sh[dyn]),
                  g.scale_activation, out_index=idx)
        touched = np.zeros(s.tiles_x * s.tiles_y, np.uint8)
        touched[[0, 5, s.tiles_x + 3]] = 1  # "last frame" (inside the full rect used below)
        return s, touched, np.zeros_like(touched)

    s, touched, draw = staged()
    total = s.bin_merge(idx, s.full_rect, touched, draw)
    small, touched_small, draw_small = staged()
    small._replace_keys(64)  # far too few: the first try fails, the buffer grows, the second fits
    assert small.bin_merge(idx, small.full_rect, touched_small, draw_small) == total
    assert small.keys.shape[0] > 64
    np.testing.assert_array_equal(touched_small, touched)
    np.testing.assert_array_equal(draw_small, draw)
    assert draw[[0, 5, s.tiles_x + 3]].all() and not touched[[0, 5]].any()
    np.testing.assert_array_equal(small.tile_offsets, s.tile_offsets)
    np.testing.assert_array_equal(small.keys[:total], s.keys[:total])


def test_parts_moving_apart_across_new_output_buffers():
    """Each part moves on its own, far from rest, and the output buffer changes every few frames:
    a tile a part left must not keep its old picture in the blend buffers when the next frame's
    rectangle spans it untouched (a new buffer starts from the rest pose, not from the last)."""
    g, cam, dyn = two_parts_scene()
    upper = dyn & (g.means[:, 1] < 0)
    rng = np.random.default_rng(7)
    fr = FrameRenderer(cam, g, dyn, background=(0.1, 0.2, 0.3))
    out = np.zeros((cam.height, cam.width, 3), np.uint8)
    for k in range(24):
        if k % 3 == 2:
            out = np.full_like(out, 40 * (k % 5))  # a new buffer, poisoned
        means = g.means.copy()
        for part in (upper, dyn & ~upper):
            means[part] += np.array([*rng.uniform(-0.45, 0.45, 2), 0.0], np.float32)
        parts = (np.ascontiguousarray(means[dyn]), np.ascontiguousarray(g.quats[dyn]),
                 np.ascontiguousarray(g.log_scales[dyn]))
        fr.render(*parts, out=out)
        np.testing.assert_array_equal(out, full_render_u8(g, cam, dyn, parts, (0.1, 0.2, 0.3)), err_msg=f"frame {k}")
