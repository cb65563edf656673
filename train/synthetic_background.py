"""Backdrops for synthetic clips: the bundle's own, a textured variant of it, or a flat colour.

"textured" (the default) is the bundle's studio gradient modulated by a few seeded, slow plane
waves (+-8 %) plus a faint blurred grain (+-2 %): enough structure that background pixels are
not interchangeable (optical flow, matting and trackers see a static scene), soft enough that
H.264 keeps it.
"""

from __future__ import annotations

import numpy as np

from huma_rt.errors import InputError

KINDS = ("textured", "bundle")


def check_background_spec(spec) -> None:
    """InputError unless ``spec`` is "textured", "bundle" or an (r, g, b) triple in [0, 1]."""
    if isinstance(spec, str):
        if spec not in KINDS:
            raise InputError(f"background must be one of {list(KINDS)} or an (r, g, b) triple in [0, 1]; got {spec!r}")
        return
    try:
        arr = np.asarray(spec, np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (3,) or not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise InputError(f"background must be one of {list(KINDS)} or an (r, g, b) triple in [0, 1]; got {spec!r}")


def make_background(spec, bundle_background, width: int, height: int, seed: int) -> np.ndarray:
    """The backdrop as an [H,W,3] float32 image in [0, 1] (a colour is filled in, so the truth
    always holds an image)."""
    check_background_spec(spec)
    if not isinstance(spec, str):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(spec, np.float32), (height, width, 3)))
    if isinstance(bundle_background, np.ndarray):
        base = np.asarray(bundle_background, np.float32)
    else:
        base = np.broadcast_to(np.asarray(bundle_background, np.float32), (height, width, 3))
    if spec == "bundle":
        return np.ascontiguousarray(base, np.float32)
    return np.ascontiguousarray(np.clip(base * (1 + texture(width, height, seed)[..., None]), 0, 1), np.float32)


def texture(width: int, height: int, seed: int) -> np.ndarray:
    """[H,W] float32 relative brightness change: slow waves (+-0.08) + blurred grain (+-0.02)."""
    rng = np.random.default_rng([seed, 2])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    waves = np.zeros((height, width))
    for _ in range(6):
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(40, 160)  # pixels
        phase = rng.uniform(0, 2 * np.pi)
        waves += np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    waves *= 0.08 / 6
    grain = rng.normal(size=(height + 2, width + 2))
    blurred = sum(grain[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)) / 9
    return (waves + 0.02 * np.clip(blurred / 0.33, -1, 1)).astype(np.float32)
