"""Session: one audio stream -> its video frames, on buffers the session allocates once.

Protocol (sherpa-onnx style): ``push_audio(pcm)`` any chunk size, ``for f in frames()`` after each
push yields every frame whose audio plus lookahead has arrived, ``finish()`` pads the tail with
silence, then ``frames()`` yields the rest. Frame t shows samples [t * spf, (t + 1) * spf) of the
16 kHz stream (spf = 640 at 25 fps) and is ready once ``lookahead_samples`` more have arrived.

Per frame: features (mel window) -> encoder (batch 1) -> deformer on the dynamic Gaussians ->
deltas added into preallocated arrays -> FrameRenderer.render into the session's frame buffer.
Steady state allocates no arrays: every buffer and view below is made in ``__init__``.

Ownership: ``Frame.rgb`` is a read-only view of the session's frame buffer, overwritten by the
next frame. A session is used from one thread at a time; several sessions (threads) may share
one Avatar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from huma_rt.audio.features import StreamingFeatures
from huma_rt.errors import InputError
from huma_rt.nvtx import annotate
from huma_rt.runtime.audio_input import StreamResampler, check_rate, to_mono
from huma_rt.runtime.blink import BlinkSchedule, check_blinks
from huma_rt.runtime.frame import Frame

if TYPE_CHECKING:
    from huma_rt.runtime.avatar import Avatar

log = logging.getLogger(__name__)

STAGES = ("features", "encode", "deform", "render")


class Session:
    """A stream of audio in, frames out. Create with ``avatar.session()``.

    live: allows ``idle_frames(n)`` (frames of silence on demand, the clock advancing with them).
    dry_run: runs the audio clock only (input checks, resampling, frame readiness by the timing
    contract; no features, networks or rendering; ``rgb`` stays black) - for checking timing
    over long streams cheaply.
    blink: set between frames (0 open .. 1 shut, avatars with ``can_blink``): frames drawn from
    then on add ``blink`` x the bundle's code of shut eyes to the encoder's code, the way the
    deformer learnt blinks, on the Gaussians about the eyes (the avatar's blink mask; elsewhere
    the frame's own deltas). huma_rt.runtime.blink gives a live caller a natural schedule.
    blinks: a BlinkSchedule the session follows itself, by its own frame index (then ``blink``
    is set from it before each frame; None: ``blink`` stays as the caller sets it).
    frame_budget_s: with runners that take a frame deadline (Triton), the most one frame's
    network runs may take together (the encoder and deformer runs of a frame share one deadline,
    so a slow answer to one leaves less for the other); None: the runners' own ``budget_s``.
    A frame over it raises BackendError. Local runners need no such bound.
    """

    def __init__(self, avatar: Avatar, *, live: bool = False, dry_run: bool = False, renderer=None,
                 frame_budget_s: float | None = None) -> None:  # fmt: skip
        sh = avatar._shared
        cfg = avatar.encoder_config
        self.avatar = avatar
        self.live = bool(live)
        self.dry_run = bool(dry_run)
        self.fps = cfg.fps
        self.sample_rate = cfg.mel.sample_rate
        self.samples_per_frame = cfg.samples_per_frame
        self._features = _Clock(cfg) if dry_run else StreamingFeatures(cfg)
        self._cuda = sh.device == "cuda"
        self._xp = sh.xp
        xp = sh.xp
        nd, w, h = sh.dynamic_count, avatar.size[0], avatar.size[1]
        self._mel_host = np.zeros((1, *self._features.window_shape), np.float32)
        self._window = self._mel_host[0]
        self._stream = sh.new_stream() if self._cuda else None
        self._mel = xp.asarray(self._mel_host) if self._cuda else self._mel_host
        self._code = xp.zeros((1, 1, cfg.code_dim), np.float32)
        self._blink_code = avatar.blink_code
        self._blink_host = np.zeros((1, 1, cfg.code_dim), np.float32)  # blink * blink_code
        self._blink_delta = xp.zeros_like(self._code) if self._cuda else self._blink_host
        self._blink = 0.0
        self._blinks: BlinkSchedule | None = None
        self._deformer_blink = None
        self._dmu, self._dquat, self._dscale = (xp.zeros((1, nd, k), np.float32) for k in (3, 4, 3))
        if self._cuda:
            # FrameRenderer takes host arrays: deltas come back into pinned memory asynchronously
            self._dev_deltas = (self._dmu[0], self._dquat[0], self._dscale[0])
            self._deltas = tuple(sh.pinned((nd, k), np.float32) for k in (3, 4, 3))
            self._rgb = sh.pinned((h, w, 3), np.uint8)
        else:
            self._deltas = (self._dmu[0], self._dquat[0], self._dscale[0])
            self._rgb = np.zeros((h, w, 3), np.uint8)
        self._bases = (sh.means, sh.quats, sh.log_scales)
        self._posed = tuple(np.empty((nd, k), np.float32) for k in (3, 4, 3))
        self._rgb_view = self._rgb.view()
        self._rgb_view.flags.writeable = False
        self._silence = np.zeros(self.samples_per_frame, np.float32)
        self.stage_times = dict.fromkeys(STAGES, 0.0)  # seconds of the last frame, updated in place
        self._encoder = self._deformer = self._renderer = None
        if not self.dry_run:
            opts = {"stream": self._stream} if self._cuda else {}
            self._encoder = sh.encoder.fork(**opts)
            self._encoder.bind(inputs={"mel": self._mel}, outputs={"code": self._code})
            self._deformer = sh.deformer.fork(**opts)
            self._deformer.bind(
                inputs={"feat": sh.feat, "code": self._code.reshape(1, cfg.code_dim)},
                outputs={"dmu": self._dmu, "dquat": self._dquat, "dscale": self._dscale},
            )
            if avatar.can_blink:  # a second deformer run, on code + blink, for frames with a blink
                self._code_blink = xp.zeros_like(self._code)
                self._blink_mask = sh.blink_mask
                self._dev_out = (self._dmu, self._dquat, self._dscale)
                self._blink_out = tuple(xp.zeros_like(a) for a in self._dev_out)
                self._deformer_blink = sh.deformer.fork(**opts)
                self._deformer_blink.bind(
                    inputs={"feat": sh.feat, "code": self._code_blink.reshape(1, cfg.code_dim)},
                    outputs=dict(zip(("dmu", "dquat", "dscale"), self._blink_out, strict=True)),
                )
            self._renderer = renderer if renderer is not None else sh.make_renderer()
            if self._cuda and hasattr(self._renderer, "use_stream"):
                self._renderer.use_stream(self._stream)  # networks and kernels on one stream
        # runners that take a frame deadline (remote ones); empty for local runners
        self._deadline_runners = tuple(r for r in (self._encoder, self._deformer) if hasattr(r, "deadline"))
        self.frame_budget_s = frame_budget_s
        self._reset_state()  # the features are fresh: their reset would recompute the silent past

    # -- protocol ------------------------------------------------------------------------------

    @property
    def frame_budget_s(self) -> float | None:
        """The bound on one frame's network runs (seconds), or None where no runner takes one."""
        return self._frame_budget_s

    @frame_budget_s.setter
    def frame_budget_s(self, value: float | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 3600):
            raise InputError(f"frame_budget_s must be a number of seconds in (0, 3600) or None; got {value!r}")
        if value is None and self._deadline_runners:
            value = max(float(r.budget_s) for r in self._deadline_runners)
        self._frame_budget_s = None if value is None or not self._deadline_runners else float(value)

    @property
    def blink(self) -> float:
        """How shut the eyes are in the frames drawn from now on (0 .. 1); reset() sets 0."""
        return self._blink

    @blink.setter
    def blink(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value <= 1.0:
            raise InputError(f"blink must be a number in [0, 1]; got {value!r}")
        value = float(value)
        if value == self._blink:
            return
        if value and self._blink_code is None:
            raise InputError(f"avatar {self.avatar.name!r} cannot blink: its bundle has no expressions.blink code "
                             "(trained from a video that shows no shut eye, or packed without one)")  # fmt: skip
        if self._blink_code is not None:
            np.multiply(self._blink_code, value, out=self._blink_host[0, 0])
            if self._cuda:
                self._blink_delta.set(self._blink_host, stream=self._stream)
        self._blink = value

    @property
    def blinks(self) -> BlinkSchedule | None:
        """The schedule the session blinks by (frame index -> weight), or None."""
        return self._blinks

    @blinks.setter
    def blinks(self, schedule: BlinkSchedule | None) -> None:
        check_blinks(schedule, self.avatar)
        self._blinks = schedule
        if schedule is None:
            self.blink = 0.0

    @property
    def pushed_samples(self) -> int:
        """Samples on the session's 16 kHz clock so far (pushed audio, resampled, plus idle silence)."""
        return self._features.pushed_samples

    @property
    def frames_emitted(self) -> int:
        return self._emitted

    def reset(self) -> None:
        """Start a new stream on the same buffers (frame indices restart at 0, blink 0)."""
        self._features.reset()
        self._reset_state()

    def _reset_state(self) -> None:
        self._resampler: StreamResampler | None = None
        self._rate: int | None = None
        self._finished = False
        self._emitted = 0
        self.silence_samples = 0
        self.blink = 0.0

    def push_audio(self, pcm: np.ndarray, sample_rate: int = 16000, *, strict: bool = False) -> None:
        """Append audio: float [S] mono, or stereo [S, 2] / [2, S] (downmixed), at ``sample_rate``.

        Other rates than 16 kHz are resampled (streaming; chunking never changes the result),
        or refused with ``strict=True``. One stream keeps one rate. 16 kHz mono float32 input
        is consumed without any allocation.
        """
        if self._finished:
            raise InputError("push_audio() after finish(): call session.reset() or open a new session")
        sr = check_rate(sample_rate)
        x = to_mono(pcm)
        if self._rate is not None and sr != self._rate:
            raise InputError(f"sample_rate must stay {self._rate} within one stream; got {sr} (reset() first)")
        if sr != self.sample_rate:
            if strict:
                raise InputError(f"sample_rate must be {self.sample_rate} (strict=True); got {sr}")
            if self._resampler is None:
                self._resampler = StreamResampler(sr, self.sample_rate)
            x = self._resampler.push(x)
        self._rate = sr
        self._features.push_checked(x)

    def finish(self) -> None:
        """End of audio: pad silence so every frame of the pushed audio becomes ready."""
        if self._finished:
            return
        if self._resampler is not None:
            self._features.push_checked(self._resampler.flush())
        self._features.finish()
        self._finished = True

    def frames(self) -> Iterator[Frame]:
        """Yield every frame that is ready now (each Frame.rgb valid until the next frame)."""
        while self._features.ready_frames():
            yield self._next_frame()

    def idle_frames(self, n: int, *, draw: bool = True) -> Iterator[Frame]:
        """Live mode: yield exactly ``n`` frames now, pushing silence onto the clock as needed.

        The silence pushed (``silence_samples`` in all) is part of the stream's timeline, so
        frames stay in sync with the audio clock: the caller plays it as silence. Idle frames
        are what the model makes of silence (mouth closed), with the eyes as ``blink`` says.
        Frames of audio pushed before come out first, in order.

        draw=False (a live caller behind its clock): the frames advance the stream without
        running the networks or the renderer; their ``rgb`` is the last picture drawn. A frame's
        motion code depends only on its own audio window, so the next drawn frame is exactly
        what it would have been.
        """
        if not self.live:
            raise InputError("idle_frames() needs a live session: avatar.session(live=True)")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"n must be a non-negative integer; got {n!r}")
        if self._finished:
            raise InputError("idle_frames() after finish(): call session.reset() first")
        done = 0
        while done < n:
            if self._features.ready_frames():
                done += 1
                yield self._next_frame(draw)
            else:
                self._push_silence()

    def warm_up(self) -> None:
        """Run the networks once on silence (first-run costs paid before the first frame).

        CPU: the renderer is not run: its first call draws the static frame, which the first
        real frame needs anyway, so rendering here would only add a frame's time to preload.
        GPU: two frames of the rest pose are drawn, the second captured as the frame's graph,
        so every real frame is one graph launch (the rest pose is the static frame, which the
        buffer then holds).
        """
        if self.dry_run:
            return
        self._window[...] = 0.0
        if self._cuda:
            self._frame_networks_cuda()
            for _ in range(2):
                self._renderer.render(*self._bases, self._rgb)
        else:
            self._encoder.run()
            self._deform()
            self._apply_deltas()

    def close(self) -> None:
        """Release this session's network bindings."""
        for r in (self._encoder, self._deformer, self._deformer_blink):
            if r is not None:
                r.close()
        self._encoder = self._deformer = self._deformer_blink = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _push_silence(self) -> None:
        if self._resampler is not None:
            # through the resampler, so silence lands after the audio it still holds
            src = -(-self.samples_per_frame * self._resampler.down // self._resampler.up)
            before = self.pushed_samples
            self._features.push_checked(self._resampler.push(np.zeros(src, np.float32)))
            self.silence_samples += self.pushed_samples - before
            return
        k = self.samples_per_frame - self.pushed_samples % self.samples_per_frame
        self._features.push_checked(self._silence[:k])
        self.silence_samples += k

    def _next_frame(self, draw: bool = True) -> Frame:
        if self._deadline_runners:  # one bound for the whole frame, however its runs share it
            end = time.monotonic() + self._frame_budget_s
            for r in self._deadline_runners:
                r.deadline = end
        t0 = time.perf_counter()
        t = self._features.next_window(self._window)
        if self._blinks is not None:
            self.blink = self._blinks.weight(t)
        t1 = time.perf_counter()
        if not self.dry_run and draw:
            if self._cuda:
                self._frame_cuda(t1)
            else:
                self._frame_cpu(t1)
        else:
            self.stage_times["encode"] = self.stage_times["deform"] = self.stage_times["render"] = 0.0
        self.stage_times["features"] = t1 - t0
        self._emitted += 1
        spf = self.samples_per_frame
        return Frame(t, t / self.fps, t * spf, (t + 1) * spf, self._rgb_view)

    def _frame_cpu(self, t1: float) -> None:
        with annotate("huma/encode"):
            self._encoder.run()
        t2 = time.perf_counter()
        with annotate("huma/deform"):
            self._deform()
            self._apply_deltas()
        t3 = time.perf_counter()
        self._renderer.render(self._posed[0], self._posed[1], self._posed[2], self._rgb)
        t4 = time.perf_counter()
        st = self.stage_times
        st["encode"], st["deform"], st["render"] = t2 - t1, t3 - t2, t4 - t3

    def _deform(self) -> None:
        """The deltas of the frame's code; with a blink, those of code + blink where the blink
        mask says (deltas += mask * (blink deltas - deltas); on the session's stream on CUDA)."""
        self._deformer.run()
        if self._blink:
            xp = self._xp
            xp.add(self._code, self._blink_delta, out=self._code_blink)
            self._deformer_blink.run()
            for d, b in zip(self._dev_out, self._blink_out):  # noqa: B905 (hot path)
                xp.subtract(b, d, out=b)
                xp.multiply(b, self._blink_mask, out=b)
                xp.add(d, b, out=d)

    def _apply_deltas(self) -> None:
        for base, delta, posed in zip(self._bases, self._deltas, self._posed):  # noqa: B905 (hot path)
            np.add(base, delta, out=posed)

    def _frame_cuda(self, t1: float) -> None:
        self._frame_networks_cuda()
        t3 = time.perf_counter()
        self._apply_deltas()
        self._renderer.render(self._posed[0], self._posed[1], self._posed[2], self._rgb)
        st = self.stage_times
        st["encode"], st["deform"], st["render"] = 0.0, t3 - t1, time.perf_counter() - t3

    def _frame_networks_cuda(self) -> None:
        stream = self._stream
        with stream:
            with annotate("huma/encode"):
                self._mel.set(self._mel_host, stream=stream)
                self._encoder.run()
            with annotate("huma/deform"):
                self._deform()
                for dev, host in zip(self._dev_deltas, self._deltas):  # noqa: B905 (hot path)
                    dev.get(stream=stream, out=host)  # async into pinned memory
        stream.synchronize()


class _Clock:
    """The frame clock of StreamingFeatures without the features (dry-run sessions).

    Frame t is ready once 640 (t + 1) + lookahead_samples samples arrived, or after finish()
    for every t < ceil(pushed / 640) - the rule docs/INTERFACES.md states for the features.
    """

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.window_shape = (cfg.receptive_mels, cfg.mel.n_mels)
        self.reset()

    def reset(self) -> None:
        self.pushed_samples, self._next, self._total = 0, 0, None

    def push_checked(self, samples: np.ndarray) -> None:
        self.pushed_samples += int(samples.shape[0])

    def finish(self) -> None:
        self._total = -(-self.pushed_samples // self.cfg.samples_per_frame)

    def ready_frames(self) -> int:
        spf = self.cfg.samples_per_frame
        if self._total is not None:
            return self._total - self._next
        return max(0, (self.pushed_samples - self.cfg.lookahead_samples) // spf - self._next)

    def next_window(self, out: np.ndarray) -> int:
        self._next += 1
        return self._next - 1
