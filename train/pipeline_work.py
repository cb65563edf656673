"""The work folder of ``huma-rt train`` (``me.train/`` beside ``me.bundle``): which stages
finished under which inputs, and each stage's output as files.

``stages.json`` records the input video's sha256 and, per finished stage, a key (sha256 of the
stage's options and the keys of the stages it reads) with those options and its seconds. A stage
whose key matches is not redone on resume; one whose options changed is redone, and the log says
which options changed. Stage outputs are .npz (no pickles), JSON, and torch state dicts read
with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from huma_rt._files import atomic_write
from huma_rt.errors import FormatError, InputError
from huma_rt.gaussians import Camera, Gaussians

log = logging.getLogger(__name__)

STATE = "stages.json"
SCHEMA = 1


class TrainError(InputError):
    """``huma-rt train`` cannot go on: a work folder of another run, a stage not available, ..."""


def stage_key(*parts) -> str:
    """sha256 of the JSON of ``parts`` (options dicts and upstream keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def changed_options(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``name: old -> new`` for every option that differs (nested dicts flattened with dots)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_options(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


class WorkFolder:
    """``root``/stages.json plus one file or folder per stage (see module)."""

    def __init__(self, root: Path, video_sha: str) -> None:
        self.root = Path(root)
        self.video_sha = video_sha
        self.stages: dict[str, dict] = {}

    @classmethod
    def open(cls, root: Path, video: Path, video_sha: str, *, resume: bool, overwrite: bool) -> WorkFolder:
        """The work folder for a run on ``video``: resumed (``resume``), started again
        (``overwrite``), or new. TrainError when it holds finished stages of an earlier run and
        neither is asked, or (on resume) when those came from another video."""
        root = Path(root)
        state = root / STATE
        wf = cls(root, video_sha)
        old = _read_state(state) if state.is_file() else None
        if old is not None and old["stages"] and not resume and not overwrite:
            raise TrainError(f"{root} holds stages of an earlier run ({', '.join(old['stages'])}); "
                             "add --resume to continue it or --overwrite to start again")  # fmt: skip
        if old is not None and resume and old["video_sha"] != video_sha:
            raise TrainError(f"{root} was made from another video ({old.get('video')}, sha256 "
                             f"{old['video_sha'][:12]}); {video} has sha256 {video_sha[:12]}: use another "
                             "output name, or --overwrite to start again from this video")  # fmt: skip
        if old is not None and resume:
            wf.stages = old["stages"]
        elif root.exists() and (old is not None or not any(root.iterdir())):
            shutil.rmtree(root)  # only a folder this pipeline made (stages.json) or an empty one
        elif root.exists():
            raise TrainError(f"{root} exists and is not a work folder of 'huma-rt train' (no {STATE}); "
                             "move it away or choose another output name")  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        wf._video = str(video)
        wf.save()
        return wf

    def save(self) -> None:
        doc = {"schema": SCHEMA, "video": getattr(self, "_video", None), "video_sha": self.video_sha,
               "stages": self.stages}  # fmt: skip
        atomic_write(self.root / STATE, json.dumps(doc, indent=1).encode())

    def path(self, name: str) -> Path:
        return self.root / name

    def finished(self, stage: str, key: str, options: dict) -> bool:
        """True when ``stage`` finished under ``key``; a stage recorded under another key is
        forgotten here (with the changed options in the log) so it and its files are redone."""
        rec = self.stages.get(stage)
        if rec is None:
            return False
        if rec.get("key") == key:
            return True
        what = changed_options(rec.get("options", {}), options) or ["an earlier stage it reads changed"]
        log.warning("stage %s: redone, its inputs changed since the earlier run (%s)", stage, "; ".join(what))
        self.forget(stage)
        return False

    def forget(self, stage: str) -> None:
        self.stages.pop(stage, None)
        self.save()

    def finish(self, stage: str, key: str, options: dict, seconds: float, summary: dict | None = None) -> None:
        self.stages[stage] = {"key": key, "options": options, "seconds": float(seconds), "summary": summary or {}}
        self.save()


def _read_state(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: unreadable work-folder state ({exc}); remove the folder or use --overwrite") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("stages"), dict):
        raise FormatError(f"{path}: not a 'huma-rt train' work-folder state of schema {SCHEMA}; use --overwrite")
    return doc


# ---- stage outputs ----------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    atomic_write(Path(path), json.dumps(obj, indent=1, default=_plain).encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: unreadable ({exc}); rerun without --resume or with --overwrite") from None


def write_npz(path: Path, **arrays) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(Path(path), buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: unreadable ({exc}); rerun without --resume or with --overwrite") from None


def gaussians_arrays(g: Gaussians, prefix: str = "g_") -> dict[str, np.ndarray]:
    """A Gaussians' arrays under ``prefix`` names (for :func:`write_npz`)."""
    out = {f"{prefix}{k}": getattr(g, k) for k in ("means", "log_scales", "quats", "opacity_logits", "sh")}
    if g.region is not None:
        out[f"{prefix}region"] = g.region
    out[f"{prefix}scale_activation"] = np.array(g.scale_activation)
    return out


def gaussians_from(arrays: dict[str, np.ndarray], prefix: str = "g_") -> Gaussians:
    return Gaussians(means=arrays[f"{prefix}means"], log_scales=arrays[f"{prefix}log_scales"],
                     quats=arrays[f"{prefix}quats"], opacity_logits=arrays[f"{prefix}opacity_logits"],
                     sh=arrays[f"{prefix}sh"], region=arrays.get(f"{prefix}region"),
                     scale_activation=str(arrays[f"{prefix}scale_activation"]))  # fmt: skip


def save_static(result, folder: Path) -> None:
    """A StaticFitResult -> ``folder``/result.npz + result.json (what the report and later
    stages read back with :func:`load_static`)."""
    write_npz(folder / "result.npz", background=result.background, train_frames=result.train_frames,
              held_out=result.held_out, **gaussians_arrays(result.gaussians))  # fmt: skip
    write_json(folder / "result.json", {"camera": result.camera.to_dict(), "metrics": result.metrics,
                                        "history": result.history, "seconds": result.seconds})  # fmt: skip


def load_static(folder: Path):
    from .fit_static import StaticFitResult

    a, j = read_npz(folder / "result.npz"), read_json(folder / "result.json")
    return StaticFitResult(gaussians_from(a), a["background"], Camera.from_dict(j["camera"]), j["metrics"],
                           j["history"], a["train_frames"], a["held_out"], float(j["seconds"]))  # fmt: skip


def save_articulated(result, folder: Path) -> None:
    """An ArticulatedFitResult -> ``folder``/result.npz, result.json, modules.pt."""
    import torch

    write_npz(folder / "result.npz", background=np.asarray(result.background), held_out=np.asarray(result.held_out),
              train_frames=np.asarray(result.train_frames), **gaussians_arrays(result.gaussians))  # fmt: skip
    write_json(folder / "result.json", {"camera": result.camera.to_dict(), "metrics": result.metrics,
                                        "history": result.history, "seconds": result.seconds, "region": result.region,
                                        "deformer_config": result.deformer_config.to_dict()})  # fmt: skip
    tmp = folder / "modules.pt.tmp"
    torch.save({"spatial": result.spatial.state_dict(), "deformer": result.deformer.state_dict()}, tmp)
    tmp.replace(folder / "modules.pt")


def load_articulated(folder: Path):
    import torch
    from huma_rt.export.models import Deformer, SpatialEncoder

    from huma_rt.model_config import DeformerConfig

    from .fit_articulated import ArticulatedFitResult

    a, j = read_npz(folder / "result.npz"), read_json(folder / "result.json")
    cfg = DeformerConfig.from_dict(j["deformer_config"])
    try:
        states = torch.load(folder / "modules.pt", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise FormatError(f"{folder / 'modules.pt'}: unreadable ({exc}); rerun with --overwrite") from None
    spatial, deformer = SpatialEncoder(cfg), Deformer(cfg)
    spatial.load_state_dict(states["spatial"])
    deformer.load_state_dict(states["deformer"])
    spatial.eval()
    deformer.eval()
    return ArticulatedFitResult(gaussians=gaussians_from(a), spatial=spatial, deformer=deformer, deformer_config=cfg,
                                background=a["background"], camera=Camera.from_dict(j["camera"]),
                                metrics=j["metrics"], region=j["region"], history=j["history"],
                                train_frames=a["train_frames"], held_out=a["held_out"],
                                seconds=float(j["seconds"]))  # fmt: skip


def save_encoder(encoder, metrics: dict, folder: Path) -> None:
    """The audio path (an AudioEncoder) -> ``folder``/encoder.pt + encoder.json (its config, metrics)."""
    import torch

    tmp = folder / "encoder.pt.tmp"
    torch.save(encoder.state_dict(), tmp)
    tmp.replace(folder / "encoder.pt")
    write_json(folder / "encoder.json", {"config": encoder.cfg.to_dict(), "metrics": metrics})


def load_encoder(folder: Path):
    """(AudioEncoder, metrics) written by :func:`save_encoder`."""
    import torch
    from huma_rt.export.models import AudioEncoder

    from huma_rt.model_config import EncoderConfig

    j = read_json(folder / "encoder.json")
    enc = AudioEncoder(EncoderConfig.from_dict(j["config"]))
    try:
        enc.load_state_dict(torch.load(folder / "encoder.pt", weights_only=True))
    except Exception as exc:  # a truncated or foreign file
        raise FormatError(f"{folder / 'encoder.pt'}: unreadable ({exc}); rerun with --overwrite") from None
    enc.eval()
    return enc, j["metrics"]


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"{type(v).__name__} is not JSON")
