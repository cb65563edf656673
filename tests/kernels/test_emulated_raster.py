"""The CUDA kernels of kernels/raster.cu, run on the CPU under the emulation shim through the
same host launch sequence as the CuPy path (huma_rt/render/_gpu.py), equal the CPU backend.

Differences are float rounding only: the CPU backend's blend evaluates exp with a vectorised
polynomial (within 2 ulp of the libm expf the emulated kernels call) and sigma in another
order (ha dx^2 + cb dx dy + hc dy^2, factored); measured max abs diff ~4e-7 on colour/alpha on
these scenes, ~1e-5 on depth (depths ~3).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available
from test_cpu_reference import make_scene

from huma_rt.render import rasterize
from huma_rt.render._common import check_background

pytestmark = [
    pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="the emulation shim needs g++"),
]

ATOL = 2e-6


def both(g, cam, **kw):
    h, w = cam.height, cam.width
    outs = [np.full((h, w, 3), np.nan, np.float32) for _ in range(2)]  # poisoned
    emu = rasterize(g, cam, backend="emulated", out=outs[0], return_depth=True, **kw)
    cpu = rasterize(g, cam, backend="cpu", out=outs[1], return_depth=True, **kw)
    return emu, cpu


@pytest.mark.parametrize(
    "seed,n,size,degree,dense",
    [(31, 300, (64, 48), 0, False), (32, 400, (72, 100), 2, False), (33, 1500, (64, 64), 3, True)],
)
def test_emulated_equals_cpu(seed, n, size, degree, dense):
    g, cam = make_scene(seed, n, *size, degree=degree, dense=dense)
    bg = np.random.default_rng(seed).uniform(0, 1, (cam.height, cam.width, 3)).astype(np.float32)
    emu, cpu = both(g, cam, background=bg)
    assert np.isfinite(emu.rgb).all() and np.isfinite(emu.alpha).all()
    assert cpu.alpha.max() > 0.5
    np.testing.assert_allclose(emu.rgb, cpu.rgb, atol=ATOL)
    np.testing.assert_allclose(emu.alpha, cpu.alpha, atol=ATOL)
    np.testing.assert_allclose(emu.depth, cpu.depth, rtol=1e-5, atol=ATOL)


def _stages(kind, cam, n, max_isects):
    if kind == "cpu":
        from huma_rt.render._cpu import CpuStages

        return CpuStages(cam, n, max_isects=max_isects)
    from huma_rt.render._gpu import GpuStages

    return GpuStages(cam, n, launcher="emulated", max_isects=max_isects)


def _run(stages, g, rect, bg):
    """One frame by the stage protocol the renderers follow: drawn again from bin_sort when
    overflowed() says the intersections did not fit (the GPU stages learn it at the end)."""
    h, w = stages.camera.height, stages.camera.width
    stages.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
    while True:
        stages.bin_sort(g.count, rect)
        stages.blend(rect, False)
        out = np.full((h, w, 3), np.nan, np.float32)
        stages.composite(*check_background(bg, stages.camera), (0, 0, w, h), out_f32=out)
        if not stages.overflowed():
            return stages.num_isects, out


@pytest.mark.parametrize("kind", ["cpu", "emulated"])
def test_intersection_overflow_grows_the_buffers(kind):
    g, cam = make_scene(34, 500, 64, 48, degree=1)
    small = _stages(kind, cam, g.count, max_isects=16)
    total, got = _run(small, g, small.full_rect, (0.1, 0.2, 0.3))
    assert total > 16 and small.num_isects == total
    big = _stages(kind, cam, g.count, max_isects=None)
    total2, want = _run(big, g, big.full_rect, (0.1, 0.2, 0.3))
    assert total2 == total
    np.testing.assert_array_equal(got, want)


def test_emulated_frame_waits_on_the_device_once_at_its_end():
    """Uploads, binning and blending only queue work (no host sync, no device read: what a
    CUDA graph needs); composite() queues the copies back and syncs once. An overflow is seen
    only then, and the frame is drawn again right."""
    g, cam = make_scene(36, 800, 96, 80, degree=2)
    st = _stages("emulated", cam, g.count, max_isects=16)
    L = st.L
    h, w = cam.height, cam.width
    bg = np.zeros(3, np.float32)
    syncs = []
    for _ in range(2):  # the first frame overflows the 16-key buffer, the second fits
        L.syncs = L.reads = 0
        st.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
        st.bin_sort(g.count, st.full_rect)
        st.blend(st.full_rect, False)
        assert (L.syncs, L.reads) == (0, 0)
        out = np.full((h, w, 3), np.nan, np.float32)
        st.composite(None, bg, (0, 0, w, h), out_f32=out)
        syncs.append(L.syncs)
        if not st.overflowed():
            break
    assert syncs == [1, 1] and st.num_isects > 16
    want = rasterize(g, cam, backend="cpu").rgb
    np.testing.assert_allclose(out, want, atol=ATOL)


def test_emulated_tile_rectangle_matches_full_render():
    """Binning, sorting and blending only a rectangle of tiles (the dynamic-region launch)."""
    g, cam = make_scene(35, 600, 96, 80, degree=1)
    full = rasterize(g, cam, backend="cpu")
    st = _stages("emulated", cam, g.count, None)
    rect = np.array([1, 2, 4, 4], np.int32)  # tiles [1,4) x [2,4)
    st.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
    st.bin_sort(g.count, rect)
    st.blend(rect, False)
    h, w = cam.height, cam.width
    out = np.full((h, w, 3), np.nan, np.float32)
    st.composite(None, np.zeros(3, np.float32), (16, 32, 64, 64), out_f32=out)
    np.testing.assert_allclose(out[32:64, 16:64], full.rgb[32:64, 16:64], atol=ATOL)


def test_emulated_frame_renderer_equals_cpu():
    """FrameRenderer on the GPU kernels: dynamic rows re-projected in place (out_index), uint8
    composite on the device; equal to the CPU FrameRenderer up to uint8 rounding of exp ulps."""
    from huma_rt.render import FrameRenderer

    g, cam = make_scene(36, 500, 80, 64, degree=1)
    dyn = np.zeros(g.count, bool)
    dyn[::7] = True
    frs = [FrameRenderer(cam, g, dyn, background=(0.9, 0.8, 0.7), backend=b)
           for b in ("emulated", "cpu")]
    np.testing.assert_array_equal(frs[0].static_frame, frs[1].static_frame)
    outs = [np.zeros((cam.height, cam.width, 3), np.uint8) for _ in frs]
    for t in (0.5, 1.5):
        means = np.ascontiguousarray(g.means[dyn] + np.float32(0.05 * t))
        quats = np.ascontiguousarray(g.quats[dyn][:, ::-1])
        scales = np.ascontiguousarray(g.log_scales[dyn] - np.float32(0.1 * t))
        rects = [fr.render(means, quats, scales, out) for fr, out in zip(frs, outs, strict=True)]
        assert rects[0] == (0, 0, cam.width, cam.height)
        diff = np.abs(outs[0].astype(int) - outs[1].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
        assert not np.array_equal(outs[1], frs[1].static_frame)


def test_emulated_equals_cpu_softplus_with_huge_scales():
    """softplus scales, including pre-activation values > 20 (the linear branch) and an
    enormous Gaussian that covers every tile."""
    g, cam = make_scene(37, 200, 48, 40, degree=0, activation="softplus")
    g.log_scales[:3] = [[21.0, 0.01, 0.02], [-3.0, 22.0, -3.0], [0.5, 0.5, 0.5]]
    g.opacity_logits[:3] = -4.0  # translucent, so the scene behind still shows
    emu, cpu = both(g, cam, background=(0.5, 0.5, 0.5))
    np.testing.assert_allclose(emu.rgb, cpu.rgb, atol=ATOL)
    np.testing.assert_allclose(emu.alpha, cpu.alpha, atol=ATOL)


def test_frame_renderer_takes_a_session_stream_on_every_backend():
    """use_stream() exists on every backend (no-op on the CPU and the emulated launcher), so a
    session can hand its stream to whatever renderer it was given."""
    from huma_rt.render import FrameRenderer

    g, cam = make_scene(37, 300, 64, 48, degree=1)
    dyn = np.zeros(g.count, bool)
    dyn[:40] = True
    for backend in ("cpu", "emulated"):
        fr = FrameRenderer(cam, g, dyn, backend=backend)
        fr.use_stream(object())
        out = np.empty((cam.height, cam.width, 3), np.uint8)
        fr.render(np.ascontiguousarray(g.means[dyn]), np.ascontiguousarray(g.quats[dyn]),
                  np.ascontiguousarray(g.log_scales[dyn]), out)
        np.testing.assert_array_equal(out, fr.static_frame)


def test_frame_renderer_replays_a_captured_frame_graph():
    """GPU FrameRenderer: frame 1 eager, frame 2 captured, later frames one graph launch each
    (no device operation issued outside it), every frame equal to an eager renderer's."""
    from huma_rt.render import FrameRenderer

    g, cam = make_scene(38, 500, 80, 64, degree=2)
    dyn = np.zeros(g.count, bool)
    dyn[::7] = True
    graphed = FrameRenderer(cam, g, dyn, backend="emulated")
    eager = FrameRenderer(cam, g, dyn, backend="emulated")
    eager._stages.graphs = False
    L = graphed._stages.L
    rng = np.random.default_rng(5)
    base = g.means[dyn]
    quats = np.ascontiguousarray(g.quats[dyn])
    scales = np.ascontiguousarray(g.log_scales[dyn])
    outs = [np.empty((cam.height, cam.width, 3), np.uint8) for _ in range(2)]
    launches = []
    for _ in range(5):
        means = np.ascontiguousarray(base + rng.normal(0, 0.02, base.shape).astype(np.float32))
        graphed.render(means, quats, scales, outs[0])
        eager.render(means, quats, scales, outs[1])
        np.testing.assert_array_equal(outs[0], outs[1])
        launches.append(L.graph_launches)
    assert launches == [0, 1, 2, 3, 4]  # frame 2 captured and launched, then replays
    assert eager._stages.L.graph_launches == 0


def test_frame_graph_replay_refuses_a_frame_of_another_shape():
    """A replayed graph holds the captured frame's launches: a frame that would issue other
    work (here another rectangle) is an error, never stale work."""
    from huma_rt.errors import BackendError

    g, cam = make_scene(39, 300, 64, 48, degree=1)
    st = _stages("emulated", cam, g.count, None)
    st.graphs = True
    bg = np.zeros(3, np.float32)
    h, w = cam.height, cam.width
    out = np.empty((h, w, 3), np.float32)

    def frame(rect):
        st.begin_frame()
        st.project(g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, g.scale_activation)
        st.bin_sort(g.count, rect)
        st.blend(rect, False)
        st.composite(None, bg, (0, 0, w, h), out_f32=out)

    for _ in range(3):
        frame(st.full_rect)
    with pytest.raises(BackendError, match="changed shape"):
        frame(np.array([0, 0, 2, 2], np.int32))


@pytest.mark.parametrize("seed,degree,act", [(51, 3, "exp"), (52, 1, "softplus")])
def test_emulated_backward_equals_cpu(seed, degree, act):
    """The CUDA backward kernels (hr_blend_save/hr_blend_backward/hr_project_backward) under
    the shim against the CPU backend's backward, on a scene with saturated pixels, Gaussians
    behind the camera and huge ones. Same saved state bit for bit (the lists and the last
    entries), gradients to float rounding (atomicAdd order vs per-thread double sums)."""
    from huma_rt.train.raster_cpu import CpuRasterizer
    from huma_rt.train.raster_device import DeviceRasterizer

    g, cam = make_scene(seed, 400, 72, 56, degree=degree, dense=True, activation=act)
    g.log_scales[:2] += 2.5  # huge
    g.opacity_logits[:2] = -3.0
    arrays = [g.means, g.quats, g.log_scales, g.opacity_logits, g.sh]
    rng = np.random.default_rng(seed)
    v_rgb = rng.normal(size=(cam.height, cam.width, 3)).astype(np.float32)
    v_T = rng.normal(size=(cam.height, cam.width)).astype(np.float32)
    res = []
    for eng in (CpuRasterizer(cam, g.count), DeviceRasterizer(cam, g.count, "emulated")):
        rgb, T, saved = eng.forward(*arrays, act)
        res.append((rgb, T, saved, eng.backward(saved, *arrays, act, v_rgb, v_T)))
    (rgb0, T0, s0, g0), (rgb1, T1, s1, g1) = res
    np.testing.assert_allclose(rgb1, rgb0, atol=ATOL)
    np.testing.assert_allclose(T1, T0, atol=ATOL)
    assert T0.min() < 1e-3  # saturated pixels: the backward starts from the stop
    np.testing.assert_array_equal(s1.last, s0.last)
    np.testing.assert_array_equal(g1.visible, g0.visible)
    assert 0 < g0.visible.sum() < g.count
    for name in ("v2d", "means", "quats", "log_scales", "opacity_logits", "sh", "grad_norm"):
        a, b = getattr(g1, name), getattr(g0, name)
        scale = np.abs(b).max()
        assert scale > 0, name
        assert np.abs(a - b).max() <= 1e-4 * scale, (name, np.abs(a - b).max(), scale)
