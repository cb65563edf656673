"""CPU rasterizer vs an independent plain-numpy reference on small scenes.

The reference below re-derives the gsplat 1.5.3 forward pass from its formulas (no tiles, no
sort keys: every pixel composites every surviving Gaussian in depth order), so it shares no
code with the kernels. The gsplat-oracle comparisons live in the verification tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available

from huma_rt.gaussians import Camera, Gaussians
from huma_rt.render import rasterize

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")

SH_C = [0.28209479177387814, 0.4886025119029199, 1.0925484305920792, 0.31539156525252005,
        0.5462742152960396, 0.5900435899266435, 2.890611442640554, 0.4570457994644658,
        0.3731763325901154, 1.445305721320277]


def make_scene(seed: int, n: int, width: int, height: int, degree: int = 0,
               activation: str = "exp", dense: bool = False) -> tuple[Gaussians, Camera]:
    """Random Gaussians in front of a rotated, off-centre camera; ``dense`` adds opaque,
    overlapping ones (pixels saturate: early termination) and some behind the camera."""
    rng = np.random.default_rng(seed)
    zlo = -5.0 if dense else -0.8
    means = np.column_stack([rng.uniform(-1.2, 1.2, n), rng.uniform(-1.0, 1.0, n),
                             rng.uniform(zlo, 1.2, n)]).astype(np.float32)
    log_scales = rng.uniform(-4.0, -1.6 + 0.6 * dense, (n, 3)).astype(np.float32)
    if activation == "softplus":
        log_scales = np.log(np.expm1(np.exp(log_scales))).astype(np.float32)
    g = Gaussians(
        means=means, log_scales=log_scales,
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(3.0 if dense else 0.5, 1.5, n).astype(np.float32),
        sh=(rng.normal(size=(n, (degree + 1) ** 2, 3)) * 0.6).astype(np.float32),
        scale_activation=activation,
    )
    a = 0.3
    w2c = np.eye(4, dtype=np.float32)
    w2c[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    w2c[:3, 3] = [0.1, -0.05, 3.0]
    cam = Camera(width, height, fx=0.9 * width, fy=0.9 * width, cx=width / 2 + 1.5,
                 cy=height / 2 - 2.0, world_to_camera=w2c)
    return g, cam


def sh_basis(d: np.ndarray, degree: int) -> np.ndarray:
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    b = [np.full_like(x, SH_C[0])]
    if degree >= 1:
        b += [-SH_C[1] * y, SH_C[1] * z, -SH_C[1] * x]
    if degree >= 2:
        b += [SH_C[2] * x * y, -SH_C[2] * y * z, SH_C[3] * (2 * z * z - x * x - y * y),
              -SH_C[2] * x * z, SH_C[4] * (x * x - y * y)]
    if degree >= 3:
        b += [-SH_C[5] * y * (3 * x * x - y * y), SH_C[6] * x * y * z,
              -SH_C[7] * y * (4 * z * z - x * x - y * y),
              SH_C[8] * z * (2 * z * z - 3 * x * x - 3 * y * y),
              -SH_C[7] * x * (4 * z * z - x * x - y * y), SH_C[9] * z * (x * x - y * y),
              -SH_C[5] * x * (x * x - 3 * y * y)]
    return np.stack(b, axis=1)


def reference(g: Gaussians, cam: Camera, background: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain per-pixel EWA splatting, float64 geometry."""
    w2c = cam.world_to_camera.astype(np.float64)
    R, t = w2c[:3, :3], w2c[:3, 3]
    q = g.quats / np.linalg.norm(g.quats, axis=1, keepdims=True)
    qw, qx, qy, qz = q.T.astype(np.float64)
    rot = np.stack([
        1 - 2 * (qy**2 + qz**2), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy),
        2 * (qx * qy + qw * qz), 1 - 2 * (qx**2 + qz**2), 2 * (qy * qz - qw * qx),
        2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx**2 + qy**2)],
        axis=1).reshape(-1, 3, 3)
    s = g.scales().astype(np.float64)
    M = rot * s[:, None, :]
    cov_c = R @ (M @ M.transpose(0, 2, 1)) @ R.T
    mc = g.means.astype(np.float64) @ R.T + t
    z = mc[:, 2]
    W, H = cam.width, cam.height
    lim = lambda size, f, c, sign: ((size - c) if sign > 0 else c) / f + 0.3 * 0.5 * size / f  # noqa: E731
    tx = z * np.clip(mc[:, 0] / z, -lim(W, cam.fx, cam.cx, -1), lim(W, cam.fx, cam.cx, 1))
    ty = z * np.clip(mc[:, 1] / z, -lim(H, cam.fy, cam.cy, -1), lim(H, cam.fy, cam.cy, 1))
    J = np.zeros((len(z), 2, 3))
    J[:, 0, 0] = cam.fx / z
    J[:, 0, 2] = -cam.fx * tx / z**2
    J[:, 1, 1] = cam.fy / z
    J[:, 1, 2] = -cam.fy * ty / z**2
    cov2 = J @ cov_c @ J.transpose(0, 2, 1) + 0.3 * np.eye(2)
    det = cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2
    mx = cam.fx * mc[:, 0] / z + cam.cx
    my = cam.fy * mc[:, 1] / z + cam.cy
    opac = g.opacities().astype(np.float64)
    keep = (z >= cam.near) & (det > 0) & (opac >= 1 / 255)
    campos = -R.T @ t
    d = g.means - campos
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    colors = np.maximum(np.einsum("nk,nkc->nc", sh_basis(d, g.sh_degree), g.sh) + 0.5, 0)
    ys, xs = np.mgrid[0:H, 0:W]
    px, py = xs.ravel() + 0.5, ys.ravel() + 0.5
    T = np.ones(H * W)
    C = np.zeros((H * W, 3))
    active = np.ones(H * W, dtype=bool)
    for i in sorted(np.flatnonzero(keep), key=lambda i: (np.float32(z[i]), i)):
        a, b, c = cov2[i, 1, 1] / det[i], -cov2[i, 0, 1] / det[i], cov2[i, 0, 0] / det[i]
        dx, dy = mx[i] - px, my[i] - py
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = np.minimum(0.999, opac[i] * np.exp(-sigma))
        use = active & (sigma >= 0) & (alpha >= 1 / 255)
        nxt = T * (1 - alpha)
        stop = use & (nxt <= 1e-4)
        active &= ~stop
        use &= ~stop
        C[use] += colors[i] * (alpha * T)[use, None]
        T = np.where(use, nxt, T)
    rgb = C + T[:, None] * background
    return rgb.reshape(H, W, 3), (1 - T).reshape(H, W)


@pytest.mark.parametrize(
    "seed,n,size,degree,activation,dense",
    [(1, 60, (64, 48), 0, "exp", False), (2, 120, (80, 70), 1, "exp", False),
     (3, 150, (96, 64), 2, "softplus", False), (4, 200, (48, 96), 3, "exp", False),
     (5, 1500, (64, 64), 1, "exp", True)],
)
def test_cpu_matches_numpy_reference(seed, n, size, degree, activation, dense):
    g, cam = make_scene(seed, n, *size, degree=degree, activation=activation, dense=dense)
    bg = np.array([0.2, 0.4, 0.6], dtype=np.float32)
    ref_rgb, ref_alpha = reference(g, cam, bg.astype(np.float64))
    out = np.full((cam.height, cam.width, 3), np.nan, dtype=np.float32)  # poisoned
    res = rasterize(g, cam, background=bg, out=out)
    assert res.rgb is out
    assert np.isfinite(res.rgb).all() and np.isfinite(res.alpha).all()
    assert res.alpha.max() > 0.5, "scene must not be empty"
    if dense:
        assert (ref_alpha > 0.99).mean() > 0.2, "dense scene must saturate pixels"
    # measured max abs diff ~2e-6 (float32 kernels vs float64 reference)
    np.testing.assert_allclose(res.alpha, ref_alpha, atol=2e-5)
    np.testing.assert_allclose(res.rgb, ref_rgb, atol=2e-5)
