"""The stages of ``huma-rt train`` (train/pipeline.py): how each one runs, what it writes into the
work folder, and the options whose change redoes it. One :class:`StageRunner` per train_avatar call."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt._files import sha256_file

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
from .progress import Reporter, StageProgress
from .stage_code import stage_code
from .tracking import check_tracks, track_video
from .tracking_tracks import Tracks
from .video import open_video

log = logging.getLogger(__name__)

RATE = 16000
CODE_FPS = 25.0  # the runtime's and the audio encoder's frame rate (EncoderConfig.fps)
SILENT_RMS = 1e-4  # a speech track quieter than this (digital silence) is treated as absent
# options that change how often a stage logs or saves, or how soon it refuses, not what it computes
_NO_EFFECT = ("checkpoint_every", "log_every", "torch_threads", "probe_frames")


class StageRunner:
    """One call of train_avatar: the stage keys, the stages' outputs as they become available."""

    def __init__(self, video: Path, audio: Path | None, out: Path, cfg, wf: WorkFolder, reader,
                 reporter: Reporter) -> None:  # fmt: skip
        self.video, self.audio, self.out, self.cfg, self.wf = video, audio, out, cfg, wf
        self.reader, self.report = reader, reporter
        self.video_info = asdict(reader.info)
        self.keys: dict[str, str] = {}
        self.done: dict[str, dict] = {}
        self._cache: dict[str, Any] = {}

    # -- the stage loop -----------------------------------------------------------------------
    def stage(self, name: str) -> None:
        # the code's fingerprint is an option like the others: an upgrade or an edit of what the
        # stage runs redoes it on --resume, and the log names "code" as what changed
        options = {**self._options(name), "code": stage_code(name)}
        upstream = [self.keys[u] for u in _UPSTREAM[name]]
        key = self.keys[name] = stage_key(name, options, upstream)
        if self.wf.finished(name, key, options) and self._outputs_exist(name):
            if name == "track":  # finished under some bar: judged again under this run's
                check_tracks(self._tracks(), self.cfg.min_valid)
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
            return {"video_sha": self.wf.video_sha, "video": c.video.to_dict()}
        if name == "track":
            # not min_valid: it judges the tracks, it does not make them. A run under another
            # bar re-checks the same tracks (a finished stage too: ``stage``) instead of
            # tracking the whole video again and redoing every stage after it
            return {"tracking": _effect(c.tracking.to_dict())}
        if name == "static":
            return {"static": _effect(self._fit_config("static").to_dict()), "max_fit_frames": c.max_fit_frames}
        if name == "codes":
            return {"version": 1}
        if name == "articulated":
            return {"articulated": _effect(as_dict(self._fit_config("articulated")))}
        if name == "audio":  # the speech: --audio's bytes, else the video's (its key is upstream)
            audio_sha = sha256_file(self.audio) if self.audio is not None else None
            return {"audio": _effect(as_dict(c.audio)), "audio_sha": audio_sha}
        return {"name": self._name(), "out": str(self.out.resolve()), "pack_side": c.pack_side,
                "prune_below": c.prune_below}

    def _outputs_exist(self, name: str) -> bool:
        files = {"video": ["video.json"], "track": ["tracks.npz"], "static": ["static/result.npz", "poses.npz"],
                 "codes": ["codes.npz"], "articulated": ["articulated/result.npz"], "audio": ["audio/encoder.pt"]}  # fmt: skip
        paths = [self.wf.path(f) for f in files.get(name, [])] or [self.out]
        return all(p.exists() for p in paths)

    def metrics(self) -> dict:
        out = {}
        for name, sub in (("static", "static/result.json"), ("articulated", "articulated/result.json")):
            p = self.wf.path(sub)
            if name in self.done and p.is_file():
                out[name] = _no_frames(read_json(p)["metrics"])
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

    def _speech(self) -> tuple[np.ndarray | None, str]:
        """(speech float32 [S] at 16 kHz or None, where it came from): ``--audio``, else the
        video's own track; digital silence counts as none."""
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
            source = "the video's audio track" if pcm is not None else "none"
        if pcm is not None and float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) < SILENT_RMS:
            log.info("%s is silent: the shipped audio path is kept as it is", source)
            return None, f"{source} (silent)"
        return pcm, source

    def _fit_config(self, name: str):
        """The static / articulated config with the downscale that gives ``fit_side`` pixels."""
        sub = getattr(self.cfg, name)
        if self.cfg.fit_side == 0 or not hasattr(sub, "downscale"):
            return sub
        longer = max(self.reader.info.width, self.reader.info.height)
        d = max(1, int(round(longer / self.cfg.fit_side)))
        return type(sub)(**{**as_dict(sub), "downscale": d}) if d != sub.downscale else sub

    def _fit_index(self) -> np.ndarray:
        """The video frames the fits use, int64 [N]: all, or ``max_fit_frames`` evenly spread."""
        n, most = len(self._tracks()), self.cfg.max_fit_frames
        return np.arange(n) if n <= most else np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))

    def _fit_data(self):
        """StaticFitData of the frames :meth:`_fit_index` picks (decoded once per run; the fits share it)."""
        if "data" not in self._cache:
            from .fit_data import fit_data_from_tracks

            tracks, index = self._tracks(), self._fit_index()
            row = {int(f): r for r, f in enumerate(index)}
            frames = np.empty((index.size, tracks.height, tracks.width, 3), np.uint8)
            got = 0
            for i, _, rgb in open_video(self.video, self.cfg.video).frames():
                if i > index[-1]:
                    break
                if i in row:
                    frames[row[i]] = rgb
                    got += 1
            if got != index.size:
                raise TrainError(f"{self.video}: decoded {got} of the {index.size} frames the fits use, up to frame "
                                 f"{index[-1]} of the {len(tracks)} tracked; has the file changed? rerun with --overwrite")  # fmt: skip
            self._cache["data"] = fit_data_from_tracks(frames, tracks, index=index)
        return self._cache["data"]

    def _posed_fit_data(self):
        """:meth:`_fit_data` with the static fit's refined poses (poses.npz: train/pose_refine.py),
        which every stage after it uses."""
        if "posed" not in self._cache:
            poses = read_npz(self.wf.path("poses.npz"))
            data = self._fit_data()
            if poses["head_quat"].shape != np.shape(data.head_quat):
                raise TrainError(f"{self.wf.path('poses.npz')} holds {poses['head_quat'].shape[0]} poses for "
                                 f"{np.shape(data.head_quat)[0]} fit frames; rerun with --overwrite")  # fmt: skip
            self._cache["posed"] = replace(data, head_quat=poses["head_quat"].astype(np.float64),
                                           head_trans=poses["head_trans"].astype(np.float64))  # fmt: skip
        return self._cache["posed"]

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
        write_json(self.wf.path("video.json"), {"info": self.video_info})
        return {"frames": info.frames, "seconds": round(info.seconds, 3), "fps": info.fps,
                "size": [info.width, info.height], "audio_track": info.has_audio}  # fmt: skip

    def _run_track(self) -> dict:
        tracks_path = self.wf.path("tracks.npz")
        key_path = self.wf.path("tracks.key")
        # tracks of a failed check are kept: a resume re-checks them instead of tracking again
        if tracks_path.is_file() and key_path.is_file() and key_path.read_text() == self.keys["track"]:
            tracks = Tracks.load(tracks_path)
        else:
            tracks = track_video(self.video, self.cfg.tracking, video_config=self.cfg.video,
                                 checkpoint=self.wf.path("track.ckpt.npz"), progress=self.report.tracking("track"),
                                 min_valid=self.cfg.min_valid)  # fmt: skip
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
        result = fit_static(data, self._fit_config("static"), folder, resume=resume,
                            progress=self.report.fit("static"))  # fmt: skip
        # the fits' rows: their video frame and pose, refined by the static fit (the articulated
        # fit, the report and the pack read them back), and the tracked pose it started from
        write_npz(self.wf.path("poses.npz"), frame=self._fit_index(), head_quat=np.asarray(result.head_quat, np.float32),
                  head_trans=np.asarray(result.head_trans, np.float32), valid=data.valid_mask(),
                  tracked_quat=np.asarray(data.head_quat, np.float32),
                  tracked_trans=np.asarray(data.head_trans, np.float32))  # fmt: skip
        self._cache.pop("posed", None)
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
        codes = read_npz(self.wf.path("codes.npz"))["codes"][self._fit_index()]
        codes = np.nan_to_num(codes)  # NaN on frames left out, which the fit never draws
        folder, resume = self._stage_dir("articulated")
        result = fit_articulated(self._posed_fit_data(), static, codes, self._fit_config("articulated"), folder,
                                 resume=resume, progress=self.report.fit("articulated"))  # fmt: skip
        save_articulated(result, folder)
        self._cache["articulated"] = result
        return _fit_summary(result)

    def _run_audio(self) -> dict:
        from .audio_adapt import adapt_encoder, load_demo_encoder, resample_params

        folder, _ = self._stage_dir("audio")
        encoder = load_demo_encoder()
        pcm, source = self._speech()
        if pcm is None:
            metrics = {"adapted": False, "reason": "no speech track: the shipped person-independent audio path"}
        else:
            z = read_npz(self.wf.path("codes.npz"))
            frames = -(-pcm.size // int(RATE / CODE_FPS))
            params = resample_params(z["params"], z["times"], frames, CODE_FPS)
            result = adapt_encoder(encoder, pcm, params, self.cfg.audio)
            encoder = result.encoder
            metrics = {**result.metrics, "adapted": bool(result.adapted)}
        metrics["speech"] = source
        save_encoder(encoder, metrics, folder)
        return {k: v for k, v in metrics.items() if isinstance(v, (bool, str, int, float))}

    def _run_pack(self) -> dict:
        from .articulation_codes import blink_code
        from .fit_articulated import REGION_EYES
        from .pack_avatar import median_pose, pack_avatar
        from .prune_hidden import prune_hidden

        art = self._cache.get("articulated") or load_articulated(self.wf.path("articulated"))
        encoder, _ = load_encoder(self.wf.path("audio"))
        poses = read_npz(self.wf.path("poses.npz"))
        rest = median_pose(poses["head_quat"], poses["head_trans"], poses["valid"])
        cam = art.camera
        upscale = max(1, self.cfg.pack_side // max(cam.width, cam.height))
        codes = read_npz(self.wf.path("codes.npz"))
        blink = blink_code(codes["params"][self._fit_index()])
        if blink is None:
            log.info("pack: the fitted frames show no shut eye, so the avatar will not blink")
        plate = np.asarray(art.background, np.float32)
        pruned = prune_hidden(art.gaussians, art.spatial, art.deformer, cam, rest, plate,
                              codes["codes"][self._fit_index()], below=self.cfg.prune_below, blink_code=blink)  # fmt: skip
        gaussians = art.gaussians.subset(pruned.keep)
        eyes = [REGION_EYES] if blink is not None and (gaussians.region == REGION_EYES).any() else None
        # an existing bundle was refused before the run began unless resuming or overwriting
        path = pack_avatar(gaussians, art.spatial, art.deformer, encoder, cam, plate, self.out, name=self._name(),
                           rest_pose=rest, upscale=upscale, overwrite=True, blink_code=blink,
                           blink_regions=eyes)  # fmt: skip
        return {"bundle": str(path), "gaussians": int(gaussians.count), "fitted_gaussians": int(art.gaussians.count),
                "prune_below": self.cfg.prune_below,
                "prune_psnr": round(pruned.psnr, 2) if np.isfinite(pruned.psnr) else None,
                "blinks": blink is not None, "size": [cam.width * upscale, cam.height * upscale],
                "fit_size": [cam.width, cam.height]}  # fmt: skip


# the stages each stage reads (their keys enter its key)
_UPSTREAM = {"video": [], "track": ["video"], "static": ["track"], "codes": ["track"],
             "articulated": ["static", "codes"], "audio": ["codes", "video"], "pack": ["articulated", "audio"]}  # fmt: skip


def as_dict(cfg) -> dict:
    """A stage config as a dict (its to_dict, else the dataclass fields)."""
    return cfg.to_dict() if hasattr(cfg, "to_dict") else asdict(cfg)


def _effect(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in _NO_EFFECT}


def _fit_summary(result) -> dict:
    m = result.metrics
    # both fits score the same regions (heldout_eval.py)
    out = {k: round(float(m[k]), 3) for k in ("psnr", "ssim", "psnr_face", "ssim_face", "psnr_face_wide", "psnr_head",
                                              "psnr_mouth", "psnr_eyes") if k in m}  # fmt: skip
    tracked = m.get("tracked_pose", {})  # held-out frames at the tracked poses (static fit)
    out.update({f"{k}_tracked_pose": round(float(tracked[k]), 3) for k in ("psnr", "psnr_face") if k in tracked})
    out["gaussians"] = int(result.gaussians.count)
    out["fit_seconds"] = round(float(result.seconds), 1)
    return out


def _no_frames(m: dict) -> dict:
    """Metrics without their per-frame lists (kept in the work folder and the report)."""
    return {k: _no_frames(v) if isinstance(v, dict) else v for k, v in m.items() if k != "frames"}
