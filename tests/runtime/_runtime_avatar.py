"""A small avatar for runtime tests: structured random Gaussians, a camera, a seeded export.

``RENDERER`` is the real huma_rt.render.FrameRenderer when it is importable. Otherwise it is
``DotRenderer``, a TEST DOUBLE (labelled as such) standing in for FrameRenderer while the kernels
part has not landed in this tree: it draws each dynamic Gaussian's projected mean as one pixel
over a background frame, allocation-free, so the runtime's own logic (clock, streaming equality,
buffers, no per-frame allocation) is tested against the FrameRenderer contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from huma_rt.bundle import AvatarSource, pack
from huma_rt.gaussians import Camera, Gaussians
from huma_rt.model_config import DeformerConfig, EncoderConfig, MelConfig

W, H = 48, 40


def small_configs() -> tuple[EncoderConfig, DeformerConfig]:
    enc = EncoderConfig(code_dim=8, channels=32, past_frames=2, lookahead_frames=2, mel=MelConfig())
    dfm = DeformerConfig(code_dim=8, plane_channels=4, plane_resolution=8, hidden=16, layers=1)
    return enc, dfm


def export_small(out: Path, seed: int = 0) -> Path:
    from huma_rt.export.models import build_models
    from huma_rt.export.onnx_export import export_models

    enc_cfg, dfm_cfg = small_configs()
    enc, spatial, dfm = build_models(enc_cfg, dfm_cfg, seed=seed)
    export_models(out, enc, spatial, dfm, seed=seed, source="tests: seeded random small models")
    return out


_EXPORTS: dict[int, Path] = {}


def shared_export(tmp_root: Path, seed: int = 0) -> Path:
    """export_small once per test process (tests/runtime, tests/bundle, tests/media share it)."""
    if seed not in _EXPORTS or not _EXPORTS[seed].is_dir():
        _EXPORTS[seed] = export_small(tmp_root / f"export-{seed}", seed)
    return _EXPORTS[seed]


def small_gaussians(n: int = 1500, seed: int = 0) -> Gaussians:
    """A noisy sphere of radius 0.5 at the origin; the front-lower cap (a "mouth") is region 1."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = (0.5 * d + 0.01 * rng.normal(size=(n, 3))).astype(np.float32)
    region = ((d[:, 2] < -0.6) & (d[:, 1] > 0.1)).astype(np.uint8)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    return Gaussians(
        means=means, log_scales=np.full((n, 3), np.log(0.03), np.float32), quats=q,
        opacity_logits=rng.normal(1.0, 0.5, n).astype(np.float32),
        sh=rng.uniform(-0.5, 0.5, (n, 1, 3)).astype(np.float32), region=region,
    )  # fmt: skip


def small_camera() -> Camera:
    w2c = np.eye(4, dtype=np.float32)
    w2c[2, 3] = 2.0  # camera 2 units in front of the sphere, looking along +z
    return Camera(width=W, height=H, fx=50.0, fy=50.0, cx=W / 2, cy=H / 2, world_to_camera=w2c)


def small_background() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x / W, y / H, np.full((H, W), 0.3)], -1).astype(np.float32)


def small_source(export_dir: Path, **kw) -> AvatarSource:
    args = dict(gaussians=small_gaussians(), camera=small_camera(), background=small_background(),
                export_dir=export_dir, name="tiny-test-avatar")  # fmt: skip
    args.update(kw)
    return AvatarSource(**args)


def pack_small(export_dir: Path, out: Path, **kw) -> Path:
    return pack(small_source(export_dir), out, **kw)


class DotRenderer:
    """TEST DOUBLE for huma_rt.render.FrameRenderer (see module docstring). Same constructor and
    ``render(means, quats, log_scales, out) -> (x0, y0, x1, y1)``; allocates only in __init__.

    Draws each dynamic mean as a red pixel whose green byte encodes its sub-pixel x position,
    so motions far below a pixel still change the frame."""

    def __init__(self, camera, gaussians, dynamic, *, background=(0.0, 0.0, 0.0), backend="cpu") -> None:
        h, w = camera.height, camera.width
        bg = np.asarray(background, np.float32)
        bg = np.broadcast_to(bg, (h, w, 3)) if bg.ndim == 1 else bg
        self._static = np.ascontiguousarray(np.clip(bg * 255.0 + 0.5, 0, 255).astype(np.uint8)).reshape(-1)
        m = camera.world_to_camera.astype(np.float32)
        self._rows = [np.ascontiguousarray(m[i, :3]) for i in range(3)]
        self._t = [np.float32(m[i, 3]) for i in range(3)]
        self._f = (np.float32(camera.fx), np.float32(camera.fy))
        self._c = (np.float32(camera.cx), np.float32(camera.cy))
        self._lim = (np.float32(w - 1), np.float32(h - 1))
        nd = int(np.count_nonzero(dynamic))
        self._xyz = [np.empty(nd, np.float32) for _ in range(3)]
        self._fl = [np.empty(nd, np.float32) for _ in range(2)]
        self._iu, self._iv = np.empty(nd, np.int64), np.empty(nd, np.int64)
        self._idx = np.empty(nd, np.int64)
        self._prev = np.zeros(nd, np.int64)
        self._vals = np.empty(nd, np.uint8)
        self._red = np.full(nd, 255, np.uint8)
        self._w, self._h = w, h
        self._one, self._three, self._w64 = np.int64(1), np.int64(3), np.int64(w)
        self._zero, self._255 = np.float32(0), np.float32(255)
        self._first = True
        self.stage_times = {"project": 0.0, "sort": 0.0, "blend": 0.0, "composite": 0.0}

    def render(self, means, quats, log_scales, out):
        flat = out.reshape(-1)
        if self._first:
            flat[:] = self._static
            self._first = False
        else:  # restore last frame's red and green bytes
            for i in (0, 1):
                np.add(self._prev, i, out=self._idx)
                np.take(self._static, self._idx, out=self._vals)
                np.put(flat, self._idx, self._vals)
        x, y, z = self._xyz
        for i in range(3):
            np.dot(means, self._rows[i], out=self._xyz[i])
            np.add(self._xyz[i], self._t[i], out=self._xyz[i])
        uv = (x, y)
        for i in (0, 1):
            np.divide(uv[i], z, out=uv[i])
            np.multiply(uv[i], self._f[i], out=uv[i])
            np.add(uv[i], self._c[i], out=uv[i])
            np.clip(uv[i], self._zero, self._lim[i], out=uv[i])
            np.floor(uv[i], out=self._fl[i])
        np.copyto(self._iu, self._fl[0], casting="unsafe")
        np.copyto(self._iv, self._fl[1], casting="unsafe")
        np.multiply(self._iv, self._w64, out=self._idx)
        np.add(self._idx, self._iu, out=self._idx)
        np.multiply(self._idx, self._three, out=self._idx)
        np.put(flat, self._idx, self._red)
        self._prev[:] = self._idx
        np.subtract(x, self._fl[0], out=x)  # sub-pixel x in [0, 1) -> green
        np.multiply(x, self._255, out=x)
        np.copyto(self._vals, x, casting="unsafe")
        np.add(self._idx, self._one, out=self._idx)
        np.put(flat, self._idx, self._vals)
        return (0, 0, self._w, self._h)


def renderer_arg():
    """What tests pass as Avatar.load(renderer=...): the real renderer when present, else the double."""
    try:
        from huma_rt.render import Renderer  # noqa: F401
    except ImportError:
        return DotRenderer
    return "cpu"
