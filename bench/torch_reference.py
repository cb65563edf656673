"""A plain PyTorch-eager talking-avatar pipeline: the yardstick huma-rt is compared against.

Same avatar, same audio, same models as huma-rt, but written the way a researcher would run it:
the export/ models in torch eager, gsplat 1.5.3's pure-PyTorch projection and spherical
harmonics (``gsplat.cuda._torch_impl``, CPU) and a tile-free, vectorised front-to-back
compositor in plain torch. Every frame re-projects and re-composites all Gaussians (no static
layer, no dynamic-region tiles, no preallocated buffers).

Per frame (stage names as the runtime's ``stage_times``):
  features  log-mel window of the frame (torch front end of export/)
  encode    AudioEncoder on that window -> motion code [1, D]
  deform    Deformer on the dynamic Gaussians' preloaded features + applying the deltas
  project   activations, 3D covariance, gsplat torch projection, SH colours
  sort      depth order + (pixel, Gaussian) pairs + stable sort by pixel (in bands of rows)
  blend     alpha per pair, front-to-back transmittance with early stop, colour accumulation
  composite over the background, float -> uint8 RGB

Compositing conventions (issue 3, gsplat 1.5.3): eps2d 0.3 (inside gsplat's projection), pixel
centres at +0.5, opacity-aware extent min(3.33, sqrt(2 ln(255 o))), alpha = min(0.999,
o exp(-sigma)) skipped when sigma < 0 or alpha < 1/255, a pixel stops (exclusive) when
T (1 - alpha) <= 1e-4.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError
from huma_rt.gaussians import REGION_STATIC, Camera, Gaussians

log = logging.getLogger(__name__)

STAGES = ("features", "encode", "deform", "project", "sort", "blend", "composite")
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_STOP = 1e-4
BAND_ROWS = 128


@dataclass
class Projected:
    """Per-Gaussian screen-space data of one frame (torch tensors, CPU, float32 unless noted).

    mean2d [N,2]; conic [N,3] (a, b, c of the inverse 2D covariance); depth [N];
    radius [N,2] int64 pixel half-extent per axis (0 = not drawn); opacity [N]; rgb [N,3].
    """

    mean2d: object
    conic: object
    depth: object
    radius: object
    opacity: object
    rgb: object


def project(means, quats, log_scales, opacity_logits, sh, camera: Camera, scale_activation: str = "exp") -> Projected:
    """Project Gaussians with gsplat's torch reference (means [N,3], quats [N,4] wxyz,
    log_scales [N,3], opacity_logits [N], sh [N,K,3]; torch float32) -> Projected."""
    import torch
    from gsplat.cuda._torch_impl import (
        _fully_fused_projection,
        _quat_scale_to_covar_preci,
        _spherical_harmonics,
    )

    scales = torch.exp(log_scales) if scale_activation == "exp" else torch.nn.functional.softplus(log_scales)
    opacity = torch.sigmoid(opacity_logits)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    viewmat = torch.from_numpy(camera.world_to_camera)[None]  # [1,4,4]
    K = torch.from_numpy(np.ascontiguousarray(camera.intrinsics, dtype=np.float32))[None]  # [1,3,3]
    radii, mean2d, depth, conic, _ = _fully_fused_projection(
        means, covars, viewmat, K, camera.width, camera.height, eps2d=0.3,
        near_plane=camera.near, far_plane=camera.far,
    )
    mean2d, depth, conic, radii = mean2d[0], depth[0], conic[0], radii[0]
    # opacity-aware extent (tighter than gsplat's torch 3.33 sigma) from the dilated 2D covariance
    a, b, c = conic.unbind(-1)
    det_conic = (a * c - b * b).clamp(min=1e-20)
    var_x, var_y = c / det_conic, a / det_conic
    visible = (radii > 0).all(-1) & (opacity >= ALPHA_MIN)
    extend = torch.sqrt(2.0 * torch.log((opacity * 255.0).clamp(min=1.0))).clamp(max=3.33)
    radius = torch.stack([torch.ceil(extend * var_x.sqrt()), torch.ceil(extend * var_y.sqrt())], -1)
    inside = (
        (mean2d[:, 0] + radius[:, 0] > 0) & (mean2d[:, 0] - radius[:, 0] < camera.width)
        & (mean2d[:, 1] + radius[:, 1] > 0) & (mean2d[:, 1] - radius[:, 1] < camera.height)
    )
    radius = torch.where((visible & inside)[:, None], radius, torch.zeros_like(radius)).to(torch.int64)
    w2c = torch.from_numpy(camera.world_to_camera).double()
    cam_centre = (-w2c[:3, :3].T @ w2c[:3, 3]).float()
    degree = int(round(math.sqrt(sh.shape[1]))) - 1
    rgb = (_spherical_harmonics(degree, means - cam_centre, sh) + 0.5).clamp(min=0.0)
    return Projected(mean2d, conic, depth, radius, opacity, rgb)


@dataclass
class Boxes:
    """Drawn Gaussians in front-to-back order and their clipped pixel boxes [x0, x1) x [y0, y1).

    gid [M] int64 (index into the projected arrays); x0, x1, y0, y1 [M] int32.
    """

    gid: object
    x0: object
    x1: object
    y0: object
    y1: object


def screen_boxes(p: Projected, width: int, height: int) -> Boxes:
    """Depth-sort the drawn Gaussians and clip their boxes to the image."""
    import torch

    drawn = torch.nonzero((p.radius > 0).all(-1)).squeeze(1)
    drawn = drawn[torch.argsort(p.depth[drawn], stable=True)]  # front to back
    m = p.mean2d[drawn]
    r = p.radius[drawn].to(m.dtype)

    def edge(v, limit):
        return v.clamp(0, limit).to(torch.int32)

    return Boxes(drawn, edge(torch.floor(m[:, 0] - r[:, 0]), width), edge(torch.ceil(m[:, 0] + r[:, 0]), width),
                 edge(torch.floor(m[:, 1] - r[:, 1]), height), edge(torch.ceil(m[:, 1] + r[:, 1]), height))


def pixel_pairs(boxes: Boxes, width: int, row0: int, row1: int):
    """(pixel id [P] int32, Gaussian id [P] int64) for the image rows [row0, row1): every pixel of
    every box there, Gaussians front to back within each pixel (stable sort by pixel id)."""
    import torch

    sel = torch.nonzero((boxes.y0 < row1) & (boxes.y1 > row0)).squeeze(1)  # keeps depth order
    x0, y0 = boxes.x0[sel], boxes.y0[sel].clamp(min=row0)
    bw = boxes.x1[sel] - x0
    counts = bw * (boxes.y1[sel].clamp(max=row1) - y0)
    # int32 pair arrays: half the memory traffic of int64 (pixel ids < 16384^2 fit)
    slot = torch.repeat_interleave(torch.arange(sel.numel(), dtype=torch.int32), counts)  # [P] -> sel
    start = (torch.cumsum(counts, 0) - counts).to(torch.int32)
    k = torch.arange(slot.numel(), dtype=torch.int32) - start[slot]
    wk = bw[slot]
    pix = (y0[slot] + k // wk) * width + x0[slot] + k % wk
    pix, order = torch.sort(pix, stable=True)
    return pix, boxes.gid[sel[slot[order]]]


def blend(p: Projected, pix, gid, width: int, rgb_out, log_t_out) -> None:
    """Front-to-back compositing of sorted pairs, accumulated into rgb_out [H*W,3] float32
    (premultiplied colour) and log_t_out [H*W] float64 (log transmittance) at their pixels."""
    import torch

    px = (pix % width).to(torch.float32) + 0.5
    py = (pix // width).to(torch.float32) + 0.5
    dx = px - p.mean2d[gid, 0]
    dy = py - p.mean2d[gid, 1]
    a, b, c = p.conic[gid].unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = (p.opacity[gid] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma < 0) | (alpha < ALPHA_MIN), torch.zeros_like(alpha), alpha)
    # segmented exclusive product of (1 - alpha) per pixel, in log space and float64
    log1m = torch.log1p(-alpha.double())
    cs = torch.cumsum(log1m, 0)
    first = torch.ones_like(pix, dtype=torch.bool)
    first[1:] = pix[1:] != pix[:-1]
    seg = torch.cumsum(first.to(torch.int64), 0) - 1
    base = (cs - log1m)[first][seg]  # log T accumulated before each pixel's first pair
    t_before = torch.exp(cs - log1m - base)
    t_after = t_before * (1.0 - alpha.double())
    keep = t_after > T_STOP  # T only falls, so the first failure ends the pixel (exclusive)
    weight = torch.where(keep, alpha.double() * t_before, torch.zeros_like(t_before)).float()
    rgb_out.index_add_(0, pix, weight[:, None] * p.rgb[gid])
    log_t_out.index_add_(0, pix, torch.where(keep, log1m, torch.zeros_like(log1m)))


def rasterize_bands(p: Projected, width: int, height: int, band: int = BAND_ROWS):
    """Sort + blend, band by band -> (rgb [H*W,3] f32 premultiplied, T [H*W] f32, sort s, blend s).

    Bands of rows keep the pair arrays a few MB (reused by the allocator) instead of hundreds of
    MB of fresh pages per frame; the result does not depend on the band height.
    """
    import torch

    t0 = time.perf_counter()
    boxes = screen_boxes(p, width, height)
    sort_s, blend_s = time.perf_counter() - t0, 0.0
    rgb = torch.zeros((width * height, 3), dtype=torch.float32)
    log_t = torch.zeros(width * height, dtype=torch.float64)
    for row in range(0, height, band):
        t0 = time.perf_counter()
        pix, gid = pixel_pairs(boxes, width, row, min(row + band, height))
        t1 = time.perf_counter()
        if pix.numel():
            blend(p, pix, gid, width, rgb, log_t)
        sort_s += t1 - t0
        blend_s += time.perf_counter() - t1
    return rgb, torch.exp(log_t).float(), sort_s, blend_s


def composite(rgb, transmittance, background, width: int, height: int) -> np.ndarray:
    """Premultiplied rgb [H*W,3] + T [H*W] over background [H*W,3] -> uint8 [H,W,3] (rounded)."""
    import torch

    img = rgb + transmittance[:, None] * background
    return (img.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).reshape(height, width, 3).numpy()


def render(gaussians: Gaussians, camera: Camera, background: np.ndarray | tuple = (0.0, 0.0, 0.0)) -> np.ndarray:
    """One full-frame render of ``gaussians`` -> uint8 [H,W,3] (the reference renderer alone)."""
    import torch

    g = gaussians
    with torch.inference_mode():
        p = project(*(torch.from_numpy(a) for a in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)),
                    camera, g.scale_activation)
        rgb, t, _, _ = rasterize_bands(p, camera.width, camera.height)
        return composite(rgb, t, _background(background, camera), camera.width, camera.height)


def _background(background, camera: Camera):
    import torch

    h, w = camera.height, camera.width
    bg = np.array(background, dtype=np.float32)  # a copy: bundle arrays are read-only maps
    if bg.shape == (3,):
        bg = np.broadcast_to(bg, (h, w, 3))
    if bg.shape != (h, w, 3):
        raise InputError(f"background must be an RGB triple or a [{h}, {w}, 3] image; got shape {bg.shape}")
    return torch.from_numpy(np.ascontiguousarray(bg, dtype=np.float32).reshape(h * w, 3))


def warm_until_stable(fn, *, min_calls: int = 10, max_calls: int = 400, max_seconds: float = 30.0,
                      settle: int = 5) -> int:
    """Call ``fn`` until ``settle`` calls in a row take < 2x the fastest seen (or a limit hits).

    Returns the number of calls. Torch eager's first few dozen calls of a small conv net take
    ~100x its steady time on this CPU (measured: ~200 ms -> ~1 ms for the encoder), so a fixed
    two- or three-call warm-up would time torch's warm-up, not torch.
    """
    best, streak, calls = float("inf"), 0, 0
    t_end = time.perf_counter() + max_seconds
    while calls < max_calls and time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        calls += 1
        best = min(best, dt)
        streak = streak + 1 if dt < 2 * best else 0
        if calls >= min_calls and streak >= settle:
            break
    return calls


class TorchReferencePipeline:
    """audio -> frames with the export/ models in torch eager and the torch reference renderer.

    ``encoder``, ``spatial``, ``deformer``: the export/ torch modules (eval mode).
    ``gaussians``: the avatar (region != 0 marks the dynamic Gaussians the deformer moves);
    ``camera``; ``background``: [H,W,3] float32 in [0,1] or an RGB triple.
    ``stage_times``: seconds per stage of the last frame (keys: STAGES, plus "render" = the four
    render stages together, like the runtime's session).
    """

    def __init__(self, encoder, spatial, deformer, gaussians: Gaussians, camera: Camera,
                 background: np.ndarray | tuple = (0.0, 0.0, 0.0)) -> None:
        import torch

        if encoder.cfg.code_dim != deformer.cfg.code_dim:
            raise InputError(f"encoder code_dim {encoder.cfg.code_dim} != deformer code_dim {deformer.cfg.code_dim}")
        self.encoder, self.deformer = encoder.eval(), deformer.eval()
        self.cfg = encoder.cfg
        self.camera = camera
        self.gaussians = gaussians
        g = gaussians
        self._means, self._quats, self._log_scales, self._opacity_logits, self._sh = (
            torch.from_numpy(a.copy()) for a in (g.means, g.quats, g.log_scales, g.opacity_logits, g.sh)
        )
        self._dynamic = torch.from_numpy(np.nonzero(g.region != REGION_STATIC)[0])
        self._background = _background(background, camera)
        with torch.inference_mode():
            # canonical Gaussians never move: the spatial features are a preload product here too
            # (an all-static avatar has nothing to deform: the grid_sample export cannot take N=0)
            self._feat = spatial.eval()(self._means[self._dynamic]) if self._dynamic.numel() else None
        self.stage_times: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        log.info("torch reference: %d Gaussians (%d dynamic), %dx%d", g.count, self._dynamic.numel(),
                 camera.width, camera.height)

    def warmup(self, max_seconds: float = 30.0) -> int:
        """Warm the nets (front end, encoder, deformer) until their time settles; returns calls."""
        import torch

        window = torch.zeros((1, self.window_samples))

        def nets():
            code = self.encoder(self.encoder.logmel(window))[:, 0]
            if self._feat is not None:
                self.deformer(self._feat, code)

        with torch.inference_mode():
            return warm_until_stable(nets, max_seconds=max_seconds)

    @property
    def window_samples(self) -> int:
        """Audio samples one frame's mel window covers (receptive_mels frames of the front end)."""
        mel = self.cfg.mel
        return (self.cfg.receptive_mels - 1) * mel.hop + mel.n_fft

    def pad_audio(self, audio: np.ndarray) -> np.ndarray:
        """audio [S] float32 16 kHz -> padded [S'] so frame t's window starts at sample 640 t."""
        import torch

        if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.dtype != np.float32:
            desc = f"{audio.dtype} {audio.shape}" if isinstance(audio, np.ndarray) else type(audio).__name__
            raise InputError(f"audio must be a 1-D float32 array at 16 kHz; got {desc}")
        with torch.inference_mode():
            return self.encoder.pad_audio(torch.from_numpy(audio)[None])[0].numpy()

    def frame(self, padded: np.ndarray, t: int) -> np.ndarray:
        """Frame ``t`` of padded audio (from ``pad_audio``) -> uint8 [H,W,3]; fills stage_times."""
        import torch

        st = self.stage_times
        spf = self.cfg.samples_per_frame
        with torch.inference_mode():
            t0 = time.perf_counter()
            window = torch.from_numpy(padded[spf * t: spf * t + self.window_samples])[None]
            mel = self.encoder.logmel(window)  # [1, receptive_mels, n_mels]
            t1 = time.perf_counter()
            code = self.encoder(mel)[:, 0]  # [1, D]
            t2 = time.perf_counter()
            means, quats, log_scales = self._means, self._quats, self._log_scales
            if self._feat is not None:
                dmu, dquat, dscale = self.deformer(self._feat, code)
                means = means.index_add(0, self._dynamic, dmu[0])
                quats = quats.index_add(0, self._dynamic, dquat[0])
                log_scales = log_scales.index_add(0, self._dynamic, dscale[0])
            t3 = time.perf_counter()
            p = project(means, quats, log_scales, self._opacity_logits, self._sh, self.camera,
                        self.gaussians.scale_activation)
            t4 = time.perf_counter()
            rgb, trans, sort_s, blend_s = rasterize_bands(p, self.camera.width, self.camera.height)
            t6 = time.perf_counter()
            t5 = t4 + sort_s  # the bands interleave sort and blend; their sums split the interval
            t6 = t5 + blend_s + (t6 - t4 - sort_s - blend_s)
            out = composite(rgb, trans, self._background, self.camera.width, self.camera.height)
            t7 = time.perf_counter()
        for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t5, t6), (t1, t2, t3, t4, t5, t6, t7), strict=True):
            st[name] = b - a
        st["render"] = t7 - t3  # project + sort + blend + composite, as the runtime's "render"
        return out

    def frames(self, audio: np.ndarray) -> Iterator[np.ndarray]:
        """audio [S] float32 at 16 kHz -> one uint8 frame per 640 samples (ceil), in order."""
        padded = self.pad_audio(audio)
        for t in range(-(-audio.shape[0] // self.cfg.samples_per_frame)):
            yield self.frame(padded, t)
