"""The demo avatar's frame chain with a head pose: mel window -> code -> deltas -> posed -> image.

The runtime's Session has no head pose (its renderer redraws only the dynamic tiles of a fixed
head), so this module rebuilds the same chain from the runtime's lower-level public pieces: the
bundle (``open_bundle``), the runners (``open_runner``, bound exactly as a Session binds them),
and the whole-image ``Renderer`` which also returns the alpha matte. With the identity pose a
frame equals the Session's frame (tests/train/test_synthetic.py checks it pixel for pixel).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from huma_rt.audio.features import offline_windows
from huma_rt.backends import open_runner
from huma_rt.bundle import open_bundle
from huma_rt.errors import InputError
from huma_rt.gaussians import Gaussians
from huma_rt.render import Renderer
from huma_rt.runtime.preload import dynamic_rows

from .synthetic_pose import Poser

log = logging.getLogger(__name__)


class PosedAvatar:
    """A bundle's networks and Gaussians, rendering frames at any head pose (CPU, fp32 graphs).

    background: [H,W,3] float32 image, an RGB triple or None (black): what ``Renderer`` takes;
    the attribute may be replaced between frames.
    threads: onnxruntime and renderer threads (None: their defaults). rotate_sh: see Poser.
    Buffers are allocated once; ``render`` returns views of them, valid until the next call.
    """

    def __init__(self, bundle: str | Path, background, *, threads: int | None = None, rotate_sh: bool = True) -> None:
        b = open_bundle(bundle)
        self.bundle = b
        self.camera = b.camera
        self.encoder_config = cfg = b.encoder
        self.background = background
        g = b.gaussians()
        self.rows = dynamic_rows(g.region)
        nd = int(self.rows.size)
        self._canon = Gaussians(  # owned copies: the dynamic rows are overwritten per frame
            means=np.array(g.means, np.float32), log_scales=np.array(g.log_scales, np.float32),
            quats=np.array(g.quats, np.float32), opacity_logits=np.array(g.opacity_logits, np.float32),
            sh=np.array(g.sh, np.float32), region=np.array(g.region), scale_activation=g.scale_activation,
        )  # fmt: skip
        self._bases = tuple(np.ascontiguousarray(a[self.rows], np.float32) for a in (g.means, g.quats, g.log_scales))
        runners = {n: open_runner(b.model_file(n, "fp32"), backend="onnxruntime", device="cpu", threads=threads)
                   for n in ("spatial", "encoder", "deformer")}  # fmt: skip
        feat = np.zeros((nd, b.deformer.hidden), np.float32)
        spatial = runners["spatial"]
        spatial.bind(inputs={"means": self._bases[0]}, outputs={"feat": feat})
        spatial.run()
        spatial.close()
        # the Session's buffers and bindings, so codes and deltas are bit for bit the Session's
        self._mel = np.zeros((1, cfg.receptive_mels, cfg.mel.n_mels), np.float32)
        self.code = np.zeros((1, 1, cfg.code_dim), np.float32)
        self._deltas = tuple(np.zeros((1, nd, k), np.float32) for k in (3, 4, 3))
        self._encoder, self._deformer = runners["encoder"], runners["deformer"]
        self._encoder.bind(inputs={"mel": self._mel}, outputs={"code": self.code})
        self._deformer.bind(inputs={"feat": feat, "code": self.code.reshape(1, cfg.code_dim)},
                            outputs=dict(zip(("dmu", "dquat", "dscale"), self._deltas, strict=True)))  # fmt: skip
        self._posed = tuple(np.empty((nd, k), np.float32) for k in (3, 4, 3))
        self._poser = Poser(g.count, g.sh.shape[1], rotate_sh)
        p = self._poser
        p.apply(self._canon.means, self._canon.quats, self._canon.sh, np.array([1.0, 0, 0, 0]), np.zeros(3))
        self._frame_g = Gaussians(means=p.means, log_scales=self._canon.log_scales, quats=p.quats,
                                  opacity_logits=self._canon.opacity_logits, sh=p.sh, region=self._canon.region,
                                  scale_activation=g.scale_activation)  # fmt: skip
        self._renderer = Renderer(b.camera, capacity=g.count, threads=threads or 0)
        h, w = b.camera.height, b.camera.width
        self._rgb_f = np.zeros((h, w, 3), np.float32)
        self.rgb = np.zeros((h, w, 3), np.uint8)
        self.alpha = np.zeros((h, w), np.float32)

    @property
    def bundle_id(self) -> str:
        """sha256 of the bundle's manifest (which holds every file's sha256): the avatar's identity."""
        text = json.dumps(self.bundle.manifest, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def size(self) -> tuple[int, int]:
        return self.camera.width, self.camera.height

    def encode(self, window: np.ndarray) -> np.ndarray:
        """window [receptive_mels, n_mels] float32 -> the frame's motion code [code_dim] (a view)."""
        self._mel[0] = window
        self._encoder.run()
        return self.code[0, 0]

    def render(self, quat_w: np.ndarray, trans_w: np.ndarray, code: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Deform by ``code`` [code_dim] (default: the last ``encode``), pose by the world pose
        (quat [4] wxyz, trans [3]), render -> (rgb [H,W,3] uint8, alpha [H,W] float32), views."""
        if code is not None:
            code = np.asarray(code, np.float32)
            if code.shape != (self.encoder_config.code_dim,) or not np.isfinite(code).all():
                raise InputError(f"code must be finite with shape ({self.encoder_config.code_dim},); got {code.shape}")
            self.code[0, 0] = code
        self._deformer.run()
        g = self._canon
        for base, delta, posed in zip(self._bases, self._deltas, self._posed, strict=True):
            np.add(base, delta[0], out=posed)  # the Session's sum, same rounding
        g.means[self.rows], g.quats[self.rows], g.log_scales[self.rows] = self._posed
        self._poser.apply(g.means, g.quats, g.sh, quat_w, trans_w)
        res = self._renderer.render(self._frame_g, background=self.background, out=self._rgb_f)
        rgb = self._rgb_f  # uint8 = floor(clip(v, 0, 1) * 255 + 0.5), as the runtime converts
        np.clip(rgb, 0.0, 1.0, out=rgb)
        rgb *= np.float32(255.0)
        rgb += np.float32(0.5)
        np.floor(rgb, out=rgb)
        np.copyto(self.rgb, rgb, casting="unsafe")
        np.copyto(self.alpha, res.alpha)
        return self.rgb, self.alpha

    def window_at(self, pcm: np.ndarray, index: int) -> np.ndarray:
        """The mel window [receptive_mels, n_mels] of frame ``index`` of 16 kHz speech ``pcm`` [S],
        as a stream would compute it: frame t shows samples [t * spf, (t + 1) * spf), spf =
        samples per frame. Only the audio around the frame is read (enough past context that
        the cut never reaches the window, one frame more than the lookahead after it)."""
        cfg = self.encoder_config
        spf = cfg.samples_per_frame
        frames = -(-pcm.shape[0] // spf)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < frames:
            raise InputError(f"frame index must be an integer in [0, {frames}) for {pcm.shape[0]} samples; got {index!r}")
        first = max(0, int(index) - cfg.past_frames - 2)  # whole frames, so mel blocks stay aligned
        seg = np.ascontiguousarray(pcm[first * spf : (int(index) + 2) * spf + cfg.lookahead_samples], np.float32)
        return offline_windows(seg, cfg)[int(index) - first]

    def close(self) -> None:
        for r in (self._encoder, self._deformer):
            r.close()
