"""train/pack_avatar: a trained avatar becomes a bundle the runtime draws exactly as the fit does.

The runtime side is real throughout (huma_rt.bundle, onnxruntime, the CPU FrameRenderer); the
reference side is the training code's own torch render (train/fit_pose.render_view, the
function render_fit and the fits use), on the torch modules that were exported. A constructed
scene checks the geometry (rest pose with a real rotation, degree-1 SH, full-size camera from a
fit-size plate) in seconds; the closed-loop case (tests/_trained_bundle.py) checks a bundle made
from a fitted clip.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from huma_rt.kernels import cpu_backend_available

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera, Gaussians

pytestmark = pytest.mark.skipif(not cpu_backend_available(), reason="CPU extension not built")

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from huma_rt.export.models import AudioEncoder, Deformer, SpatialEncoder  # noqa: E402
from huma_rt.train.fit_pose import render_view  # noqa: E402
from huma_rt.train.fit_static import render_fit  # noqa: E402
from huma_rt.train.pack_avatar import median_pose, pack_avatar, plate_for_camera, rest_camera  # noqa: E402

from huma_rt.bundle import open_bundle  # noqa: E402
from huma_rt.model_config import DeformerConfig, EncoderConfig  # noqa: E402
from huma_rt.render.frame_renderer import FrameRenderer  # noqa: E402
from huma_rt.runtime import Avatar  # noqa: E402

W, H = 64, 48
SH_C0 = 0.28209479177387814


def _quat(axis, deg: float) -> np.ndarray:
    a = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    h = np.radians(deg) / 2
    return np.array([np.cos(h), *(np.sin(h) * a)])


REST = (_quat([0.2, 1.0, 0.1], 25.0), np.array([0.1, -0.15, 3.0]))


def _scene(n: int = 400, seed: int = 1) -> Gaussians:
    """A head-sized blob in canonical space with view-dependent colour; the lower front third is
    the dynamic region."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = (d * [0.45, 0.55, 0.4] + 0.01 * rng.normal(size=(n, 3))).astype(np.float32)
    sh = np.zeros((n, 4, 3), np.float32)
    sh[:, 0] = (rng.uniform(0.15, 0.85, (n, 3)) - 0.5) / SH_C0
    sh[:, 1:] = rng.normal(0, 0.3, (n, 3, 3))
    q = rng.normal(size=(n, 4))
    return Gaussians(means=means, log_scales=np.log(rng.uniform(0.04, 0.09, (n, 3))).astype(np.float32),
                     quats=(q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
                     opacity_logits=rng.uniform(1.0, 3.0, n).astype(np.float32), sh=sh,
                     region=((d[:, 1] > 0.3) & (d[:, 2] < 0)).astype(np.uint8))  # fmt: skip


def _camera(scale: int = 1) -> Camera:
    return Camera(W * scale, H * scale, 70.0 * scale, 70.0 * scale, W * scale / 2 + 1.5 * scale, H * scale / 2 - 2.0 * scale)


def _background(w: int = W, h: int = H) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    return np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.5 - 0.3 * xx * yy], -1).astype(np.float32)


def _models(code_dim: int = 8, g: Gaussians | None = None, motion: float = 0.0):
    """Seeded encoder, spatial encoder and deformer; ``motion`` scales the dmu head so the
    deltas move the mouth visibly (untrained outputs are ~1e-2)."""
    enc_cfg = EncoderConfig(code_dim=code_dim, channels=32, past_frames=2, lookahead_frames=2)
    lo, hi = ([-0.6] * 3, [0.6] * 3) if g is None else (g.means.min(0) - 0.05, g.means.max(0) + 0.05)
    dcfg = DeformerConfig(code_dim=code_dim, plane_resolution=8, hidden=16, layers=1,
                          bbox_min=[float(v) for v in lo], bbox_max=[float(v) for v in hi])  # fmt: skip
    torch.manual_seed(0)
    enc, spatial, deformer = AudioEncoder(enc_cfg).eval(), SpatialEncoder(dcfg).eval(), Deformer(dcfg).eval()
    if motion:
        with torch.no_grad():
            deformer.head.weight[0:3] *= motion
            deformer.head.weight[7:10] *= motion / 4
    return enc, spatial, deformer


def _params(g: Gaussians) -> dict[str, torch.Tensor]:
    p = {k: torch.from_numpy(np.ascontiguousarray(getattr(g, k))) for k in ("means", "quats", "log_scales", "opacity_logits")}
    p["sh_dc"] = torch.from_numpy(np.ascontiguousarray(g.sh[:, :1]))
    p["sh_rest"] = torch.from_numpy(np.ascontiguousarray(g.sh[:, 1:]))
    return p


def _torch_render(g: Gaussians, camera: Camera, background: np.ndarray, pose, deltas=None) -> np.ndarray:
    """The fits' render of canonical Gaussians (+ deltas on the dynamic rows) at ``pose`` ->
    uint8 [h,w,3] (the runtime's rounding)."""
    p = _params(g)
    if deltas is not None:
        rows = torch.from_numpy(np.flatnonzero(g.region))
        for key, d in zip(("means", "quats", "log_scales"), deltas, strict=True):
            p[key] = p[key].index_add(0, rows, d)
    q, t = (torch.tensor(np.asarray(v, np.float64), dtype=torch.float32) for v in pose)
    with torch.no_grad():
        img = render_view(p, camera, q, t, torch.from_numpy(background), g.sh_degree).image.clamp(0, 1)
    return np.floor(img.numpy() * 255.0 + 0.5).astype(np.uint8)


def _rest_frame(bundle) -> np.ndarray:
    """The runtime's frame with every Gaussian at rest (the CPU FrameRenderer's static frame)."""
    b = open_bundle(bundle)
    g = b.gaussians()
    return FrameRenderer(b.camera, g, g.region != 0, background=b.background, threads=1).static_frame


def _assert_close_u8(got: np.ndarray, want: np.ndarray, what: str, max_diff: int = 1, share: float = 0.01) -> None:
    assert got.shape == want.shape, what
    diff = np.abs(got.astype(int) - want)
    print(f"{what}: max |diff| {diff.max()} levels, {np.mean(diff > 0):.2%} of values differ")
    assert diff.max() <= max_diff and np.mean(diff > 0) <= share, what


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (env * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=t.size))).astype(np.float32)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    torch.set_num_threads(1)
    g = _scene()
    enc, spatial, deformer = _models(g=g, motion=40.0)
    out = pack_avatar(g, spatial, deformer, enc, _camera(), _background(), tmp_path_factory.mktemp("pack") / "a.bundle",
                      name="scene", rest_pose=REST)  # fmt: skip
    return out, g, enc, spatial, deformer


def test_rest_frame_is_the_fits_render_at_the_rest_pose(packed):
    out, g, *_ = packed
    b = open_bundle(out)
    assert b.name == "scene" and b.gaussians().count == g.count and b.camera.width == W
    np.testing.assert_allclose(b.camera.world_to_camera, rest_camera(_camera(), *REST).world_to_camera)
    want = _torch_render(g, _camera(), _background(), REST)
    _assert_close_u8(_rest_frame(out), want, "rest frame vs the fit's render")
    # the rest pose is really applied: the same Gaussians unturned land elsewhere
    other = _torch_render(g, _camera(), _background(), (np.array([1.0, 0, 0, 0]), REST[1]))
    assert np.abs(other.astype(int) - want).max() > 60


def test_frames_with_codes_are_the_torch_deformers_render(packed):
    """Avatar.render (encoder, spatial and deformer in onnxruntime fp32, the CPU renderer) draws
    what the torch modules draw for the torch encoder's codes of the same audio."""
    out, g, enc, spatial, deformer = packed
    audio = _speech_like(1.2)
    avatar = Avatar.load(out, device="cpu", threads=1)
    try:
        frames = [f.rgb.copy() for f in avatar.render(audio)]
    finally:
        avatar.close()
    rows = torch.from_numpy(np.flatnonzero(g.region))
    with torch.no_grad():
        codes = enc.encode_audio(torch.from_numpy(audio)[None])[0]
        feat = spatial(torch.from_numpy(g.means)[rows])
    assert codes.shape[0] == len(frames) == 30
    rest = _torch_render(g, _camera(), _background(), REST)
    moved = 0
    for i in range(0, len(frames), 3):
        with torch.no_grad():
            dmu, dquat, dscale = (d[0] for d in deformer(feat, codes[i][None]))
        want = _torch_render(g, _camera(), _background(), REST, (dmu, dquat, dscale))
        _assert_close_u8(frames[i], want, f"frame {i} vs torch", max_diff=2, share=0.02)
        moved += int(np.abs(want.astype(int) - rest).max() > 20)
    assert moved >= 5, "the deformer must move the mouth visibly for this comparison to mean anything"


def test_full_size_camera_from_the_fits_plate(tmp_path):
    """The bundle renders at the video's size from a plate at the fit's (downscale 2): the plate
    is upsampled with the pooling's pixel centres, the Gaussians drawn at full size."""
    g = _scene()
    enc, spatial, deformer = _models(g=g)
    small = _background()
    out = pack_avatar(g, spatial, deformer, enc, _camera(2), small, tmp_path / "big.bundle", name="big", rest_pose=REST)
    b = open_bundle(out)
    assert (b.camera.width, b.camera.height) == (2 * W, 2 * H)
    plate = plate_for_camera(small, _camera(2))
    np.testing.assert_array_equal(b.background, plate)
    _assert_close_u8(_rest_frame(out), _torch_render(g, _camera(2), plate, REST), "full-size rest frame")


def test_plate_upsampling_keeps_pixel_centres():
    """A linear ramp pooled by d and upsampled back is the ramp again (inside one pooled pixel
    of the border, where bilinear has both neighbours); cut rows/columns repeat the edge."""
    d = 4
    big = Camera(4 * 16 + 3, 4 * 10 + 2, 50.0, 50.0, 30.0, 20.0)
    yy, xx = np.mgrid[0:big.height, 0:big.width].astype(np.float64)
    ramp = np.stack([xx / big.width, yy / big.height, 0.5 * (xx + yy) / (big.width + big.height)], -1)
    pooled = ramp[:40, :64].reshape(10, d, 16, d, 3).mean((1, 3)).astype(np.float32)
    up = plate_for_camera(pooled, big)
    assert up.shape == (big.height, big.width, 3) and up.dtype == np.float32
    inner = (slice(d, 40 - d), slice(d, 64 - d))
    np.testing.assert_allclose(up[inner], ramp[inner], atol=1e-6)
    np.testing.assert_array_equal(up[40:], np.repeat(up[39:40], 2, 0))
    np.testing.assert_array_equal(up[:, 64:], np.repeat(up[:, 63:64], 3, 1))
    np.testing.assert_array_equal(plate_for_camera(ramp.astype(np.float32), big), ramp.astype(np.float32))


def test_median_pose_is_robust_and_sign_free():
    rng = np.random.default_rng(4)
    base = _quat([0.1, 1.0, 0.0], 12.0)
    wobble = [_quat(rng.normal(size=3), a) for a in rng.uniform(0, 2.0, 41)]
    from huma_rt.train.synthetic_pose import quat_multiply

    q = np.stack([quat_multiply(w, base) for w in wobble])
    q[::3] *= -1  # the same rotations, the other sign
    t = np.array([0.0, 0.05, 0.6]) + rng.normal(0, 0.002, (41, 3))
    q[5], t[5] = _quat([1, 0, 0], 80.0), [1.0, 1.0, 9.0]  # a tracking failure
    valid = np.ones(41, bool)
    valid[7] = False
    q[7] = np.nan  # invalid frames may hold anything
    mq, mt = median_pose(q, t, valid)
    assert abs(abs(float(mq @ base)) - 1.0) < 2e-4  # within ~2 degrees of the base rotation
    np.testing.assert_allclose(mt, [0.0, 0.05, 0.6], atol=2e-3)
    with pytest.raises(InputError, match="valid must be a bool array"):
        median_pose(q, t, valid.astype(int))
    with pytest.raises(InputError, match="at least one valid frame"):
        median_pose(q, t, np.zeros(41, bool))
    with pytest.raises(InputError, match=r"head_quat must be \[T,4\]"):
        median_pose(q[:, :3], t)


def test_bad_inputs_are_refused_by_name(tmp_path):
    g = _scene(n=60)
    enc, spatial, deformer = _models(g=g)
    cam, bg = _camera(), _background()

    def pack(**kw):
        args = dict(gaussians=g, spatial=spatial, deformer=deformer, encoder=enc, camera=cam, background=bg,
                    out=tmp_path / "x.bundle", name="x", rest_pose=REST)  # fmt: skip
        args.update(kw)
        return pack_avatar(**args)

    static = dataclasses.replace(g, region=np.zeros(g.count, np.uint8))
    enc16 = _models(code_dim=16, g=g)[0]
    other_spatial = SpatialEncoder(DeformerConfig(code_dim=8, plane_resolution=8, hidden=16, layers=1))
    cut = dataclasses.replace(g)
    cut.region = cut.region[:-1]  # changed after construction: pack_avatar validates again
    nan = dataclasses.replace(g, means=g.means.copy())
    nan.means[7, 1] = np.nan
    moved = Camera(W, H, 70.0, 70.0, 32.0, 24.0, world_to_camera=rest_camera(cam, *REST).world_to_camera)
    cases = [
        (dict(gaussians=static), "no dynamic region"),
        (dict(gaussians=g.means), "gaussians must be huma_rt.gaussians.Gaussians"),
        (dict(gaussians=cut), r"region must have shape \(60,\)"),
        (dict(gaussians=nan), "means must be finite; Gaussian 7"),
        (dict(spatial=None), "spatial must be a huma_rt.export.models.SpatialEncoder"),
        (dict(encoder=enc16), "encoder code_dim 16 must equal deformer code_dim 8"),
        (dict(spatial=other_spatial), "spatial encoder and deformer must share one DeformerConfig"),
        (dict(deformer=spatial), "deformer must be a huma_rt.export.models.Deformer"),
        (dict(encoder=None), "encoder must be a huma_rt.export.models.AudioEncoder"),
        (dict(background=bg[:, :-3]), r"background must be the camera's size \[48, 64, 3\].*got \[48, 61, 3\]"),
        (dict(background=bg[..., :2]), r"background must be an \[H,W,3\] image"),
        (dict(background=np.full_like(bg, np.nan)), "background must be finite"),
        (dict(background=bg * 2), r"values in \[0, 1\]"),
        (dict(camera=moved), "camera must have identity extrinsics"),
        (dict(camera="cam"), "camera must be a huma_rt.gaussians.Camera"),
        (dict(rest_pose=(np.zeros(4), REST[1])), "rest_pose must be"),
        (dict(rest_pose=(REST[0], REST[1][:2])), "rest_pose must be"),
        (dict(rest_pose=REST[0]), r"rest_pose must be a \(quat \[4\], trans \[3\]\) pair"),
        (dict(name=""), "name must be a non-empty string"),
    ]
    for kw, match in cases:
        with pytest.raises(InputError, match=match):
            pack(**kw)
    assert not (tmp_path / "x.bundle").exists()
    pack()
    with pytest.raises(InputError, match="already exists"):
        pack()
    pack(overwrite=True, name="again")
    assert open_bundle(tmp_path / "x.bundle").name == "again"


# -- the closed-loop case: a bundle from a fitted synthetic clip ---------------------------------


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from _trained_bundle import trained_case

    return trained_case(tmp_path_factory)


def test_trained_bundle_at_rest_is_render_fit(case):
    print(f"built in {sum(case.seconds.values()):.1f} s {({k: round(v, 1) for k, v in case.seconds.items()})}; "
          f"{case.gaussians.count} Gaussians, {int(np.count_nonzero(case.gaussians.region))} dynamic")
    fit = dataclasses.replace(case.static, gaussians=case.gaussians)  # the Gaussians that were packed
    want = np.floor(render_fit(fit, *case.rest) * 255.0 + 0.5).astype(np.uint8)
    _assert_close_u8(_rest_frame(case.bundle), want, "trained bundle at rest vs render_fit")


def test_trained_bundle_speaking_is_the_torch_deformers_render(case):
    """The clip's own speech through the runtime vs the torch modules at the torch encoder's
    codes, frames with the mouth moving included."""
    from huma_rt.media import read_wav

    pcm, _ = read_wav(case.clip / "speech.wav")
    pcm = np.ascontiguousarray(pcm[: 16000], np.float32)
    avatar = Avatar.load(case.bundle, device="cpu", threads=1)
    try:
        frames = [f.rgb.copy() for f in avatar.render(pcm)]
    finally:
        avatar.close()
    g, cam, bg = case.gaussians, case.static.camera, case.static.background
    rows = torch.from_numpy(np.flatnonzero(g.region))
    with torch.no_grad():
        codes = case.encoder.encode_audio(torch.from_numpy(pcm)[None])[0]
        feat = case.spatial(torch.from_numpy(g.means)[rows])
    rest = _rest_frame(case.bundle)
    moved = 0
    for i in range(0, len(frames), 4):
        with torch.no_grad():
            deltas = [d[0] for d in case.deformer(feat, codes[i][None])]
        want = _torch_render(g, cam, bg, case.rest, deltas)
        _assert_close_u8(frames[i], want, f"frame {i} vs torch", max_diff=2, share=0.02)
        moved += int(np.abs(want.astype(int) - rest).max() > 8)
    assert moved >= 2, "speech must move the trained mouth for the comparison to mean anything"


def _upsample(img: np.ndarray, u: int) -> np.ndarray:
    """Bilinear upsampling of an [h,w,3] image by u, pixel edges aligned -> float in [0, 255]."""
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(x, scale_factor=u, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


def _psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_upscaled_pack_draws_the_fit_larger(tmp_path):
    """A fit of fine splats (0.1-0.5 px at the fit's size, each widened there by the screen
    low-pass) packed at 4x: the bundle's frame is the fit's frame drawn larger, where the same
    Gaussians drawn at 4x without the widening break up."""
    from huma_rt.train.pack_avatar import lowpass_for_upscale, upscale_camera

    from huma_rt.render._common import SCREEN_LOWPASS_PX2

    g = _scene(n=6000, seed=2)
    g = dataclasses.replace(g, log_scales=np.log(np.random.default_rng(3).uniform(0.005, 0.02, (g.count, 3))).astype(np.float32))
    enc, spatial, deformer = _models(g=g)
    fit = _torch_render(g, _camera(), _background(), REST)
    out = pack_avatar(g, spatial, deformer, enc, _camera(), _background(), tmp_path / "x4.bundle", name="x4",
                      rest_pose=REST, upscale=4)  # fmt: skip
    b = open_bundle(out)
    assert (b.camera.width, b.camera.height, b.camera.fx) == (4 * W, 4 * H, 4 * 70.0)
    frame = _rest_frame(out)
    # exactly the widened Gaussians at the larger camera
    wide = lowpass_for_upscale(g, rest_camera(_camera(), *REST), 4)
    _assert_close_u8(frame, _torch_render(wide, upscale_camera(_camera(), 4), np.array(b.background), REST), "x4 rest frame")
    raw = _torch_render(g, _camera(4), plate_for_camera(_background(), _camera(4)), REST)
    look, broken = _psnr_u8(frame, _upsample(fit, 4)), _psnr_u8(raw, _upsample(fit, 4))
    print(f"against the fit's frame upsampled: widened {look:.1f} dB, as fitted {broken:.1f} dB")
    assert look >= 30.0 and look >= broken + 6.0
    # the widening is the fit's low-pass less the larger frame's, at each Gaussian's depth
    z = (g.means.astype(np.float64) @ rest_camera(_camera(), *REST).world_to_camera[2, :3].T
         + rest_camera(_camera(), *REST).world_to_camera[2, 3])  # fmt: skip
    want = np.sqrt(g.scales().astype(np.float64) ** 2 + SCREEN_LOWPASS_PX2 * (1 - 1 / 16) * (z / 70.0)[:, None] ** 2)
    np.testing.assert_allclose(wide.scales(), want, rtol=1e-5)
    assert lowpass_for_upscale(g, _camera(), 1) is g
    with pytest.raises(InputError, match="upscale must be an integer >= 1; got 0"):
        lowpass_for_upscale(g, _camera(), 0)


def test_screen_lowpass_is_the_kernels():
    from pathlib import Path

    from huma_rt.render._common import SCREEN_LOWPASS_PX2

    header = (Path(__file__).resolve().parents[2] / "kernels" / "raster_math.cuh").read_text()
    assert f"#define HR_EPS2D {SCREEN_LOWPASS_PX2}f" in header
