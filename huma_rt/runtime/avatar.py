"""Avatar: a bundle loaded once (networks, splat buffers, precomputed features), many sessions.

>>> avatar = Avatar.load("voice_bundle/")          # preload, timed in avatar.preload_report
>>> session = avatar.session()
>>> session.push_audio(pcm_chunk)                   # any chunk size, 16 kHz (others resampled)
>>> for frame in session.frames(): show(frame.rgb)  # rgb valid until the next frame
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt.backends import open_runner
from huma_rt.bundle import Bundle, open_bundle
from huma_rt.errors import InputError
from huma_rt.runtime.audio_input import check_rate, to_mono
from huma_rt.runtime.blink import BlinkSchedule, blink_mask, check_blinks
from huma_rt.runtime.frame import Frame
from huma_rt.runtime.preload import (
    PreloadReport,
    RendererFactory,
    dynamic_rows,
    io_dims,
    io_names,
    renderer_factory,
    resolve_device,
    resolve_precision,
)  # fmt: skip
from huma_rt.runtime.session import Session

log = logging.getLogger(__name__)

_RENDER_CHUNK_S = 1.0  # one-shot render feeds its session one second at a time: bounded backlog


@dataclass
class _Shared:
    """What every session of one Avatar shares (read-only after preload)."""

    device: str
    xp: Any
    encoder: Any  # base runners; sessions fork them (own bindings, shared model)
    deformer: Any
    feat: Any  # [Nd, hidden] f32: spatial features of the dynamic Gaussians
    means: np.ndarray  # [Nd, 3] / [Nd, 4] / [Nd, 3] f32 canonical values of the dynamic Gaussians (host)
    quats: Any
    log_scales: Any
    dynamic_count: int
    factory: RendererFactory
    camera: Any
    gaussians: Any
    dynamic: np.ndarray
    background: Any
    blink_mask: Any = None  # [Nd, 1] f32 (xp): how much of a blink each dynamic Gaussian takes

    def make_renderer(self):
        return self.factory(self.camera, self.gaussians, self.dynamic, background=self.background)

    def new_stream(self):
        return self.xp.cuda.Stream(non_blocking=True)

    def pinned(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A zeroed host array in pinned (page-locked) memory, so device->host copies run async."""
        n = int(np.prod(shape))
        mem = self.xp.cuda.alloc_pinned_memory(n * np.dtype(dtype).itemsize)
        arr = np.frombuffer(mem, dtype, n).reshape(shape)
        arr[...] = 0
        return arr


class Avatar:
    """A loaded avatar. Build with ``Avatar.load``; open streams with ``session()``.

    fps, sample_rate: video rate and the 16 kHz audio rate sessions run at; size: (width,
    height) of frames; lookahead_samples: audio needed past a frame before it is ready;
    preload_report: PreloadReport of the load; blink_code: [code_dim] f32 motion code of shut
    eyes from the bundle, or None (``can_blink``: sessions may set ``blink``).
    """

    def __init__(self, bundle: Bundle, shared: _Shared, report: PreloadReport) -> None:
        self.bundle = bundle
        self._shared = shared
        self.preload_report = report
        self.encoder_config = bundle.encoder
        self.fps = bundle.encoder.fps
        self.sample_rate = bundle.encoder.mel.sample_rate
        self.size = (bundle.camera.width, bundle.camera.height)
        self.lookahead_samples = bundle.encoder.lookahead_samples
        self.device = shared.device
        self.name = bundle.name
        self.blink_code = bundle.blink_code
        self._spare: Session | None = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", backend: str = "auto", *, precision: str = "auto",
             renderer: str | RendererFactory = "auto", threads: int | None = None, verify: bool = True,
             trusted_keys: Sequence[str | Path | bytes] | None = None, **backend_options: Any) -> Avatar:  # fmt: skip
        """Load and preload the bundle at ``path`` (folder or .tar).

        device: "auto" (CUDA when usable, else CPU), "cpu" or "cuda" (DeviceError without a GPU).
        backend: runner backend for the networks ("auto", "onnxruntime", "tensorrt", "triton").
        precision: which exported graphs to run ("auto": fp16 on CUDA, fp32 on CPU).
        renderer: "auto", a huma_rt.render backend name, or a factory(camera, gaussians,
        dynamic, background) returning an object with FrameRenderer's ``render``.
        threads: onnxruntime intra-op threads and CPU renderer threads (None: their defaults). verify: hash every file.
        trusted_keys: ed25519 public keys (files or bytes); when given, the bundle must be signed by
        one of them (see huma_rt.bundle.signing), else FormatError (SignatureError).
        """
        report = PreloadReport()
        dev = resolve_device(device)
        prec = resolve_precision(precision, dev)
        report.device, report.precision = dev, prec
        with report.phase("manifest"):
            bundle = open_bundle(path, verify=verify, trusted_keys=trusted_keys)
        with report.phase("map"):
            xp = _xp(dev)
            g = bundle.gaussians()
            rows = dynamic_rows(g.region)
            dynamic = np.zeros(g.count, bool)
            dynamic[rows] = True
            base = [np.ascontiguousarray(a[rows], np.float32) for a in (g.means, g.quats, g.log_scales)]
            report.gaussians, report.dynamic = g.count, int(rows.size)
        with report.phase("networks"):
            opts = dict(backend=backend, device=dev, threads=threads, **backend_options)
            runners = {n: open_runner(bundle.model_file(n, prec), **opts) for n in ("spatial", "encoder", "deformer")}
            io_names(runners["encoder"], "encoder", ("mel",), ("code",))
            io_names(runners["spatial"], "spatial", ("means",), ("feat",))
            io_names(runners["deformer"], "deformer", ("feat", "code"), ("dmu", "dquat", "dscale"))
            io_dims(runners, bundle.encoder, bundle.deformer, f"bundle {bundle.path}")
            report.backends = {n: f"{r.backend}: {r.reason}" for n, r in runners.items()}
        with report.phase("spatial"):
            feat = xp.zeros((rows.size, bundle.deformer.hidden), np.float32)
            spatial = runners.pop("spatial")
            spatial.bind(inputs={"means": xp.asarray(base[0])}, outputs={"feat": feat})
            spatial.run()
            if dev == "cuda":
                xp.cuda.get_current_stream().synchronize()
            spatial.close()
        blink = None
        if bundle.blink_code is not None:
            with report.phase("blink"):
                if bundle.blink_regions is not None:  # the bundle says which Gaussians a blink moves
                    mask = np.isin(np.asarray(g.region)[rows], bundle.blink_regions).astype(np.float32)
                    blink = xp.asarray(mask[:, None])
                else:
                    blink = _blink_mask(runners["deformer"], feat, bundle.blink_code, base[0], xp, dev)
        with report.phase("renderer"):
            factory, report.renderer = renderer_factory(renderer, dev, threads)
            bg = bundle.background
            bg = np.ascontiguousarray(bg, np.float32) if isinstance(bg, np.ndarray) else bg
            shared = _Shared(dev, xp, runners["encoder"], runners["deformer"], feat, *base, int(rows.size),
                             factory, bundle.camera, g, dynamic, bg, blink)  # fmt: skip
            first_renderer = shared.make_renderer()
        avatar = cls(bundle, shared, report)
        with report.phase("session"):
            spare = Session(avatar, renderer=first_renderer)
        with report.phase("warmup"):
            spare.warm_up()
        avatar._spare = spare
        log.info("%s", report)
        return avatar

    @property
    def can_blink(self) -> bool:
        return self.blink_code is not None

    def blink_mask(self) -> np.ndarray | None:
        """[Nd] f32, the dynamic Gaussians in bundle order: how much of a blink each takes
        (huma_rt.runtime.blink.blink_mask); None when the avatar cannot blink."""
        m = self._shared.blink_mask
        if m is None:
            return None
        return (m.get() if self.device == "cuda" else np.array(m))[:, 0]

    def session(self, live: bool = False, *, dry_run: bool = False, frame_budget_s: float | None = None) -> Session:
        """A new stream on this avatar (its own buffers; networks and splats shared).

        live: allow ``session.idle_frames(n)``. dry_run: clock and features only (see Session).
        frame_budget_s: the most one frame's remote network runs may take (Triton; see Session).
        """
        with self._lock:
            spare, self._spare = (self._spare, None) if not dry_run else (None, self._spare)
        if spare is not None:  # the session preload already allocated and warmed up
            spare.live = bool(live)
            try:
                spare.frame_budget_s = frame_budget_s
            except InputError:
                self._recycle(spare)
                raise
            return spare
        return Session(self, live=live, dry_run=dry_run, frame_budget_s=frame_budget_s)

    def render(self, audio: np.ndarray, sample_rate: int = 16000, *, strict: bool = False,
               blinks: BlinkSchedule | None = None) -> Iterator[Frame]:  # fmt: skip
        """One-shot: all frames of ``audio`` (ceil(duration * fps) of them), lazily.

        Input is checked now (InputError before any frame); frames are produced as iterated,
        each valid until the next. Equal to streaming the same audio in any chunks (with the
        same ``blinks``: a BlinkSchedule the frames blink by; avatars with ``can_blink``).
        """
        sr = check_rate(sample_rate)
        pcm = to_mono(audio)
        if strict and sr != self.sample_rate:
            raise InputError(f"sample_rate must be {self.sample_rate} (strict=True); got {sr}")
        check_blinks(blinks, self)
        return self._render(pcm, sr, strict, blinks)

    def _render(self, pcm: np.ndarray, sr: int, strict: bool, blinks: BlinkSchedule | None) -> Iterator[Frame]:
        session = self.session()
        try:
            session.blinks = blinks
            step = int(sr * _RENDER_CHUNK_S)
            for start in range(0, pcm.size, step):
                session.push_audio(pcm[start : start + step], sr, strict=strict)
                yield from session.frames()
            session.finish()
            yield from session.frames()
        finally:
            self._recycle(session)

    def _recycle(self, session: Session) -> None:
        with self._lock:
            if self._spare is None and not session.dry_run:
                session.blinks = None
                session.reset()
                self._spare = session
                return
        session.close()

    def close(self) -> None:
        """Release the networks (sessions in use keep working until closed)."""
        if self._spare is not None:
            self._spare.close()
            self._spare = None

    def __repr__(self) -> str:
        w, h = self.size
        return f"<Avatar {self.name!r} {w}x{h} @ {self.fps} fps on {self.device}>"


def _blink_mask(deformer, feat, blink_code: np.ndarray, means: np.ndarray, xp, device: str):
    """[Nd, 1] f32 (xp): blink.blink_mask of how far the blink code alone moves each dynamic
    Gaussian (the deformer at code 0 vs the blink code; run once at load)."""
    nd = means.shape[0]
    code = xp.zeros((1, blink_code.size), np.float32)
    out = {k: xp.zeros((1, nd, c), np.float32) for k, c in (("dmu", 3), ("dquat", 4), ("dscale", 3))}
    runner = deformer.fork()
    try:
        runner.bind(inputs={"feat": feat, "code": code}, outputs=out)
        dmu = []
        for c in (np.zeros_like(blink_code), blink_code):
            code[0] = xp.asarray(c)
            runner.run()
            if device == "cuda":  # as the spatial graph's run at preload: its stream, then read
                xp.cuda.get_current_stream().synchronize()
            dmu.append(xp.asnumpy(out["dmu"])[0] if device == "cuda" else out["dmu"][0].copy())
        rest, shut = dmu
    finally:
        runner.close()
    mask = blink_mask(means, np.linalg.norm(shut - rest, axis=1))
    log.info("blink: %d of %d dynamic Gaussians follow it (%d in part)", int((mask >= 1).sum()), nd,
             int(((mask > 0) & (mask < 1)).sum()))  # fmt: skip
    return xp.asarray(mask[:, None])


def _xp(device: str):
    if device == "cuda":
        import cupy

        return cupy
    return np
