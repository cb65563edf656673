"""A tracking report: overlay PNG of a few frames (landmarks, pose axes, matte, articulation bars)
and a plot of the articulation tracks, written into a report folder for a person to look at.

Needs matplotlib (the ``dev`` extra); imported only when a report is written.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from huma_rt._optional import require

from .face_articulation import ARTICULATION, SIGNED
from .face_pose import project
from .tracking_tracks import REASONS, Tracks
from .video import VideoConfig, open_video

log = logging.getLogger(__name__)

_AXIS_MM = 60.0  # length of the drawn pose axes


def pick_frames(tracks: Tracks, count: int = 6) -> list[int]:
    """Frames worth looking at: evenly spread, plus the widest jaw opening and the deepest blink."""
    t = len(tracks)
    picks = set(np.linspace(0, t - 1, max(count - 2, 1)).astype(int).tolist())
    for name in ("jaw", "blink"):
        a = tracks.articulation_of(name)
        if np.isfinite(a).any():
            picks.add(int(np.nanargmax(a)))
    return sorted(picks)[:count]


REPORT_FILES = ("overlay.png", "articulation.png", "summary.json")  # what write_report writes


def write_report(tracks: Tracks, video: str | os.PathLike, out_dir: str | os.PathLike,
                 frames: list[int] | None = None, video_config: VideoConfig | None = None) -> list[Path]:  # fmt: skip
    """Write ``overlay.png``, ``articulation.png`` and ``summary.json`` into ``out_dir``; return their paths."""
    plt = require("matplotlib.pyplot", "writing a tracking report (pip install matplotlib)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = frames if frames is not None else pick_frames(tracks)
    images = _grab(video, frames, video_config)
    cols = min(3, len(frames))
    rows = -(-len(frames) // cols)
    fig, axes = plt.subplots(rows, cols * 2, figsize=(cols * 6.4, rows * 3.6),
                             gridspec_kw={"width_ratios": [3, 1.3] * cols}, squeeze=False)  # fmt: skip
    for n, i in enumerate(frames):
        ax, bars = axes[n // cols, 2 * (n % cols)], axes[n // cols, 2 * (n % cols) + 1]
        _overlay(ax, images[i], tracks, i)
        _bars(bars, tracks, i)
    for n in range(len(frames), rows * cols):
        axes[n // cols, 2 * (n % cols)].axis("off")
        axes[n // cols, 2 * (n % cols) + 1].axis("off")
    fig.tight_layout()
    overlay = out / "overlay.png"
    fig.savefig(overlay, dpi=90)
    plt.close(fig)
    curves = out / "articulation.png"
    _curves(plt, tracks, curves)
    summary = out / "summary.json"
    counts = {REASONS[c]: int((tracks.reason == c).sum()) for c in np.unique(tracks.reason)}
    summary.write_text(json.dumps({"frames": len(tracks), "valid_fraction": float(tracks.valid.mean()),
                                   "reasons": counts, "rest": tracks.rest, "overlay_frames": frames}, indent=1))  # fmt: skip
    log.info("tracking report in %s (frames %s)", out, frames)
    return [overlay, curves, summary]


def _grab(video, frames: list[int], video_config) -> dict[int, np.ndarray]:
    want, got = set(frames), {}
    for i, _, rgb in open_video(video, video_config).frames():
        if i in want:
            got[i] = rgb
            if len(got) == len(want):
                break
    return got


def _overlay(ax, rgb: np.ndarray, tracks: Tracks, i: int) -> None:
    ax.imshow(rgb)
    ax.set_axis_off()
    around = tracks.matte[i] if tracks.valid[i] else tracks.landmarks_raw[i]
    if np.isfinite(around).all():  # zoom on the face: the frame is mostly background
        (x0, y0), (x1, y1) = around.min(0), around.max(0)
        m = 0.15 * max(x1 - x0, y1 - y0)
        ax.set_xlim(max(x0 - m, 0), min(x1 + m, rgb.shape[1]))
        ax.set_ylim(min(y1 + m, rgb.shape[0]), max(y0 - m, 0))
    reason = REASONS[tracks.reason[i]]
    raw = tracks.landmarks_raw[i]
    if np.isfinite(raw).all():
        ax.plot(raw[:, 0], raw[:, 1], ".", ms=2.5, color="yellow" if tracks.valid[i] else "red")
    if tracks.valid[i]:
        pts = tracks.landmarks[i]
        ax.plot(pts[:, 0], pts[:, 1], ".", ms=2.5, color="lime")
        m = np.vstack([tracks.matte[i], tracks.matte[i][:1]])
        ax.plot(m[:, 0], m[:, 1], "-", lw=0.8, color="cyan")
        origin = np.array([[0, 20, 0]], np.float64)  # near the nose bridge, in template mm
        ends = origin + np.eye(3) * np.array([_AXIS_MM, _AXIS_MM, -_AXIS_MM])
        xy = project(np.vstack([origin, ends]), tracks.rotvec[i], tracks.translation[i], tracks.intrinsics)
        for k, colour in enumerate(("red", "magenta", "blue")):
            ax.plot([xy[0, 0], xy[k + 1, 0]], [xy[0, 1], xy[k + 1, 1]], "-", lw=1.5, color=colour)
        p, y, r = tracks.euler[i]
        ax.set_title(f"frame {i}  pitch {p:+.0f} yaw {y:+.0f} roll {r:+.0f}", fontsize=8)
    else:
        ax.set_title(f"frame {i}  INVALID: {reason}", fontsize=8, color="red")


def _bars(ax, tracks: Tracks, i: int) -> None:
    vals = tracks.articulation[i]
    y = np.arange(len(ARTICULATION))
    ax.barh(y, np.nan_to_num(vals), color=["tab:orange" if n in SIGNED else "tab:blue" for n in ARTICULATION])
    ax.set_yticks(y, ARTICULATION, fontsize=6)
    ax.set_xlim(-1, 1)
    ax.axvline(0, color="k", lw=0.5)
    ax.invert_yaxis()
    ax.tick_params(axis="x", labelsize=6)


def _curves(plt, tracks: Tracks, path: Path) -> None:
    names = ("jaw", "round", "spread", "closure", "blink_left", "blink_right", "brow_left")
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(12, 1.2 * (len(names) + 1)), sharex=True)
    t = tracks.times
    for ax, name in zip(axes, names, strict=False):
        ax.plot(t, tracks.articulation_of(name), lw=0.8)
        ax.set_ylabel(name, fontsize=7, rotation=0, ha="right")
        ax.tick_params(labelsize=6)
    axes[-1].plot(t, tracks.reason, lw=0.8, color="red")
    axes[-1].set_ylabel("reason", fontsize=7, rotation=0, ha="right")
    axes[-1].set_yticks(range(len(REASONS)), REASONS, fontsize=5)
    axes[-1].set_xlabel("seconds", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
