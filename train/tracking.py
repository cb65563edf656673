"""Face tracking of a training video on the CPU: video -> :class:`Tracks` (.npz).

Two passes. The frame pass (tracking_pass.py) reads each frame once: face box, 68 landmarks,
the checks that need pixels; it is resumable from a checkpoint. The finishing pass works on the
recorded arrays only: person-relative checks (mouth occlusion against the person's own lip
contrast), One-Euro smoothing run both ways (no lag), head pose against the 3D template,
articulation relative to the person's rest, the matte polygons.

A frame is refused (``valid`` False, ``reason`` says why) when no face is found, more than one
face is (the requirement is one person), the landmarks are not held by face features (face
hidden), the mouth is hidden, the landmarks jump (occlusion or a cut), or the head is turned
more than ``max_yaw_deg``. Progress goes to the module logger every ``log_every`` frames and
to ``progress(stage, done, total, eta_seconds)`` if given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from huma_rt.errors import InputError

from .face_articulation import (
    ARTICULATION,
    FEATURES,
    articulation,
    features,
    frontal_mm,
    rest_values,
)
from .face_detect import FaceModel
from .face_filter import one_euro
from .face_matte import VERTICES, matte_polygon
from .face_pose import euler_yxz, intrinsics, rodrigues, solve_pnp
from .face_template import MEAN_FACE, RIGID
from .tracking_pass import FramePass, PassState, inter_ocular
from .tracking_probe import ProbeResult, probe_frames
from .tracking_tracks import REASON_TEXT, REASONS, Tracks
from .video import VideoConfig, open_video

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int, float], None]
# options a checkpoint may be resumed under (the probe only refuses early; it changes no track)
_NO_EFFECT = ("checkpoint_every", "log_every", "probe_frames")
_MOUTH_OCCLUDED, _TURNED = REASONS.index("mouth_occluded"), REASONS.index("turned")
MAX_RATIO_STRAY = 0.2  # colour width / landmark width this far from the video's median: not the lips
# The probe refuses a video when so few of its frames are kept that, were they independent draws
# from a video with the share min_valid tracked, as few would be kept with at most this
# probability (24 probes, min_valid 0.5: 2 or fewer kept, 1.8e-5; a bar of 0.3 or lower: never).
PROBE_RISK = 1e-4
# The pass's frame count is the container's estimate: the share is judged against a little more.
_TOTAL_SLACK = 1.01


@dataclass(frozen=True)
class TrackingConfig:
    """Options of the tracking stage.

    detect_every: frames between full-frame face detections while a face is tracked (12 = 0.5 s at
        24 fps); detection also runs after every refused frame.
    hold_frames: after the face was last kept, look for it where it was for this many frames
        when the detector finds nothing (its refusal then says hidden rather than absent).
    upsample: detector image upsampling (0: faces from ~80 px; 1: from ~40 px, ~4x slower).
    second_face_ratio: another detected face at least this fraction of the largest one's width
        refuses the frame (smaller ones are faces in the background, posters, ...).
    spread_shift, max_spread: the landmark-confidence probe (face_detect.landmark_spread): boxes
        moved by this fraction of the face; refuse above this mean follow ratio (measured with
        0.05: faces 0.04-0.10, a blacked-out face 0.77-0.93).
    max_jump: refuse when the rigid landmarks move more than this many inter-ocular distances in
        one frame.
    min_lip_contrast: refuse when the lip colour contrast falls below this fraction of the
        person's median (skipped when the median is under ``grey_contrast``: grey-scale video).
    max_yaw_deg: refuse a head turned further than this from the camera.
    focal: camera focal length in pixels, or None for ``focal_scale * max(width, height)``.
    min_cutoff_hz, beta: One-Euro smoothing of landmarks (beta per inter-ocular distance per s).
    mouth_colour: measure the mouth's width (round, spread) from the lips' colour (lip_shape.py)
        rather than from the landmark corners; the landmark width stays when the colour width
        is measured on fewer than ``min_colour_share`` of the valid frames (grey video, a beard).
    checkpoint_every, log_every: frames between checkpoints / progress lines.
    probe_frames: with a ``min_valid`` (track_video), frames tracked across the whole video
        before the pass (tracking_probe.py) to refuse a video without one trackable face in
        seconds; 0 turns the probe off.
    """

    detect_every: int = 12
    upsample: int = 0
    hold_frames: int = 25
    second_face_ratio: float = 0.5
    spread_shift: float = 0.05
    max_spread: float = 0.5
    max_jump: float = 0.35
    min_lip_contrast: float = 0.4
    grey_contrast: float = 0.015
    max_yaw_deg: float = 50.0
    focal: float | None = None
    focal_scale: float = 1.0
    min_cutoff_hz: float = 2.0
    beta: float = 1.0
    mouth_colour: bool = True
    min_colour_share: float = 0.9
    checkpoint_every: int = 250
    log_every: int = 100
    probe_frames: int = 24

    def __post_init__(self):
        if not isinstance(self.probe_frames, int) or self.probe_frames < 0:
            raise InputError(f"probe_frames must be an integer >= 0 (0 = no probe); got {self.probe_frames!r}")
        if self.detect_every < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise InputError(f"detect_every, checkpoint_every and log_every must be >= 1; got "
                             f"{self.detect_every}, {self.checkpoint_every}, {self.log_every}")  # fmt: skip
        if not 0 < self.spread_shift < 0.5 or not 0 < self.max_spread:
            raise InputError(f"spread_shift must be in (0, 0.5) and max_spread > 0; got "
                             f"{self.spread_shift}, {self.max_spread}")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrackingConfig:
        return cls(**d)


def track_video(path: str | os.PathLike, config: TrackingConfig | None = None, *,
                video_config: VideoConfig | None = None, max_frames: int | None = None,
                checkpoint: str | os.PathLike | None = None, progress: Progress | None = None,
                model: FaceModel | None = None, min_valid: float | None = None) -> Tracks:  # fmt: skip
    """Track the face in the video at ``path`` (checked by :func:`open_video`).

    ``max_frames`` stops early (tests, previews). ``checkpoint`` (a .npz path) is written every
    ``checkpoint_every`` frames and resumed from when it matches this video and config; it is
    deleted when the stage finishes.
    ``min_valid`` (the share of frames the caller will require, as :func:`check_tracks`) refuses
    a hopeless video early with a TrackingError: at once when the probe (``probe_frames``) keeps
    almost none of its frames, else as soon as so many frames are refused that the share can no
    longer be reached (the finishing pass only refuses more). The checkpoint is written first,
    so a run with a lower ``min_valid`` resumes from it.
    """
    reader = open_video(path, video_config)
    info = reader.info
    st = os.stat(path)
    options = {k: v for k, v in (config or TrackingConfig()).to_dict().items() if k not in _NO_EFFECT}
    key = hashlib.sha256(json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns, options,
                                     max_frames, info.width, info.height]).encode()).hexdigest()  # fmt: skip
    total = min(info.frames, max_frames) if max_frames else info.frames
    cfg = config or TrackingConfig()
    resuming = checkpoint is not None and Path(checkpoint).exists()
    if min_valid is not None and cfg.probe_frames and not resuming:
        model = model or FaceModel()
        _check_probe(probe_frames(reader.sample(cfg.probe_frames), cfg, model), min_valid)
    return _track(reader.frames, info.fps, info.width, info.height, total, config, max_frames, key,
                  checkpoint, progress, model, min_valid)  # fmt: skip


def track_frames(frames: Iterable[np.ndarray], fps: float, config: TrackingConfig | None = None, *,
                 progress: Progress | None = None, model: FaceModel | None = None) -> Tracks:  # fmt: skip
    """Track a sequence of rgb uint8 [H, W, 3] frames of one size shown at ``fps`` (no checkpoint)."""
    frames = list(frames)
    if not frames:
        raise InputError("track_frames needs at least one frame; got none")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.shape != (h, w, 3):
            raise InputError(f"frame {i} is {f.dtype} {f.shape}; expected uint8 [{h}, {w}, 3] like frame 0")

    def source(start: int = 0):
        for i in range(start, len(frames)):
            yield i, i / fps, frames[i]

    return _track(source, fps, w, h, len(frames), config, None, None, None, progress, model)


def _track(source, fps, width, height, total, config, max_frames, key, checkpoint, progress, model,
           min_valid: float | None = None) -> Tracks:  # fmt: skip
    cfg = config or TrackingConfig()
    ckpt = Path(checkpoint) if checkpoint is not None else None
    state = PassState.load(ckpt, key) if ckpt is not None and ckpt.exists() else None
    if state is not None:
        log.info("tracking: resuming from %s at frame %d", ckpt, state.done)
    state = state or PassState()
    fp = FramePass(cfg, state, model)
    t0, start = time.perf_counter(), state.done
    # refused frames beyond this and min_valid cannot be met however the rest of the video goes
    allowed = None if min_valid is None else (1.0 - min_valid) * total * _TOTAL_SLACK
    refused, stopped = sum(r != 0 for r in state.reason), False
    for index, t, rgb in source(state.done):
        if max_frames is not None and index >= max_frames:
            break
        if allowed is not None and refused > allowed:
            stopped = True
            break
        fp.push(index, t, rgb)
        refused += state.reason[-1] != 0
        done = state.done
        if ckpt is not None and done % cfg.checkpoint_every == 0:
            state.save(ckpt, key)
        if done % cfg.log_every == 0 or done == total:
            eta = (time.perf_counter() - t0) / max(done - start, 1) * max(total - done, 0)
            log.info("tracking: frames %d/%d, %.1f%% kept, ETA %.0f s", done, total,
                     100 * np.mean(np.asarray(state.reason) == 0), eta)  # fmt: skip
            if progress is not None:
                progress("track", done, total, eta)
    if state.done == 0:
        raise InputError("the video decoded to no frames")
    if stopped:
        if ckpt is not None:
            state.save(ckpt, key)
        top = _top_reasons(np.asarray(state.reason))
        raise TrackingError(f"tracking stopped at frame {state.done} of {total}: the face was refused in "
                            f"{refused} frames ({top}), so fewer than {100 * min_valid:.0f} % of the frames "
                            "can be tracked")  # fmt: skip
    timing = {k: 1e3 * v[0] / max(v[1], 1) for k, v in fp.timing.items()}
    log.info("tracking: ms per call %s", {k: round(v, 2) for k, v in timing.items()})
    t1 = time.perf_counter()
    tracks = finish(state.arrays(), fps, width, height, cfg)
    timing["finish_per_frame"] = 1e3 * (time.perf_counter() - t1) / state.done
    tracks.config["_timing_ms"] = timing  # wall ms per call, for benchmarks
    if progress is not None:
        progress("finish", state.done, state.done, 0.0)
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return tracks


class TrackingError(InputError):
    """A video whose face cannot be tracked well enough to make an avatar from it."""


def check_tracks(tracks: Tracks, min_valid: float = 0.5) -> Tracks:
    """Return ``tracks`` if at least ``min_valid`` of the frames are valid, else TrackingError
    naming the share and the commonest refusals (the requirement: one face, visible, frontal)."""
    share = float(tracks.valid.mean()) if len(tracks) else 0.0
    if share >= min_valid:
        return tracks
    top = _top_reasons(tracks.reason)
    raise TrackingError(f"the face is tracked in {100 * share:.0f} % of {len(tracks)} frames; at least "
                        f"{100 * min_valid:.0f} % is needed ({top})")  # fmt: skip


def _top_reasons(reason: np.ndarray) -> str:
    """The three commonest refusals of reason codes [T] uint8, e.g. 'no face found: 12 frames'."""
    codes, counts = np.unique(reason[reason != 0], return_counts=True)
    pairs = sorted(zip(counts.tolist(), codes.tolist(), strict=True), key=lambda p: (-p[0], p[1]))[:3]
    return ", ".join(f"{REASON_TEXT[REASONS[c]]}: {n} frames" for n, c in pairs)


def _check_probe(probe: ProbeResult, min_valid: float) -> None:
    """TrackingError when the probe kept so few frames that min_valid is out of reach."""
    n, k = len(probe.reasons), probe.kept
    risk = sum(math.comb(n, i) * min_valid**i * (1 - min_valid) ** (n - i) for i in range(k + 1))
    if n == 0 or risk > PROBE_RISK:
        return
    top = ", ".join(f"{REASON_TEXT[r]}: {c}" for r, c in list(probe.counts().items())[:3])
    raise TrackingError(f"the face is tracked in {probe.kept} of {n} frames sampled across the video ({top}); "
                        f"at least {100 * min_valid:.0f} % of the frames must be tracked")  # fmt: skip


def finish(raw: dict[str, np.ndarray], fps: float, width: int, height: int, cfg: TrackingConfig) -> Tracks:
    """The finishing pass over the frame pass's arrays -> Tracks (deterministic, no pixels)."""
    reason = raw["reason"].copy()
    pts = raw["landmarks_raw"].astype(np.float64)
    lip = raw["lip_contrast"]
    ok = reason == 0
    med = float(np.nanmedian(lip[ok])) if ok.any() else float("nan")
    if med > cfg.grey_contrast:
        hidden = ok & ~(lip >= cfg.min_lip_contrast * med)  # NaN contrast counts as hidden
        reason[hidden] = _MOUTH_OCCLUDED
    elif ok.any():
        log.warning("lip colour contrast %.3f: grey-scale or unusual colour; the mouth-occlusion check is off", med)
    ok = reason == 0
    iod = float(np.median([inter_ocular(p) for p in pts[ok]])) if ok.any() else 1.0
    rate = fps
    # the causal filter lags a jaw opening by a frame (closed loop: lip gap best matched the
    # truth one frame late, r 0.82 on time, 0.90 late); the mean of a forward and a backward
    # pass has no lag (0.905 on time) and the same stillness
    fwd = one_euro(pts / iod, rate, cfg.min_cutoff_hz, cfg.beta, valid=ok)
    bwd = one_euro(pts[::-1] / iod, rate, cfg.min_cutoff_hz, cfg.beta, valid=ok[::-1])[::-1]
    smooth = 0.5 * (fwd + bwd) * iod
    k = intrinsics(width, height, cfg.focal, cfg.focal_scale)
    t_count = len(reason)
    rot = np.full((t_count, 3), np.nan)
    trans = np.full((t_count, 3), np.nan)
    err = np.full(t_count, np.nan)
    init = None
    for i in np.flatnonzero(ok):
        r, t, e = solve_pnp(MEAN_FACE[RIGID], smooth[i, RIGID], k, init)
        rot[i], trans[i], err[i] = r, t, e
        init = (r, t)
    euler = np.full((t_count, 3), np.nan)
    for i in np.flatnonzero(ok):
        euler[i] = euler_yxz(rodrigues(rot[i]))
    reason[ok & (np.abs(euler[:, 1]) > cfg.max_yaw_deg)] = _TURNED
    ok = reason == 0
    feats = np.full((t_count, len(FEATURES)), np.nan, np.float32)
    if ok.any():
        corners = np.linalg.norm(smooth[:, 54] - smooth[:, 48], axis=1)
        lips = _colour_width(raw.get("mouth_width"), corners, ok, trans, euler, k, rate, cfg)
        feats[ok] = features(frontal_mm(smooth[ok], rot[ok], trans[ok], k), None if lips is None else lips[ok])
    rest = rest_values(feats, ok) if ok.any() else {}
    art = np.full((t_count, len(ARTICULATION)), np.nan, np.float32)
    if ok.any():
        art[ok] = articulation(feats[ok], rest)
    matte = np.full((t_count, VERTICES, 2), np.nan, np.float32)
    for i in np.flatnonzero(ok):
        matte[i] = matte_polygon(smooth[i])
    smooth[~ok] = np.nan
    for a in (rot, trans, err, euler):
        a[~ok] = np.nan
    counts = {REASONS[c]: int(n) for c, n in zip(*np.unique(reason, return_counts=True), strict=True)}
    log.info("tracking: %d frames, %.1f%% valid, reasons %s", t_count, 100 * ok.mean(), counts)
    return Tracks(fps=float(fps), width=int(width), height=int(height), times=raw["times"],
                  boxes=raw["boxes"], faces=raw["faces"], landmarks_raw=raw["landmarks_raw"],
                  landmarks=smooth.astype(np.float32), spread=raw["spread"], lip_contrast=lip,
                  mouth_width=raw.get("mouth_width", np.full(t_count, np.nan, np.float32)),
                  valid=ok, reason=reason, rotvec=rot.astype(np.float32),
                  translation=trans.astype(np.float32), euler=euler.astype(np.float32),
                  reprojection=err.astype(np.float32), features=feats, articulation=art, matte=matte,
                  intrinsics=k, rest=rest, config=cfg.to_dict())  # fmt: skip


def _colour_width(width_px: np.ndarray | None, corners_px: np.ndarray, ok: np.ndarray, trans: np.ndarray,
                  euler: np.ndarray, k: np.ndarray, rate: float, cfg: TrackingConfig) -> np.ndarray | None:  # fmt: skip
    """The lips' colour width float [T] px -> template mm (like frontal_mm: over the pose's scale and
    cos(yaw)), gaps filled over time and smoothed both ways like the landmarks; None when it is
    off or measured on too few valid frames (the caller keeps the landmark width).

    A frame whose colour width over the landmark corners' distance ``corners_px`` [T] strays more
    than ``MAX_RATIO_STRAY`` from the video's median ratio counts as not measured: the lips' ends
    move against dlib's corners by about that much at most (closed loop: ratio 1.04-1.28 about a
    median of 1.17, 5th-95th percentile), and an edge that runs on into the skin's folds strays
    further."""
    if width_px is None or not cfg.mouth_colour or not ok.any():
        return None
    measured = ok & np.isfinite(width_px)
    if measured.any():
        ratio = width_px / np.maximum(corners_px, 1e-6)
        measured &= np.abs(ratio - np.median(ratio[measured])) <= MAX_RATIO_STRAY
    share = measured.sum() / ok.sum()
    if share < cfg.min_colour_share:
        log.info("tracking: mouth colour width measured on %.0f%% of the valid frames (< %.0f%%): "
                 "round/spread from the landmark corners", 100 * share, 100 * cfg.min_colour_share)  # fmt: skip
        return None
    scale = k[0, 0] / np.maximum(trans[:, 2], 1e-6)
    cos_yaw = np.maximum(np.cos(np.radians(np.nan_to_num(euler[:, 1]))), 0.3)
    mm = np.full(len(ok), np.nan)
    mm[measured] = width_px[measured] / scale[measured] / cos_yaw[measured]
    idx = np.flatnonzero(ok)
    mm[idx] = np.interp(idx, np.flatnonzero(measured), mm[measured])
    unit = float(np.median(mm[idx]))  # smoothed in mouth widths, as the landmarks in eye distances
    fwd = one_euro(np.nan_to_num(mm) / unit, rate, cfg.min_cutoff_hz, cfg.beta, valid=ok)
    bwd = one_euro(np.nan_to_num(mm[::-1]) / unit, rate, cfg.min_cutoff_hz, cfg.beta, valid=ok[::-1])[::-1]
    out = 0.5 * (fwd + bwd) * unit
    out[~ok] = np.nan
    return out
