"""The rasterizer's backward (kernels/raster_math.cuh through the CPU backend, train/) against
torch autograd through an independent float64 pure-torch rasterizer (gsplat 1.5.3's torch
projection + a dense front-to-back compositing loop), and against central finite differences.

The reference composites in float64 end to end: bench/torch_reference.py's compositor casts its
weights to float32 (right for a speed yardstick, too coarse for finite differences), so its
culling rules are restated here in float64 rather than imported.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huma_rt.kernels import cpu_backend_available

from huma_rt.gaussians import Camera

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kernels"))
from test_cpu_reference import make_scene  # noqa: E402

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")

ALPHA_MIN, ALPHA_MAX, T_MIN = 1.0 / 255.0, 0.999, 1e-4
NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh")


def reference_render(p: dict, cam: Camera, act: str, bg):
    """float64 torch forward with the kernels' conventions -> (image [H,W,3], alpha [H,W])."""
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _quat_scale_to_covar_preci,
        _spherical_harmonics,
    )

    dt = torch.float64
    means, quats, log_scales, logits, sh = (p[k] for k in NAMES)
    scales = torch.exp(log_scales) if act == "exp" else torch.nn.functional.softplus(log_scales)
    opacity = torch.sigmoid(logits)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    w2c = torch.from_numpy(cam.world_to_camera).to(dt)
    K = torch.from_numpy(cam.intrinsics).to(dt)
    radii, mean2d, depth, conic, _ = _fully_fused_projection(
        means, covars, w2c[None], K[None], cam.width, cam.height, eps2d=0.3,
        near_plane=cam.near, far_plane=cam.far)
    radii, mean2d, depth, conic = radii[0], mean2d[0], depth[0], conic[0]
    # opacity-aware extent and the on-screen test with it (the kernels' culling)
    a, b, c = conic.detach().unbind(-1)
    det = (a * c - b * b).clamp(min=1e-30)
    ext = torch.sqrt(2.0 * torch.log((opacity.detach() * 255.0).clamp(min=1.0))).clamp(max=3.33)
    rx, ry = torch.ceil(ext * (c / det).sqrt()), torch.ceil(ext * (a / det).sqrt())
    m = mean2d.detach()
    keep = ((radii > 0).all(-1) & (opacity.detach() >= ALPHA_MIN) & ((rx > 0) | (ry > 0))
            & (m[:, 0] + rx > 0) & (m[:, 0] - rx < cam.width)
            & (m[:, 1] + ry > 0) & (m[:, 1] - ry < cam.height))
    ids = torch.nonzero(keep).squeeze(1)
    ids = ids[torch.argsort(depth.detach()[ids], stable=True)]  # (depth, index) order
    campos = -w2c[:3, :3].T @ w2c[:3, 3]
    degree = int(round(sh.shape[1] ** 0.5)) - 1
    rgb = (_spherical_harmonics(degree, means[ids] - campos, sh[ids]) + 0.5).clamp(min=0.0)
    ys, xs = torch.meshgrid(torch.arange(cam.height, dtype=dt), torch.arange(cam.width, dtype=dt),
                            indexing="ij")
    dx = mean2d[ids, 0][None] - (xs.reshape(-1, 1) + 0.5)  # [P, G]
    dy = mean2d[ids, 1][None] - (ys.reshape(-1, 1) + 0.5)
    ca, cb, cc = (conic[ids, k][None] for k in range(3))
    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    alpha = (opacity[ids][None] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma < 0) | (alpha < ALPHA_MIN), torch.zeros_like(alpha), alpha)
    t_after = torch.cumprod(1.0 - alpha, dim=1)
    t_before = t_after / (1.0 - alpha)
    live = t_after.detach() > T_MIN  # falls monotonically: the prefix before the stop
    weight = torch.where(live, alpha * t_before, torch.zeros_like(alpha))
    T = torch.where(live, 1.0 - alpha, torch.ones_like(alpha)).prod(dim=1)
    col = weight @ rgb
    bg = torch.as_tensor(bg, dtype=dt)
    image = (col + T[:, None] * bg).reshape(cam.height, cam.width, 3)
    return image, (1.0 - T).reshape(cam.height, cam.width)


def hard_scene(seed: int, n: int = 240, size=(48, 40), degree: int = 3, act: str = "exp"):
    """make_scene's dense scene (opaque overlaps that saturate pixels, Gaussians behind the
    camera) plus huge, tiny and off-screen Gaussians."""
    g, cam = make_scene(seed, n, *size, degree=degree, dense=True, activation=act)
    rng = np.random.default_rng(seed + 100)
    ls = g.log_scales
    big = np.log(np.expm1(np.exp(0.3))) if act == "softplus" else 0.3
    ls[:4] = big + rng.uniform(0, 0.3, (4, 3))           # huge: cover the image
    g.opacity_logits[:4] = -3.0                            # translucent, so the rest shows
    ls[4:12] = -7.0                                        # tiny: below a pixel
    g.means[12:20, 0] += rng.choice([-4.0, 4.0], 8)        # off-screen to the sides
    g.means[20:26, 2] = -4.0                               # behind the camera
    g.means[26:30] = g.means[30:34] + 1e-3                 # near-duplicates
    return g, cam


def _inputs(g):
    return {k: torch.tensor(getattr(g, k), dtype=torch.float32, requires_grad=True)
            for k in NAMES}


def _weights(seed, cam):
    rng = np.random.default_rng(seed)
    return (torch.tensor(rng.normal(size=(cam.height, cam.width, 3))),
            torch.tensor(rng.normal(size=(cam.height, cam.width))))


def kernel_grads(g, cam, bg, wi, wa, backend="cpu"):
    from huma_rt.train.raster_autograd import rasterize

    x = _inputs(g)
    out = rasterize(*(x[k] for k in NAMES), cam, torch.tensor(bg, dtype=torch.float32),
                    scale_activation=g.scale_activation, backend=backend)
    loss = (out.image.double() * wi).sum() + (out.alpha.double() * wa).sum()
    loss.backward()
    return {k: x[k].grad.double() for k in NAMES}, out


def reference_grads(g, cam, bg, wi, wa):
    x = {k: torch.tensor(getattr(g, k), dtype=torch.float64, requires_grad=True) for k in NAMES}
    image, alpha = reference_render(x, cam, g.scale_activation, bg)
    ((image * wi).sum() + (alpha * wa).sum()).backward()
    return {k: x[k].grad for k in NAMES}, image.detach(), alpha.detach()


def grad_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest elementwise error relative to the tensor's largest gradient."""
    scale = want.abs().max().clamp(min=1e-12)
    return float(((got - want).abs() / scale).max())


CASES = [(41, 3, "exp"), (42, 1, "softplus"), (43, 2, "exp")]


@pytest.mark.parametrize("seed,degree,act", CASES)
def test_gradients_match_torch_autograd(seed, degree, act):
    g, cam = hard_scene(seed, degree=degree, act=act)
    bg = (0.3, 0.5, 0.7)
    wi, wa = _weights(seed, cam)
    got, out = kernel_grads(g, cam, bg, wi, wa)
    want, image, alpha = reference_grads(g, cam, bg, wi, wa)
    # the scene is what it claims: saturated pixels, culled and drawn Gaussians
    assert float(out.T.detach().min()) < 1e-3 and float(alpha.max()) > 0.999
    np.testing.assert_allclose(out.image.detach().numpy(), image.numpy(), atol=2e-5)
    for k in NAMES:
        err = grad_error(got[k], want[k])
        assert err < 1e-4, (k, err)


def _coords(rng, shape, rows, k):
    """k random coordinates of a tensor of ``shape`` whose row is one of ``rows``."""
    return [(int(rng.choice(rows)), *(int(rng.integers(s)) for s in shape[1:])) for _ in range(k)]


def test_gradients_match_float64_finite_differences():
    """Central differences (h = 1e-6) of the float64 reference at coordinates of drawn
    Gaussians, against the kernels' backward."""
    g, cam = hard_scene(44, n=60, size=(32, 24), degree=2)
    bg = (0.2, 0.1, 0.4)
    wi, wa = _weights(44, cam)
    got, out = kernel_grads(g, cam, bg, wi, wa)
    drawn = np.nonzero(out.mean2d_grad["visible"])[0]
    assert drawn.size > 20
    rng = np.random.default_rng(0)
    base = {k: torch.tensor(getattr(g, k), dtype=torch.float64) for k in NAMES}

    def loss(p):
        image, alpha = reference_render(p, cam, g.scale_activation, bg)
        return float((image * wi).sum() + (alpha * wa).sum())

    h = 1e-6
    for k in NAMES:
        for idx in _coords(rng, base[k].shape, drawn, 4):
            plus, minus = dict(base), dict(base)
            plus[k], minus[k] = base[k].clone(), base[k].clone()
            plus[k][idx] += h
            minus[k][idx] -= h
            fd = (loss(plus) - loss(minus)) / (2 * h)
            scale = float(got[k].abs().max())
            assert abs(float(got[k][idx]) - fd) <= 1e-3 * scale + 1e-6, (k, idx, fd, got[k][idx])


def test_gradients_match_finite_differences_of_the_kernels_own_forward():
    """Central differences of the float32 kernels themselves on a smooth scene (a few large,
    translucent Gaussians whose 1/255 cut-off lies outside the image, so no pair switches on or
    off under the step), every coordinate of every input."""
    from huma_rt.train.raster_cpu import CpuRasterizer

    rng = np.random.default_rng(7)
    n = 5
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 4.0
    cam = Camera(20, 16, fx=18.0, fy=18.0, cx=10.3, cy=7.6, world_to_camera=w2c)
    arrays = {
        "means": rng.uniform(-0.4, 0.4, (n, 3)).astype(np.float32),
        "quats": rng.normal(size=(n, 4)).astype(np.float32),
        "log_scales": rng.uniform(0.1, 0.6, (n, 3)).astype(np.float32),
        "opacity_logits": rng.uniform(-1.5, 0.0, n).astype(np.float32),
        "sh": (rng.normal(size=(n, 4, 3)) * 0.3).astype(np.float32),
    }
    eng = CpuRasterizer(cam, n)
    wi = rng.normal(size=(16, 20, 3))
    wt = rng.normal(size=(16, 20))

    def loss(a):
        rgb, T, _ = eng.forward(*(a[k] for k in NAMES), "exp")
        return float((rgb.astype(np.float64) * wi).sum() + (T.astype(np.float64) * wt).sum())

    rgb, T, saved = eng.forward(*(arrays[k] for k in NAMES), "exp")
    assert T.max() < 0.999 and T.min() > 0.05  # every pixel sees every Gaussian, none saturates
    g = eng.backward(saved, *(arrays[k] for k in NAMES), "exp", wi.astype(np.float32),
                     wt.astype(np.float32))
    assert g.visible.all()
    h = 2e-3
    for k in NAMES:
        grad = getattr(g, k)
        fd = np.zeros_like(grad, dtype=np.float64)
        for idx in np.ndindex(grad.shape):
            a = {key: v.copy() for key, v in arrays.items()}
            a[k][idx] += h
            up = loss(a)
            a[k][idx] -= 2 * h
            fd[idx] = (up - loss(a)) / (2 * h)
        err = np.abs(grad - fd).max() / np.abs(fd).max()
        assert err < 3e-3, (k, err)  # measured <= 9e-4


def test_a_wrong_gradient_fails_the_checks():
    """The tolerances catch a gradient that is slightly wrong: one coordinate off by 0.1 % of
    the largest, or the backward of another scale activation than the forward's."""
    g, cam = hard_scene(45, n=120, size=(32, 32), degree=1)
    bg = (0.0, 0.0, 0.0)
    wi, wa = _weights(45, cam)
    got, _ = kernel_grads(g, cam, bg, wi, wa)
    want, _, _ = reference_grads(g, cam, bg, wi, wa)
    assert grad_error(got["means"], want["means"]) < 1e-4
    bent = got["means"].clone()
    i = int(bent.abs().argmax()) // 3
    bent[i, 1] += 1e-3 * float(bent.abs().max())
    assert grad_error(bent, want["means"]) > 1e-4
    from huma_rt.train.raster_cpu import CpuRasterizer

    eng = CpuRasterizer(cam, g.count)
    arrays = [getattr(g, k) for k in NAMES]
    _, _, saved = eng.forward(*arrays, "exp")
    v_rgb = wi.float().numpy()
    v_T = (-wa).float().numpy()  # alpha = 1 - T; background black
    wrong = eng.backward(saved, *arrays, "softplus", v_rgb, v_T)
    right = eng.backward(saved, *arrays, "exp", v_rgb, v_T)
    assert grad_error(torch.from_numpy(right.log_scales).double(), want["log_scales"]) < 1e-4
    assert grad_error(torch.from_numpy(wrong.log_scales).double(), want["log_scales"]) > 1e-2


def test_background_and_densify_statistics_through_autograd():
    """A background that requires grad gets the reference's gradient; the view's screen-space
    statistics are |dL/d 2D mean| of drawn Gaussians and sum over views in DensifyStats."""
    from huma_rt.train.raster_autograd import DensifyStats, rasterize

    g, cam = hard_scene(46, n=150, size=(40, 32), degree=1)
    wi, wa = _weights(46, cam)
    x = _inputs(g)
    bg = torch.tensor([0.3, 0.6, 0.1], requires_grad=True)
    out = rasterize(*(x[k] for k in NAMES), cam, bg)
    ((out.image.double() * wi).sum() + (out.alpha.double() * wa).sum()).backward()
    xr = {k: torch.tensor(getattr(g, k), dtype=torch.float64) for k in NAMES}
    bg_ref = torch.tensor([0.3, 0.6, 0.1], dtype=torch.float64, requires_grad=True)
    image, alpha = reference_render(xr, cam, "exp", bg_ref)
    ((image * wi).sum() + (alpha * wa).sum()).backward()
    np.testing.assert_allclose(bg.grad.numpy(), bg_ref.grad.numpy(), rtol=1e-4)
    got = out.mean2d_grad
    vis = got["visible"]
    assert 0 < vis.sum() < g.count
    np.testing.assert_allclose(got["grad_norm"], np.where(vis, np.hypot(*got["v2d"][:, :2].T), 0),
                               rtol=1e-5, atol=1e-7)
    stats = DensifyStats(g.count)
    stats.add(out)
    stats.add(out)
    assert stats.view_count.tolist() == (2 * vis).tolist()
    np.testing.assert_allclose(stats.mean().numpy(), got["grad_norm"], rtol=1e-6)


def test_cpu_backward_is_deterministic():
    from huma_rt.train.raster_cpu import CpuRasterizer

    g, cam = hard_scene(47, n=300, size=(64, 48), degree=2)
    arrays = [getattr(g, k) for k in NAMES]
    rng = np.random.default_rng(1)
    v_rgb = rng.normal(size=(48, 64, 3)).astype(np.float32)
    v_T = rng.normal(size=(48, 64)).astype(np.float32)
    eng = CpuRasterizer(cam, g.count, threads=2)
    grads = []
    for _ in range(2):
        _, _, saved = eng.forward(*arrays, "exp")
        grads.append(eng.backward(saved, *arrays, "exp", v_rgb, v_T))
    for k in (*NAMES, "v2d"):
        np.testing.assert_array_equal(getattr(grads[0], k), getattr(grads[1], k))


def test_emulated_kernels_through_autograd_match_the_reference():
    """backend="emulated": the CUDA kernels (under the shim) behind the same torch Function."""
    g, cam = hard_scene(48, n=160, size=(40, 32), degree=3)
    wi, wa = _weights(48, cam)
    got, _ = kernel_grads(g, cam, (0.5, 0.5, 0.5), wi, wa, backend="emulated")
    want, _, _ = reference_grads(g, cam, (0.5, 0.5, 0.5), wi, wa)
    for k in NAMES:
        assert grad_error(got[k], want[k]) < 1e-4, k


def test_bad_inputs_are_refused_by_name():
    from huma_rt.train.raster_autograd import rasterize
    from huma_rt.train.raster_cpu import CpuRasterizer

    from huma_rt.errors import InputError

    g, cam = hard_scene(49, n=20, size=(16, 16), degree=0)
    x = _inputs(g)
    with pytest.raises(InputError, match=r"quats must have shape \(20, 4\); got \(20, 3\)"):
        rasterize(x["means"], x["quats"][:, :3], x["log_scales"], x["opacity_logits"], x["sh"],
                  cam)
    with pytest.raises(InputError, match="background must be an RGB triple"):
        rasterize(*(x[k] for k in NAMES), cam, torch.zeros(4))
    with pytest.raises(InputError, match="backend must be 'cpu', 'cuda' or 'emulated'; got 'tpu'"):
        rasterize(*(x[k] for k in NAMES), cam, backend="tpu")
    eng = CpuRasterizer(cam, 20)
    arrays = [getattr(g, k) for k in NAMES]
    with pytest.raises(InputError, match="means must be a C-contiguous float32 array; got float64"):
        eng.forward(g.means.astype(np.float64), *arrays[1:])
    _, _, saved = eng.forward(*arrays)
    with pytest.raises(InputError, match=r"v_T must be .* shape \(16, 16\)"):
        eng.backward(saved, *arrays, "exp", np.zeros((16, 16, 3), np.float32),
                     np.zeros((16, 15), np.float32))
