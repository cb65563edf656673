"""``huma-rt train``: a talking-head video -> an avatar bundle, in stages that survive interruption.

    result = train_avatar("talk.mp4", "me.bundle", TrainConfig(), audio=None, resume=False)
    result.bundle, result.report   # me.bundle, me.report/

Stages (each output kept in the work folder ``me.train/``, see pipeline_work):

- ``video``: the file checked against the contract (video.py: readable, 10 s - 10 min) and its
  speech track (or ``audio``, a WAV of the same speech) at 16 kHz -> video.json, speech.npy.
- ``track``: face tracking (tracking.py, checkpointed) -> tracks.npz; too few valid frames
  (one face, visible, roughly frontal) is a TrackingError naming the share and the reasons;
  the refused frames are left out of training and counted in the report.
- ``static``: the frames + tracks as fit data (fit_data.py) -> the static avatar (fit_static.py,
  checkpointed in static/) -> static/result.*.
- ``codes``: the person's articulation calibrated onto the demo's scale and embedded as motion
  codes (articulation_codes.py) -> codes.npz, calibration.json.
- ``articulated``: the deformer trained on the frames driven by those codes (fit_articulated.py,
  checkpointed in articulated/) -> articulated/result.*.
- ``audio``: the shipped person-independent audio path, adapted on the speech when there is
  one (audio_adapt.py) -> audio/encoder.*; a silent video keeps the shipped one.
- ``pack``: the bundle (pack_avatar.py).

Then the report folder ``me.report/`` (report.py). A stage that finished is not redone on
resume; a changed option or input redoes that stage and the ones after it (the log names the
changed options); a work folder made from another video is refused. Errors are HumaErrors and
leave the finished stages and the checkpoints in place.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt._files import sha256_file
from huma_rt.errors import HumaError, InputError

from .fit_static import StaticFitConfig
from .pipeline_work import (
    TrainError,
    WorkFolder,
    load_articulated,
    load_encoder,
    load_static,
    read_json,
    read_npz,
    save_articulated,
    save_encoder,
    save_static,
    stage_key,
    write_json,
    write_npz,
)
from .progress import Progress, Reporter, StageProgress
from .tracking import TrackingConfig, check_tracks, track_video
from .tracking_tracks import Tracks
from .video import VideoConfig, open_video

__all__ = ["STAGES", "TrainConfig", "TrainError", "TrainResult", "train_avatar", "work_paths"]

log = logging.getLogger(__name__)

STAGES = ("video", "track", "static", "codes", "articulated", "audio", "pack")
RATE = 16000
CODE_FPS = 25.0  # the runtime's and the audio encoder's frame rate (EncoderConfig.fps)
SILENT_RMS = 1e-4  # a speech track quieter than this (digital silence) is treated as absent
# options that change how often a stage logs or saves, not what it computes
_NO_EFFECT = ("checkpoint_every", "log_every", "torch_threads")


def _optional_config(module: str, name: str) -> Callable[[], Any]:
    """A default factory for a stage config whose module may be absent from this build."""

    def make():
        import importlib

        try:
            return getattr(importlib.import_module(f"huma_rt.train.{module}"), name)()
        except (ImportError, AttributeError):
            return None

    return make


@dataclass
class TrainConfig:
    """Options of every stage. video: VideoConfig (limits, tracking size). tracking:
    TrackingConfig. min_valid: the share of frames that must be tracked (below: TrackingError).
    fit_side: the fits' frame size, longer side in pixels (the static and articulated downscale
    is chosen for it; 0: keep each fit config's own ``downscale``); the bundle renders at that
    size. static: StaticFitConfig. articulated: ArticulatedFitConfig. audio: AudioAdaptConfig.
    name: the avatar's name in the bundle (None: the video's file name). threads: torch's
    intra-op threads for the whole run (None: leave; a fit may set its own while it runs)."""

    video: VideoConfig = field(default_factory=VideoConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    min_valid: float = 0.5
    fit_side: int = 256
    static: StaticFitConfig = field(default_factory=StaticFitConfig)
    articulated: Any = field(default_factory=_optional_config("fit_articulated", "ArticulatedFitConfig"))
    audio: Any = field(default_factory=_optional_config("audio_adapt", "AudioAdaptConfig"))
    name: str | None = None
    threads: int | None = 2

    def __post_init__(self) -> None:
        if not isinstance(self.min_valid, (int, float)) or not 0 < self.min_valid <= 1:
            raise InputError(f"min_valid must be in (0, 1]; got {self.min_valid!r}")
        if isinstance(self.fit_side, bool) or not isinstance(self.fit_side, int) or self.fit_side < 0:
            raise InputError(f"fit_side must be an integer >= 0 (0: the fit configs' own downscale); got {self.fit_side!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):  # fmt: skip
            raise InputError(f"threads must be None or an integer >= 1; got {self.threads!r}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("video", "tracking", "static", "articulated", "audio"):
            v = d[k]
            d[k] = None if v is None else (v.to_dict() if hasattr(v, "to_dict") else asdict(v))
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
                if default is None:
                    raise TrainError(f"TrainConfig.{k} is given, but this build has no {k} stage module")
                merged = {**(default.to_dict() if hasattr(default, "to_dict") else asdict(default)), **d[k]}
                try:
                    d[k] = type(default)(**merged)
                except TypeError as exc:
                    raise InputError(f"TrainConfig.{k}: {exc}") from None
        return cls(**d)

    @classmethod
    def quick(cls) -> TrainConfig:
        """Tiny fits (tests, smoke runs): every stage runs, the avatar is rough."""
        from .densify import DensifyConfig

        cfg = cls(fit_side=64, threads=1)
        cfg.static = StaticFitConfig(iterations=60, init_count=600, holdout_every=8, sh_degree=0,
                                     checkpoint_every=20, log_every=10,
                                     densify=DensifyConfig(start=10**9, stop=10**9, opacity_reset_every=0))  # fmt: skip
        if cfg.articulated is not None:
            cfg.articulated = type(cfg.articulated)(**{
                **_as_dict(cfg.articulated), "iterations": 60, "region_probes": 8, "plane_resolution": 16,
                "hidden": 16, "layers": 1, "checkpoint_every": 20, "log_every": 10})  # fmt: skip
        if cfg.audio is not None:
            cfg.audio = type(cfg.audio)(**{**_as_dict(cfg.audio), "steps": 20, "eval_every": 5, "batch": 4})
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
    run = _Run(video, audio, out, cfg, wf, reader, Reporter(progress))
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


def _write_report(run: _Run, report_dir: Path) -> None:
    """The report of whatever exists; a failure here is logged, never hides the run's own error."""
    from .report import write_report

    try:
        write_report(run.wf.root, report_dir, run.video, run.cfg.video, run.done)
    except HumaError as exc:
        log.warning("report not written: %s", exc)
    except Exception:  # the report is a by-product: keep the stages' outcome visible
        log.exception("report not written")


class _Run:
    """One call of train_avatar: the stage keys, the stages' outputs as they become available."""

    def __init__(self, video: Path, audio: Path | None, out: Path, cfg: TrainConfig, wf: WorkFolder, reader,
                 reporter: Reporter) -> None:  # fmt: skip
        self.video, self.audio, self.out, self.cfg, self.wf = video, audio, out, cfg, wf
        self.reader, self.report = reader, reporter
        self.video_info = asdict(reader.info)
        self.keys: dict[str, str] = {}
        self.done: dict[str, dict] = {}
        self._cache: dict[str, Any] = {}

    # -- the stage loop -----------------------------------------------------------------------
    def stage(self, name: str) -> None:
        options = self._options(name)
        upstream = [self.keys[u] for u in _UPSTREAM[name]]
        key = self.keys[name] = stage_key(name, options, upstream)
        if self.wf.finished(name, key, options) and self._outputs_exist(name):
            self.report(StageProgress(name, "skip"))
            self.done[name] = {"seconds": self.wf.stages[name]["seconds"], "skipped": True,
                               "summary": self.wf.stages[name].get("summary", {})}  # fmt: skip
            return
        self.report(StageProgress(name, "start"))
        t0 = time.perf_counter()
        summary = getattr(self, f"_run_{name}")()
        seconds = time.perf_counter() - t0
        self.wf.finish(name, key, options, seconds, summary)
        self.done[name] = {"seconds": seconds, "skipped": False, "summary": summary}
        self.report(StageProgress(name, "end", seconds=seconds, extra=summary))

    def _options(self, name: str) -> dict:
        c = self.cfg
        if name == "video":
            audio_sha = sha256_file(self.audio) if self.audio is not None else None
            return {"video_sha": self.wf.video_sha, "video": c.video.to_dict(), "audio_sha": audio_sha}
        if name == "track":
            return {"tracking": _effect(c.tracking.to_dict()), "min_valid": c.min_valid}
        if name == "static":
            return {"static": _effect(self._fit_config("static").to_dict())}
        if name == "codes":
            return {"version": 1}
        if name == "articulated":
            return {"articulated": _effect(_as_dict(self._fit_config("articulated")))}
        if name == "audio":
            return {"audio": _effect(_as_dict(c.audio))}
        return {"name": self._name(), "out": str(self.out.resolve())}

    def _outputs_exist(self, name: str) -> bool:
        files = {"video": ["video.json"], "track": ["tracks.npz"], "static": ["static/result.npz"],
                 "codes": ["codes.npz"], "articulated": ["articulated/result.npz"], "audio": ["audio/encoder.pt"]}  # fmt: skip
        paths = [self.wf.path(f) for f in files.get(name, [])] or [self.out]
        return all(p.exists() for p in paths)

    def metrics(self) -> dict:
        out = {}
        for name, sub in (("static", "static/result.json"), ("articulated", "articulated/result.json")):
            p = self.wf.path(sub)
            if name in self.done and p.is_file():
                m = read_json(p)["metrics"]
                out[name] = {k: v for k, v in m.items() if k != "frames"}
        p = self.wf.path("audio/encoder.json")
        if "audio" in self.done and p.is_file():
            out["audio"] = read_json(p)["metrics"]
        return out

    # -- inputs shared by stages ----------------------------------------------------------------
    def _name(self) -> str:
        return self.cfg.name or self.video.stem

    def _tracks(self) -> Tracks:
        if "tracks" not in self._cache:
            self._cache["tracks"] = Tracks.load(self.wf.path("tracks.npz"))
        return self._cache["tracks"]

    def _speech(self) -> np.ndarray | None:
        p = self.wf.path("speech.npy")
        return np.load(p, allow_pickle=False) if p.is_file() else None

    def _fit_config(self, name: str):
        """The static / articulated config with the downscale that gives ``fit_side`` pixels."""
        sub = getattr(self.cfg, name)
        if sub is None:
            raise TrainError(f"the {name} stage is not available in this build (module missing)")
        if self.cfg.fit_side == 0 or not hasattr(sub, "downscale"):
            return sub
        longer = max(self.reader.info.width, self.reader.info.height)
        d = max(1, int(round(longer / self.cfg.fit_side)))
        return type(sub)(**{**_as_dict(sub), "downscale": d}) if d != sub.downscale else sub

    def _fit_data(self):
        """StaticFitData of every frame (decoded once per run; the fits share it)."""
        if "data" not in self._cache:
            from .fit_data import fit_data_from_tracks

            tracks = self._tracks()
            n = len(tracks)
            frames = np.empty((n, tracks.height, tracks.width, 3), np.uint8)
            got = 0
            for i, _, rgb in open_video(self.video, self.cfg.video).frames():
                if i >= n:
                    break
                frames[i] = rgb
                got = i + 1
            if got != n:
                raise TrainError(f"{self.video}: decoded {got} frames now, {n} when it was tracked; "
                                 "has the file changed? rerun with --overwrite")  # fmt: skip
            self._cache["data"] = fit_data_from_tracks(frames, tracks)
        return self._cache["data"]

    def _stage_dir(self, name: str) -> tuple[Path, bool]:
        """(the stage's folder, whether it holds checkpoints of this very stage key to resume
        from); a folder left by the same stage under other options or inputs is emptied."""
        folder, key = self.wf.path(name), self.keys[name]
        stamp = folder / "stage.key"
        same = stamp.is_file() and stamp.read_text() == key
        if folder.exists() and not same:
            log.info("stage %s: its folder holds work under other options; starting it afresh", name)
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)
        return folder, same

    # -- the stages ------------------------------------------------------------------------------
    def _run_video(self) -> dict:
        info = self.reader.info
        if self.audio is not None:
            from huma_rt.media.audio_file import load_audio

            pcm, _ = load_audio(self.audio, RATE, max_seconds=self.cfg.video.max_seconds + 1)
            if abs(pcm.size / RATE - info.seconds) > 1.0:
                log.warning("--audio %s lasts %.1f s, the video %.1f s: it should be the video's own speech, "
                            "aligned at its start", self.audio, pcm.size / RATE, info.seconds)  # fmt: skip
            source = str(self.audio)
        else:
            pcm = self.reader.audio()
            source = "video" if pcm is not None else None
        if pcm is not None and float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) < SILENT_RMS:
            log.info("the speech track is silent: the shipped audio path is kept as it is")
            pcm, source = None, None
        speech = self.wf.path("speech.npy")
        speech.unlink(missing_ok=True)
        if pcm is not None:
            np.save(speech, np.ascontiguousarray(pcm, np.float32))
        write_json(self.wf.path("video.json"), {"info": self.video_info, "speech": source})
        return {"frames": info.frames, "seconds": round(info.seconds, 3), "fps": info.fps,
                "size": [info.width, info.height], "speech": source}  # fmt: skip

    def _run_track(self) -> dict:
        tracks_path = self.wf.path("tracks.npz")
        key_path = self.wf.path("tracks.key")
        # tracks of a failed check are kept: a resume re-checks them instead of tracking again
        if tracks_path.is_file() and key_path.is_file() and key_path.read_text() == self.keys["track"]:
            tracks = Tracks.load(tracks_path)
        else:
            tracks = track_video(self.video, self.cfg.tracking, video_config=self.cfg.video,
                                 checkpoint=self.wf.path("track.ckpt.npz"), progress=self.report.tracking("track"))  # fmt: skip
            tracks.save(tracks_path)
            key_path.write_text(self.keys["track"])
        self._cache["tracks"] = tracks
        check_tracks(tracks, self.cfg.min_valid)
        from .tracking_tracks import REASONS

        left_out = {REASONS[c]: int((tracks.reason == c).sum()) for c in np.unique(tracks.reason) if c != 0}
        return {"frames": len(tracks), "valid": int(tracks.valid.sum()), "left_out": left_out}

    def _run_static(self) -> dict:
        from .fit_static import fit_static

        folder, resume = self._stage_dir("static")
        data = self._fit_data()
        write_npz(self.wf.path("poses.npz"), head_quat=np.asarray(data.head_quat, np.float32),
                  head_trans=np.asarray(data.head_trans, np.float32), valid=data.valid_mask())  # the poses the fits saw (report)
        result = fit_static(data, self._fit_config("static"), folder, resume=resume,
                            progress=self.report.fit("static"))  # fmt: skip
        save_static(result, folder)
        self._cache["static"] = result
        return _fit_summary(result)

    def _run_codes(self) -> dict:
        from .articulation_codes import calibrate, params_to_codes, tracked_params

        tracks = self._tracks()
        cal = calibrate(tracks.articulation, tracks.valid)
        params = np.asarray(tracked_params(tracks, cal), np.float32)
        codes = np.asarray(params_to_codes(np.nan_to_num(params)), np.float32)
        codes[~np.isfinite(params).all(1)] = np.nan
        write_npz(self.wf.path("codes.npz"), params=params, codes=codes, times=tracks.times)
        write_json(self.wf.path("calibration.json"), cal.to_dict())
        return {"frames": int(np.isfinite(params).all(1).sum()), "code_dim": int(codes.shape[1])}

    def _run_articulated(self) -> dict:
        from .fit_articulated import fit_articulated

        static = self._cache.get("static") or load_static(self.wf.path("static"))
        codes = np.nan_to_num(read_npz(self.wf.path("codes.npz"))["codes"])  # frames left out: never drawn
        folder, resume = self._stage_dir("articulated")
        result = fit_articulated(self._fit_data(), static, codes, self._fit_config("articulated"), folder,
                                 resume=resume, progress=self.report.fit("articulated"))  # fmt: skip
        save_articulated(result, folder)
        self._cache["articulated"] = result
        return _fit_summary(result)

    def _run_audio(self) -> dict:
        from .audio_adapt import adapt_encoder, load_demo_encoder, resample_params

        folder, _ = self._stage_dir("audio")
        encoder = load_demo_encoder()
        pcm = self._speech()
        if pcm is None:
            metrics = {"adapted": False, "reason": "no speech track: the shipped person-independent audio path"}
        else:
            z = read_npz(self.wf.path("codes.npz"))
            frames = -(-pcm.size // int(RATE / CODE_FPS))
            params = resample_params(z["params"], z["times"], frames, CODE_FPS)
            result = adapt_encoder(encoder, pcm, params, self.cfg.audio)
            encoder = result.encoder
            metrics = {**result.metrics, "adapted": bool(result.adapted)}
        save_encoder(encoder, metrics, folder)
        return {k: v for k, v in metrics.items() if isinstance(v, (bool, str, int, float))}

    def _run_pack(self) -> dict:
        from .pack_avatar import median_pose, pack_avatar

        art = self._cache.get("articulated") or load_articulated(self.wf.path("articulated"))
        encoder, _ = load_encoder(self.wf.path("audio"))
        poses = read_npz(self.wf.path("poses.npz"))
        rest = median_pose(poses["head_quat"], poses["head_trans"], poses["valid"])
        # an existing bundle was refused before the run began unless resuming or overwriting
        path = pack_avatar(art.gaussians, art.spatial, art.deformer, encoder, art.camera,
                           np.asarray(art.background, np.float32), self.out, name=self._name(),
                           rest_pose=rest, overwrite=True)  # fmt: skip
        return {"bundle": str(path), "gaussians": int(art.gaussians.count)}


# the stages each stage reads (their keys enter its key)
_UPSTREAM = {"video": [], "track": ["video"], "static": ["track"], "codes": ["track"],
             "articulated": ["static", "codes"], "audio": ["codes", "video"], "pack": ["articulated", "audio"]}  # fmt: skip


def _as_dict(cfg) -> dict:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)


def _effect(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _NO_EFFECT}


def _fit_summary(result) -> dict:
    m = result.metrics
    out = {k: round(float(m[k]), 3) for k in ("psnr", "ssim", "psnr_face", "ssim_face") if k in m}
    out["gaussians"] = int(result.gaussians.count)
    out["fit_seconds"] = round(float(result.seconds), 1)
    return out
