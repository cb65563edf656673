"""Shared pieces of the render API: the result type, uint8 conversion, camera packing,
background validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError
from huma_rt.gaussians import Camera

TILE = 16
BACKENDS = ("cpu", "cuda", "emulated", "gsplat")
# Starting size of the tile-intersection buffers per Gaussian: a dense 50k-Gaussian head at
# 512x512 needs about 8.3, so 16 leaves room and the first frame never grows the buffer.
ISECTS_PER_GAUSSIAN = 16
SCALE_ACTIVATION_CODES = {"exp": 0, "softplus": 1}
# Every backend adds this variance (px^2) to each projected covariance's diagonal (HR_EPS2D in
# kernels/raster_math.cuh, gsplat's eps2d): splats are never thinner than ~0.55 px.
SCREEN_LOWPASS_PX2 = 0.3


@dataclass
class RenderResult:
    """One rendered image.

    rgb: [H,W,3] float32 composited over the background; alpha: [H,W] float32 = 1 - T;
    depth: [H,W] float32 expected depth sum(z * w) / alpha (gsplat's "ED"), or None.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray | None = None


def to_uint8(rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float RGB [..., 3] in [0, 1] -> uint8 round(clip(v, 0, 1) * 255), into ``out`` if given."""
    rgb = np.asarray(rgb)
    if rgb.ndim < 1 or rgb.shape[-1] != 3:
        raise InputError(f"rgb must have a last axis of 3 channels; got shape {rgb.shape}")
    if out is None:
        out = np.empty(rgb.shape, dtype=np.uint8)
    elif out.shape != rgb.shape or out.dtype != np.uint8:
        raise InputError(f"out must be uint8 of shape {rgb.shape}; got {out.dtype} {out.shape}")
    tmp = np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5
    np.floor(tmp, out=tmp)
    out[...] = tmp
    return out


def tile_grid(camera: Camera) -> tuple[int, int]:
    """(tiles_x, tiles_y) of 16x16 tiles covering the image."""
    return (camera.width + TILE - 1) // TILE, (camera.height + TILE - 1) // TILE


def camera_params(camera: Camera) -> np.ndarray:
    """The kernels' flat camera block (raster_math.cuh HR_CAMERA_PARAMS): [23] float32."""
    if not isinstance(camera, Camera):
        raise InputError(f"camera must be a huma_rt.gaussians.Camera; got {type(camera).__name__}")
    m = camera.world_to_camera.astype(np.float64)
    rot, t = m[:3, :3], m[:3, 3]
    campos = -rot.T @ t  # camera centre in world space (rigid world-to-camera)
    if not np.allclose(m[3], [0, 0, 0, 1]):
        raise InputError(f"world_to_camera must have a last row of [0, 0, 0, 1]; got {m[3]}")
    return np.concatenate(
        [rot.reshape(-1), t, campos,
         [camera.fx, camera.fy, camera.cx, camera.cy, camera.near, camera.far,
          camera.width, camera.height]]
    ).astype(np.float32)


def check_background(background, camera: Camera) -> tuple[np.ndarray | None, np.ndarray]:
    """Normalise a background: None (black), an RGB triple, or an [H,W,3] float32 image.

    Returns (image or None, colour [3] float32)."""
    colour = np.zeros(3, dtype=np.float32)
    if background is None:
        return None, colour
    arr = np.asarray(background)
    if arr.shape == (3,):
        if not np.isfinite(arr.astype(np.float64)).all():
            raise InputError(f"background colour must be finite; got {arr.tolist()}")
        colour[:] = arr
        return None, colour
    shape = (camera.height, camera.width, 3)
    if arr.shape != shape:
        raise InputError(
            f"background must be an RGB triple or an image of shape {shape} (H, W, 3); "
            f"got shape {arr.shape}"
        )
    if arr.dtype != np.float32:
        raise InputError(f"background image must be float32; got {arr.dtype}")
    return np.ascontiguousarray(arr), colour


def check_gaussians(g) -> None:
    """The kernels read the arrays as raw C-contiguous buffers: refuse anything else by name."""
    from huma_rt.gaussians import Gaussians

    if not isinstance(g, Gaussians):
        raise InputError(f"gaussians must be a huma_rt.gaussians.Gaussians; got {type(g).__name__}")
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        arr = getattr(g, name)
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float32 or not arr.flags.c_contiguous:
            raise InputError(f"gaussians.{name} must be a C-contiguous float32 array; got "
                             f"{getattr(arr, 'dtype', type(arr).__name__)}"
                             f"{'' if getattr(arr, 'flags', None) is None or arr.flags.c_contiguous else ' (non-contiguous)'}")
    n = g.means.shape[0]
    shapes = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,)}
    for name, shape in shapes.items():
        if getattr(g, name).shape != shape:
            raise InputError(f"gaussians.{name} must have shape {shape}; got {getattr(g, name).shape}")
    if g.sh.ndim != 3 or g.sh.shape[0] != n or g.sh.shape[1] not in (1, 4, 9, 16) or g.sh.shape[2] != 3:
        raise InputError(f"gaussians.sh must have shape ({n}, 1|4|9|16, 3); got {g.sh.shape}")
