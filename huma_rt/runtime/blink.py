"""When a live avatar blinks: a blink weight per frame index, a pure function of (index, seed).

A person at rest blinks every few seconds (intervals of ~2-6 s, a blink ~0.3 s: the lid falls in
~0.1 s, stays shut a moment, and rises more slowly). The timeline is cut into slots of
``interval_s``; each slot holds one blink, starting at a pseudo-random offset (a hash of the seed
and the slot), kept ``gap_s`` / 2 from both slot ends, so successive blinks are ``gap_s`` to
2 ``interval_s`` - ``gap_s`` apart. Being a function of the index, not a state, the weight of a
frame is the same whether frames are drawn, skipped or redone, and memory never grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


@dataclass(frozen=True)
class BlinkSchedule:
    """Blink weights (0 open .. 1 shut) for frame indices at ``fps``.

    interval_s: the mean time between blinks. gap_s: the least time between two. close_s,
    hold_s, open_s: how long the lid takes to fall, stays shut, takes to rise.
    """

    fps: int
    seed: int = 0
    interval_s: float = 4.0
    gap_s: float = 1.5
    close_s: float = 0.08
    hold_s: float = 0.05
    open_s: float = 0.16

    def __post_init__(self) -> None:
        if isinstance(self.fps, bool) or not isinstance(self.fps, int) or not 1 <= self.fps <= 240:
            raise InputError(f"fps must be an integer in 1..240; got {self.fps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InputError(f"seed must be an integer; got {self.seed!r}")
        for name in ("interval_s", "gap_s", "close_s", "hold_s", "open_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"{name} must be a finite number of seconds >= 0; got {v!r}")
        if self.close_s + self.open_s <= 0:
            raise InputError("close_s + open_s must be > 0 seconds (a blink must take some time)")
        if self.blink_frames + self.gap_frames >= self.slot_frames:
            raise InputError(
                f"interval_s {self.interval_s} must exceed one blink ({self.close_s + self.hold_s + self.open_s:.3f} s) "
                f"plus gap_s {self.gap_s} at {self.fps} fps"
            )

    @property
    def slot_frames(self) -> int:
        return max(1, round(self.interval_s * self.fps))

    @property
    def gap_frames(self) -> int:
        return round(self.gap_s * self.fps)

    @property
    def blink_frames(self) -> int:
        """Frames with a non-zero weight in one blink (their centres fall inside it)."""
        return max(1, math.ceil((self.close_s + self.hold_s + self.open_s) * self.fps - 0.5))

    def weight(self, index: int) -> float:
        """The blink weight of frame ``index`` (>= 0; the shape is sampled at the frame's centre)."""
        slot, pos = divmod(int(index), self.slot_frames)
        room = self.slot_frames - self.blink_frames - self.gap_frames  # > 0 (checked)
        start = self.gap_frames // 2 + _mix(self.seed * 0x100000001B3 + slot) % room
        d = pos - start
        if not 0 <= d < self.blink_frames:
            return 0.0
        return self.shape((d + 0.5) / self.fps)

    def shape(self, t: float) -> float:
        """The lid's closure ``t`` seconds into a blink: linear fall, hold, linear rise."""
        if t < 0:
            return 0.0
        if t < self.close_s:
            return t / self.close_s
        t -= self.close_s
        if t < self.hold_s:
            return 1.0
        t -= self.hold_s
        return max(0.0, 1.0 - t / self.open_s) if self.open_s > 0 else 0.0


def blink_mask(means: np.ndarray, moved: np.ndarray, *, reach: float = 0.08) -> np.ndarray:
    """How much of the blink each dynamic Gaussian takes, float32 [Nd] in [0, 1].

    means [Nd, 3]: canonical means; moved [Nd]: how far the blink code alone moves each one (the
    deformer at code 0 vs the blink code). A deformer fitted on real frames also moves a little of
    the mouth with a blink (the demo's lips: up to 38 levels); a lid closing must not twitch the
    lips, so the blink is kept near what it moves most: Gaussians within ``reach`` x the dynamic
    region's size of one moved >= half the most take all of it, fading to none at twice that.
    """
    means = np.asarray(means, np.float64)
    moved = np.asarray(moved, np.float64)
    if moved.size == 0 or not np.isfinite(moved).all() or moved.max() <= 0:
        return np.zeros(moved.shape, np.float32)
    seeds = means[moved >= 0.5 * moved.max()]
    if seeds.shape[0] > 512:  # distances to a spread subset: the mask is a smooth falloff anyway
        seeds = seeds[np.linspace(0, seeds.shape[0] - 1, 512).astype(np.int64)]
    size = float((np.percentile(means, 98, 0) - np.percentile(means, 2, 0)).max()) or 1.0
    r = reach * size
    near2 = np.empty(means.shape[0])
    s2 = (seeds * seeds).sum(1)
    for i in range(0, means.shape[0], 8192):  # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, [8192, seeds] at a time
        m = means[i : i + 8192]
        near2[i : i + 8192] = ((m * m).sum(1)[:, None] + s2[None] - 2.0 * (m @ seeds.T)).min(1)
    near = np.sqrt(np.maximum(near2, 0.0))
    return np.clip((2 * r - near) / r, 0.0, 1.0).astype(np.float32)


def check_blinks(schedule: BlinkSchedule | None, avatar) -> None:
    """InputError unless ``schedule`` is None or a BlinkSchedule at ``avatar``'s fps for an
    avatar that can blink."""
    if schedule is None:
        return
    if not isinstance(schedule, BlinkSchedule):
        raise InputError(f"blinks must be a huma_rt.runtime.blink.BlinkSchedule or None; got {type(schedule).__name__}")
    if not avatar.can_blink:
        raise InputError(f"avatar {avatar.name!r} cannot blink: its bundle has no expressions.blink code")
    if schedule.fps != avatar.fps:
        raise InputError(f"blinks must be scheduled at the avatar's {avatar.fps} fps; got {schedule.fps}")
