"""Encoder input features: streaming (hot path) and one-shot, numpy only.

``StreamingFeatures`` turns audio pushed in chunks of any size into the mel windows the
AudioEncoder consumes, one window per video frame (docs/INTERFACES.md, "Streaming features").
Every buffer is allocated in the constructor; ``push`` computes the log-mel of new frames only
and ``next_window`` copies a window out of a ring, so steady state allocates no arrays.

Bit-exact whatever the chunking: every matrix product has exactly ``mels_per_frame`` rows (one
video frame's mel frames, aligned to the first window), through huma_rt.audio.mel.MelBlock, the
routine ``offline_windows`` uses too. BLAS rounds a row differently for products with different
row counts, so a block size that followed the chunking (as it once did) changed the features by
up to 2e-4 and a third of the demo avatar's frames by one level. The PyTorch front end in export/
agrees to float32 rounding.

Timing: frame t owns samples [640 t, 640 t + 640); its window holds mel frames
[4 (t - past_frames), 4 (t + 1 + lookahead_frames)), mel frame m covering samples
[160 m - left_pad, 160 m - left_pad + 400); samples before 0 and after the end are silence.
"""

from __future__ import annotations

import logging

import numpy as np

from huma_rt.audio.mel import MelBlock, log_mel
from huma_rt.errors import InputError
from huma_rt.model_config import EncoderConfig

log = logging.getLogger(__name__)


MAX_AMPLITUDE = 1000.0
"""Largest |sample| accepted. Audio is [-1, 1]; resampling and mixing overshoot a little, but
beyond this the input is mis-scaled (int16 PCM as float is up to 32768), and from ~1e17 on
the log-mel overflows float32 and the networks produce NaN poses."""


def check_amplitude(samples: np.ndarray, what: str = "audio") -> None:
    """InputError unless every sample is finite with |x| <= MAX_AMPLITUDE (any float dtype/shape).

    Two reductions (min, max; NaN propagates through both): no per-call allocation.
    """
    if not samples.size:
        return
    lo, hi = float(samples.min()), float(samples.max())
    if -MAX_AMPLITUDE <= lo and hi <= MAX_AMPLITUDE:
        return
    flat = samples.reshape(-1)
    with np.errstate(all="ignore"):
        bad = np.flatnonzero(~np.isfinite(flat))
        i = int(bad[0]) if bad.size else int(np.argmax(np.abs(flat)))
    where = f"sample {i}" if samples.ndim == 1 else f"element {tuple(map(int, np.unravel_index(i, samples.shape)))}"
    if bad.size:
        raise InputError(f"{what} must be finite; {where} is {flat[i]}")
    raise InputError(
        f"{what} must be samples in [-1, 1] (|x| <= {MAX_AMPLITUDE:g} tolerated); {where} is {flat[i]}"
        " (integer PCM as float? divide int16 samples by 32768)"
    )


def _check_audio(samples: np.ndarray, what: str = "samples") -> np.ndarray:
    if not isinstance(samples, np.ndarray) or samples.ndim != 1 or samples.dtype.kind != "f":
        desc = f"{samples.dtype} array of shape {samples.shape}" if isinstance(samples, np.ndarray) else type(samples).__name__
        raise InputError(f"{what} must be a 1-D float32 array of 16 kHz mono audio; got {desc}")
    check_amplitude(samples, what)
    return samples


def num_video_frames(num_samples: int, cfg: EncoderConfig) -> int:
    """Video frames (motion codes) of a clip: ceil(num_samples / samples_per_frame)."""
    return -(-num_samples // cfg.samples_per_frame)


def pad_for_encoder(audio: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """audio [S] -> [S'] with past-context silence in front and lookahead silence behind."""
    audio = _check_audio(audio, "audio")
    s = audio.shape[0]
    left = cfg.past_frames * cfg.samples_per_frame + cfg.mel.left_pad
    right = num_video_frames(s, cfg) * cfg.samples_per_frame + cfg.lookahead_samples - s
    out = np.zeros(left + s + right, dtype=np.float32)
    out[left : left + s] = audio
    return out


def offline_mel(audio: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """audio [S] float32 -> encoder input mel [4 (F - 1) + receptive_mels, n_mels], F = ceil(S/640).

    Running the encoder once on this gives all F codes; empty [0, n_mels] when S == 0.
    """
    if _check_audio(audio, "audio").shape[0] == 0:
        return np.zeros((0, cfg.mel.n_mels), dtype=np.float32)
    return log_mel(pad_for_encoder(audio, cfg), cfg.mel, block=cfg.mels_per_frame)


def offline_windows(audio: np.ndarray, cfg: EncoderConfig) -> np.ndarray:
    """audio [S] float32 -> per-frame windows [F, receptive_mels, n_mels] (what streaming yields)."""
    mel = offline_mel(audio, cfg)
    f = num_video_frames(audio.shape[0], cfg)
    r, step = cfg.receptive_mels, cfg.mels_per_frame
    if f == 0:
        return np.zeros((0, r, cfg.mel.n_mels), dtype=np.float32)
    view = np.lib.stride_tricks.as_strided(
        mel, shape=(f, r, mel.shape[1]), strides=(mel.strides[0] * step, mel.strides[0], mel.strides[1])
    )
    return np.ascontiguousarray(view)


class StreamingFeatures:
    """Incremental encoder windows from audio pushed in chunks of any size.

    Protocol: ``push(samples)`` any number of times, ``while ready_frames(): t =
    next_window(out)``, then ``finish()`` once the audio ends (pads silence so every frame of the
    pushed audio becomes ready) and drain again; ``reset()`` starts a new stream.

    Mel frames are computed one video frame's worth at a time (``mels_per_frame`` rows per
    product, see the module docstring): a frame's window is complete exactly when its last block
    is, so this never delays a frame. ``buffer_seconds`` sizes the mel ring for audio pushed but
    not yet consumed (a larger backlog grows the ring once, with a log message, instead of
    dropping audio).
    """

    def __init__(self, cfg: EncoderConfig, *, buffer_seconds: float = 2.0) -> None:
        self.cfg = cfg
        m = cfg.mel
        self._n_fft, self._hop, self._n_mels = m.n_fft, m.hop, m.n_mels
        block_mels = cfg.mels_per_frame
        self._block = block_mels
        self._mel_block = MelBlock(m, block_mels)
        # Samples of the next block's windows (a full buffer is one block); two buffers swapped
        # so shifting the tail never copies onto itself (numpy would allocate a temporary for an
        # overlapping copy).
        cap = m.n_fft - m.hop + block_mels * m.hop
        self._sbufs = (np.zeros(cap, np.float32), np.zeros(cap, np.float32))
        # [block, n_fft] overlapping window views of each sample buffer, made once
        self._windows = tuple(
            np.lib.stride_tricks.as_strided(b, shape=(block_mels, m.n_fft), strides=(b.strides[0] * m.hop, b.strides[0]))
            for b in self._sbufs
        )
        self._frames = np.empty((block_mels, m.n_fft), np.float32)
        self._mel = np.empty((block_mels, m.n_mels), np.float32)
        self._zeros = np.zeros(cap, np.float32)
        rows = cfg.receptive_mels + block_mels + int(buffer_seconds * m.sample_rate) // m.hop
        self._ring = np.empty((rows, m.n_mels), np.float32)
        self.reset()

    # -- public protocol -------------------------------------------------------------------

    @property
    def window_shape(self) -> tuple[int, int]:
        """Shape of one window: (receptive_mels, n_mels)."""
        return (self.cfg.receptive_mels, self._n_mels)

    @property
    def pushed_samples(self) -> int:
        """Samples of audio pushed since the last reset (padding excluded)."""
        return self._pushed

    @property
    def total_frames(self) -> int | None:
        """Frames of the whole stream once ``finish()`` ran (ceil(pushed / 640)), else None."""
        return self._total if self._finished else None

    def reset(self) -> None:
        """Start a new stream: forget all audio, re-prime the silent past context."""
        self._cur = 0
        self._pending = 0
        self._computed = 0  # mel frames computed (whole blocks), from the first window's first frame
        self._next = 0  # index of the next frame next_window() returns
        self._pushed = 0
        self._finished = False
        self._total = 0
        lead = self.cfg.past_frames * self.cfg.samples_per_frame + self.cfg.mel.left_pad
        self._feed_zeros(lead)

    def push(self, samples: np.ndarray) -> None:
        """Append audio samples [S] (float32, 16 kHz mono; any S >= 0)."""
        self.push_checked(_check_audio(samples))

    def push_checked(self, samples: np.ndarray) -> None:
        """``push`` for samples [S] float32 the caller already checked (Session: its input went
        through to_mono; resampled audio is bounded by the filter's gain, so it may overshoot
        MAX_AMPLITUDE a little and must not be refused after its input was accepted)."""
        if self._finished:
            raise InputError("push() after finish(): call reset() to start a new stream")
        self._feed(samples)
        self._pushed += samples.shape[0]

    def finish(self) -> None:
        """End of audio: pad silence so frames 0..ceil(pushed/640)-1 all become ready."""
        if self._finished:
            return
        cfg = self.cfg
        self._total = num_video_frames(self._pushed, cfg)
        if self._total:
            self._feed_zeros(self._total * cfg.samples_per_frame + cfg.lookahead_samples - self._pushed)
        self._finished = True

    def ready_frames(self) -> int:
        """Frames whose window can be read now."""
        r, step = self.cfg.receptive_mels, self.cfg.mels_per_frame
        avail = (self._computed - r) // step + 1 - self._next if self._computed >= r else 0
        if self._finished:
            avail = min(avail, self._total - self._next)
        return max(avail, 0)

    def next_window(self, out: np.ndarray) -> int:
        """Fill ``out`` [receptive_mels, n_mels] float32 with the next frame's window; return its index."""
        if not (
            isinstance(out, np.ndarray) and out.shape == self.window_shape and out.dtype == np.float32
            and out.flags.writeable
        ):  # fmt: skip
            got = f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise InputError(f"out must be a writable float32 array of shape {self.window_shape}; got {got}")
        if self.ready_frames() == 0:
            raise InputError(f"no frame ready (next frame {self._next}); push more audio or call finish()")
        t = self._next
        self._ring_read(t * self.cfg.mels_per_frame, out)
        self._next += 1
        return t

    # -- internals -------------------------------------------------------------------------

    def _feed_zeros(self, n: int) -> None:
        while n > 0:
            k = min(n, self._zeros.shape[0])
            self._feed(self._zeros[:k])
            n -= k

    def _feed(self, x: np.ndarray) -> None:
        i, size = 0, x.shape[0]
        while i < size:
            buf = self._sbufs[self._cur]
            n = min(buf.shape[0] - self._pending, size - i)
            buf[self._pending : self._pending + n] = x[i : i + n]
            self._pending += n
            i += n
            if self._pending == buf.shape[0]:  # a full buffer holds exactly one block's windows
                self._compute()

    def _compute(self) -> None:
        buf = self._sbufs[self._cur]
        np.copyto(self._frames, self._windows[self._cur])
        self._mel_block(self._frames, self._mel)
        self._ring_write(self._mel)
        # keep the unconsumed tail: it moves to the start of the other buffer
        used = self._block * self._hop
        rest = self._pending - used
        other = self._sbufs[1 - self._cur]
        other[:rest] = buf[used : self._pending]
        self._cur = 1 - self._cur
        self._pending = rest

    def _ring_write(self, rows: np.ndarray) -> None:
        k = rows.shape[0]
        live_from = self._next * self.cfg.mels_per_frame  # first row any unread window needs
        if self._computed + k - live_from > self._ring.shape[0]:
            self._grow(self._computed + k - live_from, live_from)
        cap = self._ring.shape[0]
        start = self._computed % cap
        first = min(k, cap - start)
        self._ring[start : start + first] = rows[:first]
        self._ring[: k - first] = rows[first:]
        self._computed += k

    def _ring_read(self, row: int, out: np.ndarray) -> None:
        cap = self._ring.shape[0]
        start, n = row % cap, out.shape[0]
        first = min(n, cap - start)
        out[:first] = self._ring[start : start + first]
        out[first:] = self._ring[: n - first]

    def _grow(self, needed: int, live_from: int) -> None:
        live = np.empty((self._computed - live_from, self._n_mels), np.float32)
        self._ring_read(live_from, live)
        old = self._ring.shape[0]
        self._ring = np.empty((2 * needed, self._n_mels), np.float32)
        cap = self._ring.shape[0]
        for j in range(live.shape[0]):  # rare: only when the unread backlog outgrows the ring
            self._ring[(live_from + j) % cap] = live[j]
        log.info("mel ring grew from %d to %d rows (audio pushed faster than frames were read)", old, cap)
