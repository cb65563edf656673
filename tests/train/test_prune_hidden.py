"""train/prune_hidden: a Gaussian's weight is how much of a pixel it covers, and the bundle leaves
out only those that never show.

The weights come from the rasterizer's backward pass; the reference is its forward pass alone:
a frame is linear in the colours, so raising one Gaussian's colour by e raises the frame's sum
by e x that Gaussian's weight.
"""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")

torch = pytest.importorskip("torch")

from huma_rt.export.models import Deformer, SpatialEncoder  # noqa: E402
from huma_rt.train.fit_articulated import canonical_params  # noqa: E402
from huma_rt.train.fit_pose import render_view  # noqa: E402
from huma_rt.train.gaussian_init import SH_C0  # noqa: E402
from huma_rt.train.prune_hidden import gaussian_weights, prune_hidden  # noqa: E402

from huma_rt.model_config import DeformerConfig  # noqa: E402

W, H = 48, 40
CAM = Camera(W, H, 60.0, 60.0, W / 2, H / 2)
REST = (np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0]))
CODE_DIM = 4


def _g(means, scales, opacity_logits, region) -> Gaussians:
    n = len(means)
    sh = np.zeros((n, 1, 3), np.float32)
    sh[:, 0] = (np.linspace(0.2, 0.8, n)[:, None] - 0.5) / SH_C0
    return Gaussians(means=np.asarray(means, np.float32), log_scales=np.log(np.asarray(scales, np.float32)),
                     quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                     opacity_logits=np.asarray(opacity_logits, np.float32), sh=sh,
                     region=np.asarray(region, np.uint8))  # fmt: skip


def _scene() -> Gaussians:
    """0, 7: two large opaque discs in front (one Gaussian lets 1 % through); 1: a small one
    right behind them (hidden); 2: a faint one beside them (opacity 3e-4); 3, 4: visible ones off
    the discs; 5, 6: dynamic, on the discs' rim."""
    return _g(means=[[0, 0, 0], [0, 0, 0.3], [0.6, 0.5, 0], [-0.55, -0.4, 0], [0.55, -0.4, 0], [0.3, 0.1, -0.05],
                     [-0.3, 0.1, -0.05], [0, 0, 0.12]],
              scales=[[0.3, 0.3, 0.05], [0.03, 0.03, 0.03], [0.08, 0.08, 0.08], [0.07, 0.07, 0.07],
                      [0.05, 0.09, 0.05], [0.05, 0.05, 0.05], [0.05, 0.05, 0.05], [0.3, 0.3, 0.05]],
              opacity_logits=[8, 3, -8, 2, 1, 2, 2, 8], region=[0, 0, 0, 0, 0, 1, 1, 0])  # fmt: skip


def _models(g: Gaussians):
    dcfg = DeformerConfig(code_dim=CODE_DIM, plane_resolution=8, hidden=16, layers=1,
                          bbox_min=[float(v) for v in g.means.min(0) - 0.1],
                          bbox_max=[float(v) for v in g.means.max(0) + 0.1])  # fmt: skip
    torch.manual_seed(0)
    return SpatialEncoder(dcfg).eval(), Deformer(dcfg).eval()


def _frame_sum(g: Gaussians, colour_of: dict[int, float]) -> float:
    """Sum of channel 0 of the frame at the rest pose with every colour 1 (``colour_of``: row ->
    another colour) over black, no deformation."""
    p = canonical_params(g)
    p["sh_dc"][:] = 0.5 / SH_C0
    for row, c in colour_of.items():
        p["sh_dc"][row] = (c - 0.5) / SH_C0
    q, t = (torch.tensor(v, dtype=torch.float32) for v in REST)
    with torch.no_grad():
        return float(render_view(p, CAM, q, t, torch.zeros(H, W, 3), 0).image[..., 0].double().sum())


def test_weights_are_the_frames_change_per_unit_of_colour():
    g = _scene()
    spatial, deformer = _models(g)
    with torch.no_grad():  # no deformation: the deformer's deltas are zeroed
        deformer.head.weight.zero_()
        deformer.head.bias.zero_()
    w = gaussian_weights(g, spatial, deformer, CAM, REST, np.zeros((1, CODE_DIM), np.float32))
    base = _frame_sum(g, {})
    for row in range(g.count):
        e = 0.25
        fd = (_frame_sum(g, {row: 1.0 + e}) - base) / e
        assert w[row] == pytest.approx(fd, rel=1e-3, abs=1e-4), row
    assert w[0] > 50  # the disc covers many pixels
    assert w[1] < 0.005 and w[2] < 0.01  # hidden behind them; faint


def test_the_never_shown_are_left_out_and_the_frame_barely_changes():
    g = _scene()
    spatial, deformer = _models(g)
    codes = np.random.default_rng(0).normal(0, 1, (40, CODE_DIM)).astype(np.float32)
    codes[5] = np.nan  # an untracked frame's code is skipped
    bg = np.full((H, W, 3), 0.3, np.float32)
    r = prune_hidden(g, spatial, deformer, CAM, REST, bg, codes, below=0.01, frames=12)
    assert r.keep.tolist() == [0, 3, 4, 5, 6, 7]
    assert r.frames == 12
    assert r.weights.shape == (g.count,)
    assert r.psnr > 50.0
    whole = prune_hidden(g, spatial, deformer, CAM, REST, bg, codes, below=0.0, frames=12)
    assert whole.keep.tolist() == list(range(g.count)) and whole.psnr == float("inf")


def test_a_blinking_avatar_is_weighed_with_its_eyes_shut_too():
    g = _scene()
    spatial, deformer = _models(g)
    codes = np.zeros((8, CODE_DIM), np.float32)
    bg = np.zeros((H, W, 3), np.float32)
    plain = prune_hidden(g, spatial, deformer, CAM, REST, bg, codes, below=0.01, frames=8)
    blinking = prune_hidden(g, spatial, deformer, CAM, REST, bg, codes, below=0.01, frames=8,
                            blink_code=np.ones(CODE_DIM, np.float32))  # fmt: skip
    assert (plain.frames, blinking.frames) == (8, 10)  # every 4th frame again, shut
    assert (blinking.weights >= plain.weights - 1e-9).all()


def test_a_dynamic_region_is_never_emptied():
    g = _scene()
    g = _g(g.means, np.exp(g.log_scales), [8, 3, -8, 2, 1, -9, -9, 8], g.region)  # the dynamic rows faint
    spatial, deformer = _models(g)
    r = prune_hidden(g, spatial, deformer, CAM, REST, np.zeros((H, W, 3), np.float32),
                     np.zeros((4, CODE_DIM), np.float32), below=0.01)  # fmt: skip
    assert {5, 6} <= set(r.keep.tolist())
    assert 2 not in r.keep


@pytest.mark.parametrize(("kwargs", "match"), [({"below": 1.0}, "below"), ({"below": -0.1}, "below"),
                                               ({"below": True}, "below"), ({"below": 0.01, "frames": 0}, "frames")])
def test_bad_options_are_refused_by_name(kwargs, match):
    g = _scene()
    spatial, deformer = _models(g)
    with pytest.raises(InputError, match=match):
        prune_hidden(g, spatial, deformer, CAM, REST, np.zeros((H, W, 3), np.float32), np.zeros((4, CODE_DIM)), **kwargs)


def test_codes_without_a_finite_row_are_refused():
    g = _scene()
    spatial, deformer = _models(g)
    with pytest.raises(InputError, match="no finite code"):
        prune_hidden(g, spatial, deformer, CAM, REST, np.zeros((H, W, 3), np.float32),
                     np.full((3, CODE_DIM), np.nan), below=0.01)  # fmt: skip
