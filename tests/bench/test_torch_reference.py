"""The PyTorch-eager reference pipeline: its compositor against a per-pixel loop, and its frames
against the offline encoder + deformer + renderer composed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from huma_rt.bench import torch_reference as tr

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians


def _scene(seed: int, n: int = 40, w: int = 24, h: int = 20, degree: int = 1) -> tuple[Gaussians, Camera]:
    rng = np.random.default_rng(seed)
    g = Gaussians(
        means=np.c_[rng.uniform(-0.6, 0.6, (n, 2)), rng.uniform(1.5, 4.0, n)].astype(np.float32),
        log_scales=np.log(rng.uniform(0.02, 0.25, (n, 3))).astype(np.float32),
        quats=rng.standard_normal((n, 4)).astype(np.float32),
        opacity_logits=rng.uniform(-2, 4, n).astype(np.float32),
        sh=(0.4 * rng.standard_normal((n, (degree + 1) ** 2, 3))).astype(np.float32),
    )
    cam = Camera(width=w, height=h, fx=1.1 * w, fy=1.1 * w, cx=w / 2, cy=h / 2)
    return g, cam


def _loop_render(p: tr.Projected, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """The textbook per-pixel loop (float64): every drawn Gaussian at every pixel, depth order."""
    drawn = [i for i in np.argsort(p.depth.numpy(), kind="stable") if (p.radius[i] > 0).all()]
    m, con, op, col = (x.double().numpy() for x in (p.mean2d, p.conic, p.opacity, p.rgb))
    rgb, trans = np.zeros((h, w, 3)), np.ones((h, w))
    for y in range(h):
        for x in range(w):
            t, acc = 1.0, np.zeros(3)
            for i in drawn:
                dx, dy = x + 0.5 - m[i, 0], y + 0.5 - m[i, 1]
                sigma = 0.5 * (con[i, 0] * dx * dx + con[i, 2] * dy * dy) + con[i, 1] * dx * dy
                if sigma < 0:
                    continue
                alpha = min(0.999, op[i] * math.exp(-sigma))
                if alpha < 1 / 255:
                    continue
                if t * (1 - alpha) <= 1e-4:
                    break
                acc += alpha * t * col[i]
                t *= 1 - alpha
            rgb[y, x], trans[y, x] = acc, t
    return rgb, trans


def _project(g: Gaussians, cam: Camera) -> tr.Projected:
    return tr.project(*(torch.from_numpy(a) for a in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)), cam)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compositor_equals_the_per_pixel_loop(seed):
    g, cam = _scene(seed, degree=seed)
    with torch.inference_mode():
        p = _project(g, cam)
        assert int((p.radius > 0).all(-1).sum()) > 10  # the scene draws something
        rgb, trans, _, _ = tr.rasterize_bands(p, cam.width, cam.height, band=7)
    want_rgb, want_t = _loop_render(p, cam.width, cam.height)
    assert want_t.min() < 0.2 and want_t.max() == 1.0  # covered and empty pixels both present
    np.testing.assert_allclose(rgb.numpy().reshape(cam.height, cam.width, 3), want_rgb, atol=2e-6)
    np.testing.assert_allclose(trans.numpy().reshape(cam.height, cam.width), want_t, atol=2e-6)


def test_band_height_does_not_change_the_image():
    g, cam = _scene(7, n=120, w=48, h=40)
    with torch.inference_mode():
        p = _project(g, cam)
        one = tr.rasterize_bands(p, cam.width, cam.height, band=1)
        whole = tr.rasterize_bands(p, cam.width, cam.height, band=cam.height)
    np.testing.assert_allclose(one[0].numpy(), whole[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(one[1].numpy(), whole[1].numpy(), atol=1e-6)


def test_render_composites_over_the_background():
    g, cam = _scene(4)
    bg = np.random.default_rng(0).uniform(0, 1, (cam.height, cam.width, 3)).astype(np.float32)
    img = tr.render(g, cam, bg)
    with torch.inference_mode():
        rgb, t, _, _ = tr.rasterize_bands(_project(g, cam), cam.width, cam.height)
    want = np.clip(rgb.numpy() + t.numpy()[:, None] * bg.reshape(-1, 3), 0, 1) * 255 + 0.5
    assert img.dtype == np.uint8 and img.shape == (cam.height, cam.width, 3)
    np.testing.assert_array_equal(img, want.astype(np.uint8).reshape(img.shape))
    with pytest.raises(InputError, match=r"background must be an RGB triple or a \[20, 24, 3\] image; got shape \(5, 5, 3\)"):
        tr.render(g, cam, np.zeros((5, 5, 3), np.float32))


def test_pipeline_frames_equal_offline_models_composed_by_hand():
    from huma_rt.export.models import build_models

    from huma_rt.model_config import DeformerConfig, EncoderConfig

    torch.manual_seed(0)
    enc_cfg, def_cfg = EncoderConfig(channels=16, past_frames=2), DeformerConfig(hidden=16, layers=1)
    encoder, spatial, deformer = build_models(enc_cfg, def_cfg, seed=3)
    with torch.no_grad():
        deformer.head.weight.mul_(300.0)  # visible motion, so a wrong code would show
    g, cam = _scene(5, n=60, w=32, h=24)
    g.region = (np.arange(g.count) % 2).astype(np.uint8)
    pipe = tr.TorchReferencePipeline(encoder, spatial, deformer, g, cam, (0.2, 0.3, 0.4))
    audio = (0.3 * np.sin(np.arange(2000) * 0.05) * np.random.default_rng(0).uniform(0, 1, 2000)).astype(np.float32)
    frames = list(pipe.frames(audio))
    assert len(frames) == 4  # ceil(2000 / 640)
    assert set(pipe.stage_times) == {*tr.STAGES, "render"} and pipe.stage_times["blend"] > 0
    dyn = torch.from_numpy(np.nonzero(g.region)[0])
    with torch.inference_mode():
        codes = encoder.encode_audio(torch.from_numpy(audio)[None])  # offline path [1, 4, D]
        feat = spatial(torch.from_numpy(g.means)[dyn])
        for t, frame in enumerate(frames):
            dmu, dquat, dscale = deformer(feat, codes[:, t])
            moved = Gaussians(
                means=torch.from_numpy(g.means).index_add(0, dyn, dmu[0]).numpy(),
                quats=torch.from_numpy(g.quats).index_add(0, dyn, dquat[0]).numpy(),
                log_scales=torch.from_numpy(g.log_scales).index_add(0, dyn, dscale[0]).numpy(),
                opacity_logits=g.opacity_logits, sh=g.sh, region=g.region,
            )
            want = tr.render(moved, cam, (0.2, 0.3, 0.4))
            assert np.abs(frame.astype(int) - want.astype(int)).max() <= 1, f"frame {t}"
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 8  # the mouth moved


def test_pipeline_rejects_bad_audio():
    from huma_rt.export.models import build_models

    from huma_rt.model_config import DeformerConfig, EncoderConfig

    encoder, spatial, deformer = build_models(EncoderConfig(channels=8), DeformerConfig(hidden=8, layers=1))
    g, cam = _scene(6)
    pipe = tr.TorchReferencePipeline(encoder, spatial, deformer, g, cam)
    with pytest.raises(InputError, match="audio must be a 1-D float32 array at 16 kHz; got float64"):
        next(pipe.frames(np.zeros(640)))


def test_warm_until_stable_respects_its_call_limits():
    calls = []
    assert tr.warm_until_stable(lambda: calls.append(1), min_calls=10, max_calls=10) == 10 == len(calls)
    assert tr.warm_until_stable(lambda: None, min_calls=3, max_calls=3, max_seconds=60) == 3
