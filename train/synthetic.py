"""Closed-loop data: a talking video of the demo avatar whose every frame has known truth.

>>> result = make_synthetic(SyntheticConfig(duration_s=30, seed=1), "synth/")
>>> rgb, alpha = ClipTruth("synth/").frame(10, head_quat, head_trans)   # truth at any pose

Speech from the packaged Piper voice (sentences and pauses, see synthetic_speech) drives the
demo bundle's own encoder and deformer, a smooth seeded rigid head motion (synthetic_pose)
moves every Gaussian after the deformer, and the frame is rendered whole over a static
backdrop (synthetic_background). Written into the output folder:

- ``video.mp4``: H.264 (crf ``crf``) + AAC of the speech, at the bundle's fps (25).
- ``speech.wav``: the speech, 16 kHz 16-bit mono, exactly the samples the truth came from.
- ``truth.npz`` (no pickles), T frames, frame t showing samples [640 t, 640 t + 640):
  ``frame_index`` [T] int64, ``pts`` [T] float64 s, ``sample_span`` [T,2] int64 [start, end),
  ``speaking`` [T] bool (the span overlaps a sentence);
  ``head_quat`` [T,4] wxyz + ``head_trans`` [T,3]: the head's pose in the bundle camera's frame
  (OpenCV axes), model-to-camera: ``x_cam = R(head_quat) p + head_trans`` for a canonical
  point p of the avatar; at rest it equals ``world_to_camera``;
  ``world_quat`` [T,4] + ``world_trans`` [T,3]: the same motion in the bundle's world frame
  (``p' = R p + t``, what was applied to the Gaussians), ``pivot`` [3] its rotation centre;
  ``code`` [T,code_dim] float32: the encoder's motion code per frame (what the deformer got);
  ``articulation`` [T,5] float32 with ``articulation_names`` [5] (jaw, round, spread, closure,
  blink): the code projected on the demo's code embedding (export/demo/codes.py,
  ``codes_to_params``; the demo's encoder emits blink = 0); ``alpha`` [T,H,W] uint8: the
  avatar's matte (round(255 * alpha); compressed ~14 MB per 30 s on disk, but reading the key
  loads all of it: 196 MB per 30 s at 512x512); ``background`` [H,W,3] float32; ``camera_K`` [3,3],
  ``world_to_camera`` [4,4], ``fps``, ``sample_rate``; ``speech_spans`` [K,2], ``speech_texts``;
  ``bundle_id``: sha256 of the avatar bundle's manifest (ClipTruth warns when it renders with another).
- ``config.json`` (the SyntheticConfig) and ``sheet.png`` (a contact sheet of 12 frames).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt.errors import InputError

from .synthetic_background import check_background_spec, make_background
from .synthetic_pose import DEMO_PIVOT, camera_to_world_pose, head_motion, world_to_camera_pose
from .synthetic_render import PosedAvatar
from .synthetic_speech import RATE, build_speech

log = logging.getLogger(__name__)

FILES = ("video.mp4", "speech.wav", "truth.npz", "config.json", "sheet.png")
MAX_DURATION_S = 1800.0
SHEET_FRAMES = 12


@dataclass
class SyntheticConfig:
    """What to make. Units: seconds; head translation in the bundle's world units (the demo
    head is ~1 unit tall, so 1 unit is ~25 cm and the default 0.015 is ~4 mm).

    duration_s: clip length (rounded to whole frames). seed: every random choice (sentence
    order, pauses, head motion, background texture). text: what is said (split after . ! ?,
    spoken once; the rest stays silent), or None for seeded held-out sentences of the demo
    corpus. lead_s: silence before the first sentence. gap_s: (min, max) pause after each
    sentence. rotation_deg: the most each of nod / turn / tilt reaches. translation: the most
    each axis of the head shift reaches. motion_hz: the fastest sinusoid of the motion (others
    down to an eighth of it). background: "textured", "bundle" or an (r, g, b) triple in [0, 1]
    (synthetic_background). rotate_sh: turn the view-dependent colour with the head.
    tts_noise: keep Piper's sampling noise (livelier, but the speech then differs on every run;
    off, a seed gives the same clip bit for bit). crf: H.264
    quality (lower is better). threads: onnxruntime and renderer threads (None: defaults).
    bundle: the avatar bundle (None: the demo bundle, built into its cache when missing; the
    articulation truth assumes the demo's code embedding).
    """

    duration_s: float = 10.0
    seed: int = 0
    text: str | None = None
    lead_s: float = 0.6
    gap_s: tuple[float, float] = (0.4, 1.0)
    rotation_deg: float = 3.0
    translation: float = 0.015
    motion_hz: float = 0.4
    background: str | tuple[float, float, float] = "textured"
    rotate_sh: bool = True
    tts_noise: bool = False
    crf: int = 18
    threads: int | None = None
    bundle: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.gap_s, list):
            self.gap_s = tuple(self.gap_s)
        if isinstance(self.background, list):
            self.background = tuple(self.background)
        self.validate()

    def validate(self) -> None:
        """InputError naming the first bad field."""
        _number("duration_s", self.duration_s, 0.04, MAX_DURATION_S)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer; got {self.seed!r}")
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise InputError(f"text must be None or a non-empty string; got {self.text!r}")
        _number("lead_s", self.lead_s, 0.0, MAX_DURATION_S)
        if not isinstance(self.gap_s, tuple) or len(self.gap_s) != 2:
            raise InputError(f"gap_s must be a (min, max) pair of seconds; got {self.gap_s!r}")
        _number("gap_s[0]", self.gap_s[0], 0.0, 10.0)
        _number("gap_s[1]", self.gap_s[1], self.gap_s[0], 10.0)
        _number("rotation_deg", self.rotation_deg, 0.0, 20.0)
        _number("translation", self.translation, 0.0, 0.2)
        _number("motion_hz", self.motion_hz, 0.01, 3.0)
        check_background_spec(self.background)
        for name in ("rotate_sh", "tts_noise"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if isinstance(self.crf, bool) or not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise InputError(f"crf must be an integer in 0..51; got {self.crf!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= 256):  # fmt: skip
            raise InputError(f"threads must be None or an integer in 1..256; got {self.threads!r}")
        if self.bundle is not None and not isinstance(self.bundle, (str, Path)):
            raise InputError(f"bundle must be None or a path; got {self.bundle!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gap_s"] = list(self.gap_s)
        d["background"] = self.background if isinstance(self.background, str) else list(self.background)
        d["bundle"] = None if self.bundle is None else str(self.bundle)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SyntheticConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown SyntheticConfig fields {unknown}; expected some of {sorted(known)}")
        return cls(**d)


def _number(name: str, v, lo: float, hi: float) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not lo <= v <= hi:
        raise InputError(f"{name} must be a number in [{lo:g}, {hi:g}]; got {v!r}")


@dataclass
class SyntheticResult:
    """What ``make_synthetic`` wrote: the folder, its files, the frame count and seconds spent
    per stage (speech, render, encode = MP4, save = WAV + truth + sheet). ``kept`` holds copies
    of the rgb frames asked for with ``keep``."""

    folder: Path
    frames: int
    seconds: dict[str, float]
    kept: dict[int, np.ndarray] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.folder / name


def resolve_bundle(bundle: str | Path | None) -> Path:
    """The bundle to render: ``bundle`` itself, or the cached demo bundle."""
    if bundle is not None:
        return Path(bundle)
    from huma_rt.export.demo.bundle import ensure_bundle

    return ensure_bundle()[0]


def demo_embedding() -> np.ndarray:
    """The demo's code embedding E [code_dim, 5] (demo.json beside the shipped weights)."""
    from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR

    meta = json.loads((Path(DEMO_CHECKPOINT_DIR) / "demo.json").read_text())
    return np.asarray(meta["code_embedding"], np.float32)


def make_synthetic(config: SyntheticConfig, out_dir: str | Path, *, keep: Sequence[int] = (),
                   speak=None) -> SyntheticResult:  # fmt: skip
    """Render the clip ``config`` describes into folder ``out_dir`` (see the module docstring).

    keep: frame indices whose rgb to return in ``result.kept``. speak: text -> 16 kHz float32
    (default: the packaged Piper voice, see ``tts_noise``).
    """
    from huma_rt.commands.demo import sheet_indices

    if not isinstance(config, SyntheticConfig):
        raise InputError(f"config must be a SyntheticConfig; got {type(config).__name__}")
    config.validate()
    out = Path(out_dir)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    emb = demo_embedding()
    avatar = PosedAvatar(resolve_bundle(config.bundle), None, threads=config.threads, rotate_sh=config.rotate_sh)
    alpha_tmp = out / ".alpha.tmp.npy"
    try:
        cfg = avatar.encoder_config
        if emb.shape[0] != cfg.code_dim:
            raise InputError(f"the bundle's code_dim is {cfg.code_dim}, but the demo embedding has {emb.shape[0]} "
                             "rows: the articulation truth needs the demo avatar (config.bundle=None)")  # fmt: skip
        w, h = avatar.size
        frames = max(1, int(round(config.duration_s * cfg.fps)))
        avatar.background = make_background(config.background, avatar.bundle.background, w, h, config.seed)
        seconds["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        speech = build_speech(frames * cfg.samples_per_frame, config.seed, config.text, config.lead_s, config.gap_s,
                              speak, config.tts_noise)  # fmt: skip
        seconds["speech"] = time.perf_counter() - t0

        poses = head_motion(frames, cfg.fps, config.seed, config.rotation_deg, config.translation, config.motion_hz)
        out.mkdir(parents=True, exist_ok=True)
        alpha = np.lib.format.open_memmap(alpha_tmp, mode="w+", dtype=np.uint8, shape=(frames, h, w))
        picks = set(sheet_indices(frames, 6, SHEET_FRAMES // 6)) | {int(k) for k in keep}
        codes, shown, times = _render(avatar, speech.pcm, poses, out / "video.mp4", config.crf, alpha, picks)
        seconds.update(times)

        t0 = time.perf_counter()
        _save(out, config, avatar, speech, poses, codes, emb, alpha, shown)
        seconds["save"] = time.perf_counter() - t0
    finally:
        avatar.close()
        alpha_tmp.unlink(missing_ok=True)  # a map still open stays readable until dropped
    log.info("synthetic clip %s: %d frames, %s", out, frames, {k: round(v, 2) for k, v in seconds.items()})
    return SyntheticResult(out, frames, seconds, {k: v for k, v in shown.items() if k in set(keep)})


def _render(avatar: PosedAvatar, pcm: np.ndarray, poses: tuple[np.ndarray, np.ndarray], video: Path, crf: int,
            alpha: np.ndarray, picks: set[int]) -> tuple[np.ndarray, dict[int, np.ndarray], dict[str, float]]:  # fmt: skip
    """Stream ``pcm`` through the avatar at world ``poses`` ([T,4], [T,3]) into ``video`` and
    ``alpha`` [T,H,W] uint8 -> (codes [T, code_dim], copies of the ``picks`` frames, seconds)."""
    from huma_rt.audio.features import StreamingFeatures
    from huma_rt.media import Mp4Writer

    cfg = avatar.encoder_config
    world_q, world_t = poses
    codes = np.zeros((world_q.shape[0], cfg.code_dim), np.float32)
    shown: dict[int, np.ndarray] = {}
    times = {"render": 0.0, "encode": 0.0}
    features = StreamingFeatures(cfg)
    window = np.zeros(features.window_shape, np.float32)
    writer = Mp4Writer(video, cfg.fps, avatar.size, sample_rate=RATE, crf=crf)

    def drain() -> None:
        while features.ready_frames():
            t1 = time.perf_counter()
            t = features.next_window(window)
            codes[t] = avatar.encode(window)
            rgb, a = avatar.render(world_q[t], world_t[t])
            alpha[t] = np.floor(a * 255.0 + 0.5)
            t2 = time.perf_counter()
            writer.write(rgb)
            times["encode"] += time.perf_counter() - t2
            times["render"] += t2 - t1
            if t in picks:
                shown[t] = rgb.copy()

    try:
        for start in range(0, pcm.size, RATE):  # one second at a time: a bounded mel ring
            features.push(pcm[start : start + RATE])
            drain()
        features.finish()
        drain()
        t2 = time.perf_counter()
        writer.close(pcm)
        times["encode"] += time.perf_counter() - t2
    finally:
        writer.close()  # no-op after a normal close; on an error, ends the file
    return codes, shown, times


def _save(out: Path, config: SyntheticConfig, avatar: PosedAvatar, speech, poses, codes: np.ndarray,
          emb: np.ndarray, alpha: np.ndarray, shown: dict[int, np.ndarray]) -> None:  # fmt: skip
    """speech.wav, truth.npz, config.json and sheet.png (the module docstring lists the keys)."""
    from huma_rt.export.demo.articulation import PARAMS
    from huma_rt.export.demo.codes import codes_to_params

    from huma_rt.commands.demo import contact_sheet, sheet_indices
    from huma_rt.media import write_png, write_wav

    cfg = avatar.encoder_config
    fps, spf = cfg.fps, cfg.samples_per_frame
    frames = codes.shape[0]
    write_wav(out / "speech.wav", speech.pcm, RATE)
    index = np.arange(frames, dtype=np.int64)
    speaking = np.zeros(frames, bool)
    for s, e in speech.spans:
        speaking[s // spf : -(-e // spf)] = True
    world_q, world_t = poses
    w2c = avatar.camera.world_to_camera
    head_q, head_t = world_to_camera_pose(world_q, world_t, w2c)
    alpha.flush()
    np.savez_compressed(
        out / "truth.npz", frame_index=index, pts=index / fps, sample_span=np.stack([index * spf, (index + 1) * spf], -1),
        speaking=speaking, head_quat=head_q, head_trans=head_t, world_quat=world_q, world_trans=world_t,
        pivot=np.asarray(DEMO_PIVOT, np.float64), code=codes, articulation=codes_to_params(codes, emb),
        articulation_names=np.asarray(PARAMS), alpha=alpha, background=avatar.background,
        camera_K=avatar.camera.intrinsics, world_to_camera=w2c, fps=np.int64(fps), sample_rate=np.int64(RATE),
        speech_spans=speech.spans, speech_texts=np.asarray(speech.texts, dtype=str).reshape(-1),
        bundle_id=np.asarray(avatar.bundle_id),
    )  # fmt: skip
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    sheet = {i: shown[i] for i in sheet_indices(frames, 6, SHEET_FRAMES // 6)}
    write_png(out / "sheet.png", contact_sheet(sheet, speech.pcm, fps, cols=6, scale=2))


class ClipTruth:
    """The truth of a clip ``make_synthetic`` wrote, re-rendered at any head pose.

    ``frame(t, head_quat, head_trans)`` draws frame t's mouth (the code the speech gives frame
    t, whose audio span is [640 t, 640 t + 640)) with the head at the given camera-frame pose
    (model-to-camera, as in truth.npz; None: the clip's own pose of frame t), over the clip's
    backdrop: the reference a trained avatar's frame at that pose is compared with.
    """

    def __init__(self, folder: str | Path, *, threads: int | None = None) -> None:
        from huma_rt.media import read_wav

        self.folder = Path(folder)
        missing = [n for n in ("speech.wav", "truth.npz", "config.json") if not (self.folder / n).is_file()]
        if missing:
            raise InputError(f"{self.folder} is not a synthetic clip folder: {missing} missing")
        self.config = SyntheticConfig.from_dict(json.loads((self.folder / "config.json").read_text()))
        with np.load(self.folder / "truth.npz") as z:
            self.head_quat, self.head_trans = z["head_quat"], z["head_trans"]
            background, self.world_to_camera = z["background"], z["world_to_camera"]
            made_with = str(z["bundle_id"])
        pcm, rate = read_wav(self.folder / "speech.wav")
        if rate != RATE or pcm.ndim != 1:
            raise InputError(f"{self.folder / 'speech.wav'} must be 16 kHz mono; got {rate} Hz, shape {pcm.shape}")
        self.pcm = np.ascontiguousarray(pcm, np.float32)
        self.avatar = PosedAvatar(resolve_bundle(self.config.bundle), background, threads=threads,
                                  rotate_sh=self.config.rotate_sh)  # fmt: skip
        if self.avatar.bundle_id != made_with:  # e.g. the demo bundle was rebuilt from other weights
            log.warning("%s was made with bundle %s…, rendering with %s…: the truth may differ",
                        self.folder, made_with[:12], self.avatar.bundle_id[:12])  # fmt: skip

    @property
    def frames(self) -> int:
        return int(self.head_quat.shape[0])

    def frame(self, index: int, head_quat: np.ndarray | None = None,
              head_trans: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(rgb [H,W,3] uint8, alpha [H,W] float32), views valid until the next call."""
        window = self.avatar.window_at(self.pcm, index)
        q = self.head_quat[index] if head_quat is None else np.asarray(head_quat, np.float64)
        tr = self.head_trans[index] if head_trans is None else np.asarray(head_trans, np.float64)
        if q.shape != (4,) or tr.shape != (3,) or not (np.isfinite(q).all() and np.isfinite(tr).all()) \
                or np.linalg.norm(q) < 1e-6:  # fmt: skip
            raise InputError(f"head pose must be a finite non-zero quat [4] wxyz and trans [3]; got {q!r}, {tr!r}")
        wq, wt = camera_to_world_pose(q, tr, self.world_to_camera)
        self.avatar.encode(window)
        return self.avatar.render(wq, wt)

    def close(self) -> None:
        self.avatar.close()
