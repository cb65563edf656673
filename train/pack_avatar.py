"""Pack a trained avatar as an ordinary bundle: the same files, checks and runtime as the demo's.

    q, t = median_pose(data.head_quat, data.head_trans, data.valid_mask())
    camera = art.camera                       # the fit's intrinsics and size, identity extrinsics
    pack_avatar(art.gaussians, art.spatial, art.deformer, encoder, camera, art.background,
                "me.bundle", name="me", rest_pose=(q, t))

Canonical space is the tracked head space (x_cam = R p + t, OpenCV axes). The bundle's world is
that canonical space and its camera's world_to_camera is the person's rest pose, so the runtime
draws the canonical Gaussians (plus the deformer's deltas, which live in canonical space) exactly
where the fit drew them at that pose; the degree-1 SH needs no turning, since the runtime takes
view directions in world space.

The camera decides the size the runtime renders at. The fit's own size (``upscale`` 1) draws
the Gaussians exactly as the fit did. ``upscale`` u > 1 draws them u times larger (camera size and
intrinsics x u, the fit's plate upsampled): every splat was fitted through the rasterizer's fixed
screen low-pass (SCREEN_LOWPASS_PX2, 0.3 px^2 at the fit's pixel size), which at u times the
pixels shrinks u^2 times; splats the fit left thinner than a pixel then break up into specks and
jagged edges (the closed loop at 512 px from a 170 px fit: 26.4 dB against the fit's frame
upsampled, bench/results/train-pack-size-2026-12-07). :func:`lowpass_for_upscale` puts the
missing part of the fit's low-pass into the Gaussians themselves, as an isotropic 3D variance at
each one's depth (as Mip-Splatting's 3D filter does), so the larger frame is the fit's frame
drawn larger (38.1 dB against it upsampled): as sharp as the fit, no sharper.
The networks are exported by huma_rt.export (fp32 + fp16 ONNX, checker, TensorRT op set,
onnxruntime parity) and packed by huma_rt.bundle.pack, exactly as the demo avatar's are.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import Camera, Gaussians

log = logging.getLogger(__name__)

__all__ = ["lowpass_for_upscale", "median_pose", "pack_avatar", "plate_for_camera", "rest_camera", "upscale_camera"]


def median_pose(head_quat: np.ndarray, head_trans: np.ndarray,
                valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The rest pose: (quat [4] wxyz, trans [3]) float64, the median of head_quat [T,4] and
    head_trans [T,3] over the frames ``valid`` [T] bool marks (None: all).

    Translation: per-axis median. Rotation: per-component median of the quaternions turned
    into one hemisphere (q and -q are the same rotation), renormalised; for the few degrees a
    talking head turns this is the rotation halfway through the data, robust to odd frames."""
    q = np.asarray(head_quat, np.float64)
    t = np.asarray(head_trans, np.float64)
    if q.ndim != 2 or q.shape[1] != 4 or t.shape != (q.shape[0], 3):
        raise InputError(f"head_quat must be [T,4] and head_trans [T,3]; got {q.shape}, {t.shape}")
    keep = np.ones(q.shape[0], bool) if valid is None else np.asarray(valid)
    if keep.shape != (q.shape[0],) or keep.dtype != np.bool_:
        raise InputError(f"valid must be a bool array [T] = ({q.shape[0]},); got {keep.dtype} {keep.shape}")
    q, t = q[keep], t[keep]
    norms = np.linalg.norm(q, axis=1)
    if q.shape[0] == 0 or not (np.isfinite(q).all() and np.isfinite(t).all()) or (norms < 1e-6).any():
        raise InputError(f"the rest pose needs at least one valid frame with a finite non-zero quaternion and a "
                         f"finite translation; got {q.shape[0]} valid frames")  # fmt: skip
    q = q / norms[:, None]
    ref = q[np.argmax(np.abs(q[:, 0]))]  # the least-turned frame picks the hemisphere
    q = np.where((q @ ref < 0)[:, None], -q, q)
    mq = np.median(q, 0)
    return mq / np.linalg.norm(mq), np.median(t, 0)


def rest_camera(camera: Camera, quat: np.ndarray, trans: np.ndarray) -> Camera:
    """``camera`` (intrinsics, size; identity extrinsics, as a fit's camera has) with
    world_to_camera = [R(quat) | trans]: canonical points land where that head pose puts them."""
    if not isinstance(camera, Camera):
        raise InputError(f"camera must be a huma_rt.gaussians.Camera; got {type(camera).__name__}")
    if not np.allclose(camera.world_to_camera, np.eye(4), atol=1e-6):
        raise InputError("camera must have identity extrinsics (the fit's camera: poses are model-to-camera); the "
                         f"rest pose sets them. Got world_to_camera {camera.world_to_camera.tolist()}")  # fmt: skip
    q = np.asarray(quat, np.float64)
    t = np.asarray(trans, np.float64)
    if q.shape != (4,) or t.shape != (3,) or not (np.isfinite(q).all() and np.isfinite(t).all()) \
            or np.linalg.norm(q) < 1e-6:  # fmt: skip
        raise InputError(f"rest_pose must be (quat [4] wxyz, finite, non-zero; trans [3] finite); got "
                         f"{np.asarray(quat).tolist()}, {np.asarray(trans).tolist()}")  # fmt: skip
    w, x, y, z = q / np.linalg.norm(q)
    r = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                  [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                  [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])  # fmt: skip
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = r, t
    return Camera(camera.width, camera.height, camera.fx, camera.fy, camera.cx, camera.cy,
                  world_to_camera=w2c.astype(np.float32), near=camera.near, far=camera.far)  # fmt: skip


def plate_for_camera(background: np.ndarray, camera: Camera) -> np.ndarray:
    """The background plate [H,W,3] float32 at ``camera``'s size from ``background`` [h,w,3] in
    [0, 1]: the camera's size itself, or the fit's plate at an integer downscale d of it (h = H // d,
    w = W // d, the fit's area pooling having cut the remainder): upsampled by d (bilinear, pixel
    centres aligned as the pooling's), the cut rows and columns repeating the edge."""
    bg = background
    if not isinstance(bg, np.ndarray) or bg.ndim != 3 or bg.shape[2] != 3:
        raise InputError(f"background must be an [H,W,3] image; got {getattr(bg, 'shape', type(bg).__name__)}")
    bg = np.asarray(bg, np.float32)
    if not np.isfinite(bg).all():
        raise InputError("background must be finite with values in [0, 1]; it holds NaN or Inf")
    if bg.min() < 0 or bg.max() > 1:
        raise InputError(f"background must be finite with values in [0, 1]; got range [{bg.min():g}, {bg.max():g}]")
    big_h, big_w = camera.height, camera.width
    h, w = bg.shape[:2]
    if (h, w) == (big_h, big_w):
        return np.ascontiguousarray(bg)
    d = next((d for d in range(2, big_w // max(w, 1) + 1) if big_w // d == w and big_h // d == h), None)
    if d is None:
        raise InputError(f"background must be the camera's size [{big_h}, {big_w}, 3] or its fit-size plate "
                         f"[{big_h} // d, {big_w} // d, 3] for an integer d; got {list(bg.shape)}")  # fmt: skip
    up = torch.nn.functional.interpolate(torch.from_numpy(bg).permute(2, 0, 1)[None], scale_factor=d,
                                         mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()  # fmt: skip
    out = np.pad(up, ((0, big_h - h * d), (0, big_w - w * d), (0, 0)), mode="edge")
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def lowpass_for_upscale(gaussians: Gaussians, camera: Camera, upscale: int) -> Gaussians:
    """``gaussians`` to draw at ``upscale`` times the pixel size of ``camera`` (the fit's size,
    its world_to_camera the rest pose) so that they look as the fit drew them: each Gaussian's
    covariance gains the isotropic variance SCREEN_LOWPASS_PX2 (1 - 1/u^2) (z / f)^2 (z: its
    depth, f: the fit's focal length in px), the part of the fit's screen low-pass that the
    larger frame's own no longer gives. Rotations and opacities stay (the fit's opacities already
    apply to the widened footprints); scales come back as exp log-scales. Deformed Gaussians (the
    deformer's log-scale deltas scale the widened scales) are widened by the same factor."""
    from huma_rt.render._common import SCREEN_LOWPASS_PX2

    if isinstance(upscale, bool) or not isinstance(upscale, int) or upscale < 1:
        raise InputError(f"upscale must be an integer >= 1; got {upscale!r}")
    if upscale == 1:
        return gaussians
    w2c = np.asarray(camera.world_to_camera, np.float64)
    depth = np.maximum(np.asarray(gaussians.means, np.float64) @ w2c[2, :3] + w2c[2, 3], 0.0)
    focal = 0.5 * (camera.fx + camera.fy)
    var = SCREEN_LOWPASS_PX2 * (1.0 - 1.0 / upscale**2) * (depth / focal) ** 2
    scales = gaussians.scales().astype(np.float64)
    log_scales = 0.5 * np.log(scales**2 + var[:, None])
    return dataclasses.replace(gaussians, log_scales=log_scales.astype(np.float32), scale_activation="exp")


def upscale_camera(camera: Camera, upscale: int) -> Camera:
    """``camera`` with its size and intrinsics times ``upscale`` (pixel edges kept: the fit's
    pixel (i, j) covers the larger one's u x u block from (u i, u j))."""
    u = upscale
    return Camera(camera.width * u, camera.height * u, camera.fx * u, camera.fy * u, camera.cx * u, camera.cy * u,
                  world_to_camera=camera.world_to_camera, near=camera.near, far=camera.far)  # fmt: skip


def _check_models(gaussians, spatial, deformer, encoder) -> None:
    from huma_rt.export.models import AudioEncoder, Deformer, SpatialEncoder, check_compatible

    for name, m, cls in (("encoder", encoder, AudioEncoder), ("spatial", spatial, SpatialEncoder),
                         ("deformer", deformer, Deformer)):  # fmt: skip
        if not isinstance(m, cls):
            raise InputError(f"{name} must be a huma_rt.export.models.{cls.__name__}; got {type(m).__name__}")
    check_compatible(encoder.cfg, deformer.cfg)
    if spatial.cfg.to_dict() != deformer.cfg.to_dict():
        raise InputError(f"spatial encoder and deformer must share one DeformerConfig (the bundle records one); got "
                         f"{spatial.cfg.to_dict()} and {deformer.cfg.to_dict()}")  # fmt: skip
    if not isinstance(gaussians, Gaussians):
        raise InputError(f"gaussians must be huma_rt.gaussians.Gaussians; got {type(gaussians).__name__}")
    gaussians.validate()
    dynamic = gaussians.region != 0
    if not dynamic.any():
        raise InputError(f"gaussians have no dynamic region (all {gaussians.count} region ids are 0): the deformer "
                         "would move nothing; the articulated fit marks the Gaussians it moves")  # fmt: skip
    lo, hi = np.asarray(deformer.cfg.bbox_min), np.asarray(deformer.cfg.bbox_max)
    outside = int((~((gaussians.means[dynamic] >= lo) & (gaussians.means[dynamic] <= hi)).all(1)).sum())
    if outside:  # the tri-plane clamps at its border: legal, but those Gaussians share edge features
        log.warning("pack: %d of %d dynamic Gaussians lie outside the deformer's bbox %s..%s", outside,
                    int(dynamic.sum()), lo.tolist(), hi.tolist())  # fmt: skip


def _check_export(failures: list[str], export_dir: Path, name: str) -> None:
    """Refuse any failed export check except fp16 parity, which only warns (as for the demo): the
    CPU runtime runs the fp32 graphs, and a trained tri-plane's fine features can miss the fp16
    bar of the preload-only spatial graph by a little."""
    hard = [f for f in failures if not (".fp16.onnx" in f and "relative error" in f)]
    if hard:
        raise FormatError(f"export checks of avatar {name!r} failed ({export_dir}): " + "; ".join(hard))
    for f in failures:
        log.warning("pack %s: export %s (fp16 graphs only; the CPU runtime uses fp32)", name, f)


def pack_avatar(gaussians: Gaussians, spatial, deformer, encoder, camera: Camera, background: np.ndarray,
                out: str | Path, *, name: str, rest_pose: tuple[np.ndarray, np.ndarray], upscale: int = 1,
                overwrite: bool = False, archive: bool = False, blink_code: np.ndarray | None = None,
                blink_regions: list[int] | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> Path:  # fmt: skip
    """Write the trained avatar as bundle ``out`` (a folder; ``archive``: one .tar) -> its path.

    gaussians: canonical Gaussians (head space) with region ids, 0 = static, others moved by the
    deformer. spatial, deformer: huma_rt.export.models SpatialEncoder / Deformer sharing one
    DeformerConfig (bbox in canonical units). encoder: the AudioEncoder (the shipped demo one or
    an adapted copy; its code_dim must be the deformer's). camera: intrinsics and size the
    runtime renders at, identity extrinsics. background [h,w,3] float32 in [0, 1]: see
    plate_for_camera. rest_pose: (quat [4] wxyz, trans [3]) model-to-camera, e.g. median_pose of
    the fit's frames. upscale: the bundle renders at ``upscale`` times ``camera``'s size, the
    Gaussians widened by :func:`lowpass_for_upscale` (``camera`` must then be the size they were
    fitted at). blink_code: [code_dim] code of shut eyes the deformer was fitted on
    (articulation_codes.blink_code), or None: the avatar does not blink; blink_regions: the
    region ids a blink moves (fit_articulated.REGION_EYES when the fit labelled the eyes). The modules are put in eval mode. Refuses an existing ``out`` unless
    ``overwrite``. progress(step, done, total): huma_rt.bundle.pack's callback."""
    from huma_rt.export.onnx_export import export_models

    from huma_rt.bundle import AvatarSource, pack

    if not isinstance(name, str) or not name.strip():
        raise InputError(f"name must be a non-empty string; got {name!r}")
    if not isinstance(rest_pose, tuple) or len(rest_pose) != 2:
        raise InputError(f"rest_pose must be a (quat [4], trans [3]) pair; got {rest_pose!r}")
    _check_models(gaussians, spatial, deformer, encoder)
    fit_cam = rest_camera(camera, *rest_pose)
    gaussians = lowpass_for_upscale(gaussians, fit_cam, upscale)
    cam = upscale_camera(fit_cam, upscale)
    plate = plate_for_camera(background, cam)
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"bundle output {out} already exists (pass overwrite=True to replace it)")
    with tempfile.TemporaryDirectory(prefix="huma-pack-avatar-") as tmp:
        export_dir = Path(tmp) / "export"
        result = export_models(export_dir, encoder, spatial, deformer, source=f"trained avatar {name!r}",
                               raise_on_failure=False)  # fmt: skip
        _check_export(result.report.get("failures", []), export_dir, name)
        source = AvatarSource(gaussians=gaussians, camera=cam, background=plate, export_dir=export_dir, name=name,
                              blink_code=blink_code, blink_regions=blink_regions)  # fmt: skip
        path = Path(pack(source, out, archive=archive, overwrite=overwrite, progress=progress))
    log.info("packed trained avatar %r: %d Gaussians (%d dynamic), %dx%d, into %s", name, gaussians.count,
             int(np.count_nonzero(gaussians.region)), cam.width, cam.height, path)  # fmt: skip
    return path
