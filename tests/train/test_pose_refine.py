"""Photometric pose refinement (train/pose_refine.py, driven by fit_static): a known scene seen
under known poses; the poses handed to the fit are perturbed (a few degrees, a tenth of the
scene's size) and the refinement brings them back, with the scene frozen (the held-out case:
a photometric tracker) and inside a whole static fit (joint steps + a sweep); the corrections
survive an interrupt + resume exactly (test_fit_static's resume test covers the Gaussians).

The truth is rendered by test_fit_static's helpers (poses applied by train/synthetic_pose in
numpy, not by the fit's torch code)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from huma_rt.kernels import cpu_backend_available

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")

from _fit_cut import fit_cut_at  # noqa: E402  (tests/_fit_cut.py)
from huma_rt.train.densify import DensifyConfig  # noqa: E402
from huma_rt.train.fit_pose import render_view  # noqa: E402
from huma_rt.train.fit_static import (  # noqa: E402
    CHECKPOINT,
    StaticFitConfig,
    StaticFitData,
    fit_static,
    render_fit,
)
from huma_rt.train.losses import photometric_loss, psnr  # noqa: E402
from huma_rt.train.pose_refine import (  # noqa: E402
    PoseRefineConfig,
    apply_delta,
    corrected_poses,
    refine_poses,
    rotvec_to_quat,
)
from huma_rt.train.synthetic_pose import quat_multiply, quat_to_matrix  # noqa: E402
from test_fit_static import SIZE, _poses, _render_truth, _scene  # noqa: E402  (tests/train on sys.path)

FRAMES = 24


def _rotvec_quat(r: np.ndarray) -> np.ndarray:
    a = float(np.linalg.norm(r))
    return np.array([1.0, 0, 0, 0]) if a == 0 else np.r_[np.cos(a / 2), np.sin(a / 2) * r / a]


def _perturb(q: np.ndarray, t: np.ndarray, seed: int, deg: float = 3.0, shift: float = 0.1):
    """Each pose turned by ``deg`` degrees about a random axis (in head space) and shifted by
    ``shift`` (in head space, the scene is ~1 unit) -> (quat [T,4], trans [T,3])."""
    rng = np.random.default_rng(seed)
    qs, ts = [], []
    for qi, ti in zip(q, t, strict=True):
        axis = rng.normal(size=3)
        d = _rotvec_quat(np.radians(deg) * axis / np.linalg.norm(axis))
        s = rng.normal(size=3)
        qs.append(quat_multiply(qi, d))
        ts.append(ti + quat_to_matrix(qi) @ (shift * s / np.linalg.norm(s)))
    return np.stack(qs), np.stack(ts)


def _pose_error(q: np.ndarray, t: np.ndarray, q0: np.ndarray, t0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame angle (degrees) and shift between poses (q, t) and the truth (q0, t0)."""
    dots = np.abs((q / np.linalg.norm(q, axis=1, keepdims=True) * q0).sum(1)).clip(0, 1)
    return np.degrees(2 * np.arccos(dots)), np.linalg.norm(t - t0, axis=1)


@pytest.fixture(scope="module")
def world():
    K = np.array([[SIZE * 1.3, 0, SIZE / 2], [0, SIZE * 1.3, SIZE / 2], [0, 0, 1]])
    cam = Camera(SIZE, SIZE, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    bg = np.stack([0.2 + 0.5 * xx, 0.3 + 0.3 * yy, 0.6 - 0.3 * xx * yy], -1).astype(np.float32)
    scene, (q, t) = _scene(), _poses(FRAMES)
    frames, mattes = zip(*(_render_truth(scene, cam, q[i], t[i], bg) for i in range(FRAMES)), strict=True)
    return {"K": K, "camera": cam, "bg": bg, "scene": scene, "q": q, "t": t,
            "frames": (np.stack(frames) * 255).round().astype(np.uint8), "mattes": np.stack(mattes)}  # fmt: skip


def test_delta_composes_in_head_space():
    q = torch.tensor(_rotvec_quat(np.array([0.3, -0.5, 0.2])), dtype=torch.float32)
    t = torch.tensor([0.1, -0.2, 3.0])
    r, s = np.array([0.02, 0.05, -0.03]), np.array([0.1, 0.2, -0.3])
    q2, t2 = apply_delta(q, t, torch.tensor(np.r_[r, s], dtype=torch.float32))
    # x_cam = R (R_d p + t_d) + t for a point p, against numpy matrices
    p = np.array([0.3, -0.1, 0.4])
    want = quat_to_matrix(q.numpy().astype(np.float64)) @ (quat_to_matrix(_rotvec_quat(r)) @ p + s) + t.numpy()
    got = quat_to_matrix(q2.detach().numpy().astype(np.float64)) @ p + t2.detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # zero correction = the tracked pose, bit for bit (a fit with the corrections off is unchanged)
    q0, t0 = apply_delta(q, t, torch.zeros(6))
    assert torch.equal(q0, q) and torch.equal(t0, t)
    assert torch.equal(rotvec_to_quat(torch.zeros(3)), torch.tensor([1.0, 0, 0, 0]))
    with pytest.raises(InputError, match="delta"):
        corrected_poses(q[None].numpy(), t[None].numpy(), np.zeros((1, 5)))


def test_frozen_scene_recovers_perturbed_poses(world):
    """The held-out case: the scene known and frozen, pose-only steps from a wrong start."""
    w, index = world, np.arange(0, FRAMES, 6)
    q, t = _perturb(w["q"], w["t"], seed=3)
    sh = w["scene"]["sh"]
    params = {k: torch.from_numpy(np.ascontiguousarray(w["scene"][k], np.float32))
              for k in ("means", "log_scales", "quats", "opacity_logits")}  # fmt: skip
    params["sh_dc"] = torch.from_numpy(sh[:, :1])
    bg = torch.from_numpy(w["bg"])

    def loss_of(i, qi, ti):
        img = render_view(params, w["camera"], qi, ti, bg, 0).image
        return photometric_loss(img, torch.from_numpy(w["frames"][i] / 255.0).float())

    qt, tt = torch.tensor(q, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)
    lr = torch.tensor([3e-3] * 3 + [1e-2] * 3)
    delta = refine_poses(loss_of, qt, tt, torch.zeros(FRAMES, 6), index, 60, lr, extent=1.0, prior=0.0)
    assert not delta[np.setdiff1d(np.arange(FRAMES), index)].any(), "frames outside index untouched"
    q2, t2 = corrected_poses(q[index], t[index], delta[index].numpy())
    a0, s0 = _pose_error(q[index], t[index], w["q"][index], w["t"][index])
    a1, s1 = _pose_error(q2, t2, w["q"][index], w["t"][index])
    print(f"frozen scene: angle {a0.mean():.2f} -> {a1.mean():.2f} deg, shift {s0.mean():.3f} -> {s1.mean():.3f}")
    assert a1.mean() < a0.mean() / 4 and s1.mean() < s0.mean() / 4


def _config(**kw) -> StaticFitConfig:
    base = dict(iterations=300, init_count=300, sh_degree=0, holdout_every=4, lr_means=1.6e-3, log_every=100,
                checkpoint_every=0, densify=DensifyConfig(start=100, interval=100, stop=200, opacity_reset_every=0))
    base.update(kw)
    return StaticFitConfig(**base)


def test_static_fit_refines_perturbed_poses(world):
    """Fitted from perturbed poses, the fit's poses end nearer the truth than they started
    (training frames: joint steps + sweeps; held-out frames: pose-only after the fit), and the
    held-out frames score higher at the refined poses than at the perturbed ones. Harder than
    the frozen case: the Gaussians are fitted to the wrong poses first."""
    w = world
    q, t = _perturb(w["q"], w["t"], seed=5)
    data = StaticFitData(w["frames"], q, t, w["K"], mattes=w["mattes"])
    pose = PoseRefineConfig(start=40, lr_rot=5e-3, lr_trans=1e-2, sweeps=(0.35, 0.7), sweep_steps=10, holdout_steps=20)
    got = fit_static(data, _config(iterations=200, pose=pose))
    m, err = got.metrics, {}
    for name, rows in (("train", got.train_frames), ("held-out", got.held_out)):
        a0, s0 = _pose_error(q[rows], t[rows], w["q"][rows], w["t"][rows])
        a1, s1 = _pose_error(got.head_quat[rows], got.head_trans[rows], w["q"][rows], w["t"][rows])
        err[name] = (a1.mean() / a0.mean(), s1.mean() / s0.mean())
        print(f"{name}: angle {a0.mean():.2f} -> {a1.mean():.2f} deg, shift {s0.mean():.3f} -> {s1.mean():.3f}")
    print(f"held-out PSNR {m['tracked_pose']['psnr']:.2f} (perturbed poses) -> {m['psnr']:.2f} (refined)")
    assert m["held_out_pose"] == "refined" and m["psnr"] > m["tracked_pose"]["psnr"] + 1.0
    # both scores are those of the whole returned avatar (the refinement's renders leave out the
    # nearly transparent Gaussians), at the poses handed on and at the tracked ones
    for key, (hq, ht) in (("refined", (got.head_quat, got.head_trans)), ("tracked", (q, t))):
        mine = np.mean([psnr(torch.from_numpy(render_fit(got, hq[i], ht[i])), torch.from_numpy(w["frames"][i] / 255.0).float())
                        for i in got.held_out])  # fmt: skip
        want = m["psnr"] if key == "refined" else m["tracked_pose"]["psnr"]
        assert mine == pytest.approx(want, abs=0.02), key
    # measured: angle x0.86 / x0.82, shift x0.52 / x0.56 (train / held-out), +2.1 dB. A 3 degree
    # turn about the head origin moves this small scene by ~0.5 px at 64 px: the shift is what
    # the images show most; a fit with the corrections off keeps both at x1.0
    for name, (a, s) in err.items():
        assert a < 0.95 and s < 0.7, (name, a, s)


def test_corrections_off_hand_on_the_tracked_poses(world):
    w = world
    q, t = _perturb(w["q"], w["t"], seed=5)
    data = StaticFitData(w["frames"], q, t, w["K"], mattes=w["mattes"])
    off = fit_static(data, _config(iterations=20, pose=PoseRefineConfig(joint=False, sweeps=(), holdout_steps=0)))
    np.testing.assert_array_equal(off.head_quat, q.astype(np.float32))
    np.testing.assert_array_equal(off.head_trans, t.astype(np.float32))
    assert off.metrics["held_out_pose"] == "tracked" and off.metrics["psnr"] == off.metrics["tracked_pose"]["psnr"]


def test_interrupted_fit_resumes_the_corrections_exactly(world, tmp_path):
    w = world
    q, t = _perturb(w["q"], w["t"], seed=7)
    data = StaticFitData(w["frames"], q, t, w["K"], mattes=w["mattes"])
    # joint steps from iteration 10, a sweep at 30 (between the checkpoint at 20 and the cut at 40)
    cfg = _config(iterations=60, checkpoint_every=20, log_every=10, densify=DensifyConfig(start=20, interval=20, stop=60),
                  pose=PoseRefineConfig(start=10, sweeps=(0.5,), sweep_steps=3, holdout_steps=4))  # fmt: skip
    whole = fit_static(data, cfg, tmp_path / "whole")
    fit_cut_at(data, cfg, tmp_path / "cut", 40)
    assert "pose_delta" in torch.load(tmp_path / "cut" / CHECKPOINT, weights_only=True)
    again = fit_static(data, cfg, tmp_path / "cut", resume=True)
    assert not np.array_equal(whole.head_quat, q.astype(np.float32)), "the corrections moved the poses"
    np.testing.assert_allclose(again.head_quat, whole.head_quat, atol=1e-6)
    np.testing.assert_allclose(again.head_trans, whole.head_trans, atol=1e-6)
    np.testing.assert_allclose(again.gaussians.means, whole.gaussians.means, atol=2e-5)
    assert again.metrics["psnr"] == pytest.approx(whole.metrics["psnr"], abs=1e-3)


def test_bad_pose_configs_are_refused():
    for kw, msg in (({"sweeps": (1.5,)}, "fractions"), ({"sweep_steps": -1}, "sweep_steps"),
                    ({"lr_rot": float("nan")}, "lr_rot"), ({"start": 1.5}, "start"),
                    ({"holdout_min_opacity": 1.0}, "holdout_min_opacity")):  # fmt: skip
        with pytest.raises(InputError, match=msg):
            PoseRefineConfig(**kw)
    assert StaticFitConfig.from_dict(StaticFitConfig(pose=PoseRefineConfig(sweeps=(0.3,))).to_dict()).pose.sweeps == (0.3,)
