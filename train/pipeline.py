"""``huma-rt train``: a talking-head video -> an avatar bundle, in stages that survive interruption.

    result = train_avatar("talk.mp4", "me.bundle", TrainConfig(), audio=None, resume=False)
    result.bundle, result.report   # me.bundle, me.report/

Stages (each output kept in the work folder ``me.train/``, see pipeline_work):

- ``video``: the file checked against the contract (video.py: readable, 10 s - 10 min) ->
  video.json.
- ``track``: face tracking (tracking.py, checkpointed) -> tracks.npz; too few valid frames
  (one face, visible, roughly frontal) is a TrackingError naming the share and the reasons;
  the refused frames are left out of training and counted in the report.
- ``static``: the frames (at most ``max_fit_frames``, evenly spread) + tracks as fit data
  (fit_data.py) -> the static avatar (fit_static.py, checkpointed in static/) -> static/result.*,
  poses.npz (each fit row's video frame and head pose).
- ``codes``: the person's articulation calibrated onto the demo's scale and embedded as motion
  codes (articulation_codes.py) -> codes.npz, calibration.json.
- ``articulated``: the deformer trained on the frames driven by those codes (fit_articulated.py,
  checkpointed in articulated/) -> articulated/result.*.
- ``audio``: the shipped person-independent audio path, adapted on the speech (``audio``, a
  recording of the video's speech, else the video's own track) when there is one
  (audio_adapt.py) -> audio/encoder.*; a silent video keeps the shipped one.
- ``pack``: the bundle (pack_avatar.py).

Then the report folder ``me.report/`` (report.py). A stage that finished is not redone on
resume; a changed option or input redoes that stage and the ones after it (the log names the
changed options); a work folder made from another video is refused. Errors are HumaErrors and
leave the finished stages and the checkpoints in place.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from huma_rt._files import sha256_file
from huma_rt.errors import HumaError, InputError

from .audio_adapt import AudioAdaptConfig
from .fit_articulated import ArticulatedFitConfig
from .fit_static import StaticFitConfig
from .pipeline_stages import StageRunner, as_dict
from .pipeline_work import TrainError, WorkFolder
from .pose_refine import PoseRefineConfig
from .progress import Progress, Reporter
from .tracking import TrackingConfig
from .video import VideoConfig, open_video

__all__ = ["STAGES", "TrainConfig", "TrainError", "TrainResult", "train_avatar", "work_paths"]

log = logging.getLogger(__name__)

STAGES = ("video", "track", "static", "codes", "articulated", "audio", "pack")


def default_static_config() -> StaticFitConfig:
    """The static fit for a 2-minute video on 2 cores (franck, bench/train_franck_static: every
    2nd frame of 2 min at 180x144, 3000 iterations, ~5 min): density control from 300 to 1500
    iterations and at most 25k Gaussians (left running it grew to 66k and tripled the cost per
    iteration for no held-out gain); a checkpoint every 250 iterations (about half a minute)."""
    from .densify import DensifyConfig

    return StaticFitConfig(iterations=3000, checkpoint_every=250, log_every=100,
                           densify=DensifyConfig(start=300, stop=1500, interval=100, max_count=25_000))  # fmt: skip


@dataclass
class TrainConfig:
    """Options of every stage. video: VideoConfig (limits, tracking size). tracking:
    TrackingConfig. min_valid: the share of frames that must be tracked (below: TrackingError).
    fit_side: the fits' frame size, longer side in pixels (the static and articulated downscale
    is chosen for it; 0: keep each fit config's own ``downscale``). pack_side: the bundle renders
    at the largest whole multiple of the fit's size whose longer side is at most this (franck's
    180 px fit: 360, its video's size; the closed loop's 170: 510; 0 or less than the fit: the
    fit's size), the Gaussians widened to look as the fit drew them
    (pack_avatar.lowpass_for_upscale); a frame's cost grows with its pixels. prune_below: the
    bundle leaves out the Gaussians that never cover this share of one fit-size pixel at the rest
    pose (prune_hidden.py; 0: keep all). max_fit_frames: the most frames the fits hold (all frames are decoded into memory at
    the tracking size: 1500 of 360x288 are ~0.5 GB, with mattes ~0.6 GB); a longer video's frames
    are taken evenly spread (2 minutes at 24 fps: every 2nd). static: StaticFitConfig
    (:func:`default_static_config`). articulated: ArticulatedFitConfig. audio: AudioAdaptConfig.
    name: the avatar's name in the bundle (None: the video's file name). threads: torch's
    intra-op threads for the whole run (None: leave; a fit may set its own while it runs)."""

    video: VideoConfig = field(default_factory=VideoConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    min_valid: float = 0.5
    fit_side: int = 180
    pack_side: int = 512
    prune_below: float = 0.02
    max_fit_frames: int = 1500
    static: StaticFitConfig = field(default_factory=lambda: default_static_config())
    articulated: ArticulatedFitConfig = field(default_factory=lambda: ArticulatedFitConfig(checkpoint_every=100))
    audio: AudioAdaptConfig = field(default_factory=AudioAdaptConfig)
    name: str | None = None
    threads: int | None = 2

    def __post_init__(self) -> None:
        if not isinstance(self.min_valid, (int, float)) or not 0 < self.min_valid <= 1:
            raise InputError(f"min_valid must be in (0, 1]; got {self.min_valid!r}")
        if isinstance(self.max_fit_frames, bool) or not isinstance(self.max_fit_frames, int) or self.max_fit_frames < 16:
            raise InputError(f"max_fit_frames must be an integer >= 16; got {self.max_fit_frames!r}")
        if isinstance(self.fit_side, bool) or not isinstance(self.fit_side, int) or self.fit_side < 0:
            raise InputError(f"fit_side must be an integer >= 0 (0: the fit configs' own downscale); got {self.fit_side!r}")
        if isinstance(self.pack_side, bool) or not isinstance(self.pack_side, int) or self.pack_side < 0:
            raise InputError(f"pack_side must be an integer >= 0 (0: the fit's size); got {self.pack_side!r}")
        if isinstance(self.prune_below, bool) or not isinstance(self.prune_below, (int, float)) \
                or not 0 <= self.prune_below < 1:  # fmt: skip
            raise InputError(f"prune_below must be a share of one pixel in [0, 1) (0: keep every Gaussian); "
                             f"got {self.prune_below!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):  # fmt: skip
            raise InputError(f"threads must be None or an integer >= 1; got {self.threads!r}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("video", "tracking", "static", "articulated", "audio"):
            v = d[k]
            d[k] = v.to_dict() if hasattr(v, "to_dict") else asdict(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict like :meth:`to_dict`'s; sub-configs may give only the fields they change."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown TrainConfig fields {unknown}; expected some of {sorted(known)}")
        d = dict(d)
        base = cls()
        for k in ("video", "tracking", "static", "articulated", "audio"):
            if k in d and isinstance(d[k], dict):
                default = getattr(base, k)
                merged = {**(default.to_dict() if hasattr(default, "to_dict") else asdict(default)), **d[k]}
                try:
                    d[k] = type(default)(**merged)
                except TypeError as exc:
                    raise InputError(f"TrainConfig.{k}: {exc}") from None
        return cls(**d)

    @classmethod
    def quick(cls) -> TrainConfig:
        """Tiny fits (tests, smoke runs): every stage runs, the avatar is rough (64 px) but its
        mouth follows speech (a 10 s closed-loop clip: ~2-3 min on a loaded 2-core machine)."""
        from .densify import DensifyConfig

        # 200 < a 10 s clip: the subsample is exercised; packed at twice the fit's size
        cfg = cls(fit_side=64, pack_side=128, max_fit_frames=200, threads=1)
        cfg.static = StaticFitConfig(iterations=60, init_count=600, holdout_every=8, sh_degree=0,
                                     checkpoint_every=20, log_every=10,
                                     densify=DensifyConfig(start=10**9, stop=10**9, opacity_reset_every=0),
                                     # joint pose steps only (free) and 2 held-out steps: a sweep of
                                     # every frame would cost 10x the 60 iterations
                                     pose=PoseRefineConfig(start=30, sweeps=(), holdout_steps=2))  # fmt: skip
        cfg.articulated = ArticulatedFitConfig(**{
            **as_dict(cfg.articulated), "iterations": 300, "region_probes": 8, "plane_resolution": 32,
            "hidden": 32, "layers": 1, "checkpoint_every": 100, "log_every": 25})  # fmt: skip
        cfg.audio = AudioAdaptConfig(**{**as_dict(cfg.audio), "steps": 20, "eval_every": 5, "batch": 4})
        return cfg


@dataclass
class TrainResult:
    """bundle: the packed avatar (None when stopped early with ``until``). work / report: the
    folders. stages: per stage {seconds, skipped (done in an earlier run), summary}. video: the
    VideoInfo as a dict. metrics: held-out PSNR/SSIM per fit stage and the audio path's numbers."""

    bundle: Path | None
    work: Path
    report: Path
    stages: dict[str, dict]
    video: dict
    metrics: dict


def work_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(work folder, report folder) beside the bundle path ``out``: me.bundle -> me.train, me.report."""
    out = Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(stem + ".train"), out.with_name(stem + ".report")


def train_avatar(video: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None, *,
                 audio: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
                 until: str | None = None, progress: Progress | None = None) -> TrainResult:  # fmt: skip
    """Make the avatar bundle ``out`` from ``video`` (see the module docstring).

    audio: a WAV (any format the runtime reads) with the video's speech, used instead of its
    own track. resume: continue a run whose work folder exists (finished stages are kept,
    checkpoints continued). overwrite: start again even though the work folder holds a run.
    until: stop after this stage (a name in STAGES) and write the report of what exists.
    progress: called with a StageProgress at every stage's start, end and updates.
    """
    cfg = config or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise InputError(f"config must be a TrainConfig; got {type(cfg).__name__}")
    if until is not None and until not in STAGES:
        raise InputError(f"until must be one of {', '.join(STAGES)}; got {until!r}")
    video = Path(video)
    audio = None if audio is None else Path(audio)
    out = Path(out)
    work_dir, report_dir = work_paths(out)
    reader = open_video(video, cfg.video)  # the contract first: nothing is written for a bad file
    if audio is not None and not audio.is_file():
        raise InputError(f"--audio {audio} does not exist or is not a file")
    if out.exists() and not (resume or overwrite):
        raise TrainError(f"{out} exists; add --overwrite to replace it (or --resume to continue its run)")
    wf = WorkFolder.open(work_dir, video, sha256_file(video), resume=resume, overwrite=overwrite)
    run = StageRunner(video, audio, out, cfg, wf, reader, Reporter(progress))
    import torch

    before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        for stage in STAGES:
            run.stage(stage)
            if stage == until:
                break
    finally:
        torch.set_num_threads(before)
        _write_report(run, report_dir)
    return TrainResult(out if "pack" in run.done else None, work_dir, report_dir, run.done, run.video_info,
                       run.metrics())  # fmt: skip


def _write_report(run: StageRunner, report_dir: Path) -> None:
    """The report of whatever exists; a failure here is logged, never hides the run's own error."""
    from .report import write_report

    try:
        write_report(run.wf.root, report_dir, run.video, run.cfg.video, run.done)
    except HumaError as exc:
        log.warning("report not written: %s", exc)
    except Exception:  # the report is a by-product: keep the stages' outcome visible
        log.exception("report not written")
