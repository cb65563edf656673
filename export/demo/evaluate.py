"""Quality of the demo lip-sync: held-out sentences x held-out voices, plus real recordings.

  python -m huma_rt.export.demo.evaluate [--checkpoint DIR] [--real DIR] [--video]

Prints and returns:
- jaw Pearson r: predicted jaw opening (encoder code projected on the embedding) vs the viseme
  target, over every frame of the held-out set (clean and augmented audio);
- silence ratio: mean mouth motion energy (mean |dmu|^2 of the deformer's jaw/lip output) in
  silent stretches / the same in speech;
- A/V offset: lag (frames) maximising the cross-correlation of mouth-region motion with the audio
  envelope. With ``--video`` the motion is measured on rendered pixels (the project's renderer);
  otherwise on the mouth Gaussians' projected image-space displacement.
Real recordings (any sample rate; default: Debian's pocketsphinx-testdata WAVs/raw files) get
the silence ratio (silence from the silero VAD) and the offset.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from huma_rt.errors import InputError

from ..checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint
from .articulation import Articulation
from .codes import codes_to_params
from .corpus import HELD_OUT_SENTENCES, HELD_OUT_VOICES
from .data import SAMPLES_PER_FRAME, augmented, make_utterance
from .head import REGION_JAW, REGION_LIPS, HeadSpec, build_camera, build_head

log = logging.getLogger(__name__)

REAL_SPEECH_DIR = Path("/usr/share/pocketsphinx/test/data")
MAX_LAG = 6  # frames searched either side for the A/V offset


@dataclass
class DemoModel:
    """The trained demo networks + head + embedding, ready to predict from 16 kHz audio."""

    encoder: torch.nn.Module
    spatial: torch.nn.Module
    deformer: torch.nn.Module
    emb: np.ndarray
    head: object
    art: Articulation
    feat: torch.Tensor = field(init=False)
    mouth_rows: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        dyn = self.head.means[self.art.index]
        with torch.no_grad():
            self.feat = self.spatial(torch.from_numpy(dyn))
        reg = self.head.region[self.art.index]
        self.mouth_rows = np.flatnonzero((reg == REGION_JAW) | (reg == REGION_LIPS))

    @classmethod
    def load(cls, checkpoint: Path = DEMO_CHECKPOINT_DIR) -> DemoModel:
        encoder, spatial, deformer, _, def_cfg = load_checkpoint(checkpoint)
        meta = json.loads((Path(checkpoint) / "demo.json").read_text())
        head = build_head(HeadSpec(**meta["head"]))
        return cls(encoder, spatial, deformer, np.asarray(meta["code_embedding"], np.float32), head,
                   Articulation.for_head(head))

    def codes(self, audio: np.ndarray) -> np.ndarray:
        """audio [S] float32 16 kHz -> codes [ceil(S/640), D]."""
        with torch.no_grad():
            return self.encoder.encode_audio(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None])[0].numpy()

    def params(self, audio: np.ndarray) -> np.ndarray:
        """audio -> articulation params [F, 5] (projection of the codes on the embedding)."""
        return codes_to_params(self.codes(audio), self.emb)

    def mouth_dmu(self, codes: np.ndarray) -> np.ndarray:
        """codes [F, D] -> deformer dmu of the jaw/lip Gaussians [F, M, 3]."""
        out = []
        with torch.no_grad():
            for i in range(0, len(codes), 64):
                dmu, _, _ = self.deformer(self.feat, torch.from_numpy(codes[i:i + 64]))
                out.append(dmu[:, self.mouth_rows].numpy())
        return np.concatenate(out) if out else np.zeros((0, self.mouth_rows.size, 3), np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def motion_energy(dmu: np.ndarray) -> np.ndarray:
    """[F, M, 3] -> [F] mean squared displacement of the mouth Gaussians (world units^2)."""
    return np.mean(np.sum(dmu.astype(np.float64) ** 2, -1), -1)


def silence_ratio(energy: np.ndarray, speech: np.ndarray, silent: np.ndarray) -> float:
    """mean motion energy over silent frames / mean over speech frames."""
    if not silent.any() or not speech.any():
        return float("nan")
    return float(energy[silent].mean() / max(energy[speech].mean(), 1e-12))


def audio_envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    """[frames] RMS of each video frame's 640 samples."""
    x = np.zeros(frames * SAMPLES_PER_FRAME, np.float64)
    n = min(audio.size, x.size)
    x[:n] = audio[:n]
    return np.sqrt(np.mean(x.reshape(frames, SAMPLES_PER_FRAME) ** 2, 1))


def lag_correlations(motion: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG) -> np.ndarray:
    """[2 max_lag + 1] corr(motion[t + L], envelope[t]) for L = -max_lag..max_lag."""
    m = (motion - motion.mean()) / (motion.std() + 1e-12)
    e = (envelope - envelope.mean()) / (envelope.std() + 1e-12)
    out = np.full(2 * max_lag + 1, -2.0)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        a, b = (m[lag:], e[: e.size - lag]) if lag >= 0 else (m[: m.size + lag], e[-lag:])
        if a.size:
            out[i] = float(np.mean(a * b))
    return out


def av_offset(motion: np.ndarray, envelope: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, float]:
    """Lag L (frames; > 0: video late) maximising corr(motion[t + L], envelope[t]); and that corr."""
    c = lag_correlations(motion, envelope, max_lag)
    return int(np.argmax(c)) - max_lag, float(c.max())


def pooled_offset(curves: list[np.ndarray], max_lag: int = MAX_LAG) -> int:
    """One offset for a set of clips: the lag maximising the mean of their correlation curves."""
    return int(np.argmax(np.mean(curves, 0))) - max_lag


def image_motion(model: DemoModel, dmu: np.ndarray) -> np.ndarray:
    """[F] mean projected image-space displacement (pixels) of the mouth Gaussians."""
    cam = build_camera()
    rest = model.head.means[model.art.index][model.mouth_rows].astype(np.float64)

    def project(p):
        pc = p @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
        return np.stack([cam.fx * pc[..., 0] / pc[..., 2], cam.fy * pc[..., 1] / pc[..., 2]], -1)

    base = project(rest)
    return np.array([np.linalg.norm(project(rest + d) - base, axis=-1).mean() for d in dmu])


def video_motion(model: DemoModel, audio: np.ndarray, checkpoint: Path) -> np.ndarray:
    """[F] mean abs pixel difference of the mouth crop from the rest frame, rendered by the runtime."""
    from huma_rt.runtime import Avatar

    from .bundle import ensure_bundle

    y0, y1, x0, x1 = mouth_box()
    avatar = Avatar.load(ensure_bundle(checkpoint)[0], device="cpu")
    frames = [f.rgb[y0:y1, x0:x1].astype(np.float32) for f in avatar.render(audio)]
    rest = [f.rgb[y0:y1, x0:x1].astype(np.float32) for f in avatar.render(np.zeros(640 * 3, np.float32))][0]
    return np.array([np.abs(f - rest).mean() for f in frames])


def mouth_box(size: int = 512) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) pixel box around the mouth and chin: lips +- the jaw's travel."""
    from .head import MOUTH_Y, face_z

    cam = build_camera(size)
    z = float(face_z(0.0, MOUTH_Y))
    corners = np.array([[-0.16, MOUTH_Y + 0.06, z], [0.16, MOUTH_Y - 0.2, z]])
    pc = corners @ cam.world_to_camera[:3, :3].T + cam.world_to_camera[:3, 3]
    u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx
    v = cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
    return int(v.min()), int(np.ceil(v.max())), int(u.min()), int(np.ceil(u.max()))


def evaluate_synthetic(model: DemoModel, seed: int = 1, video: bool = False, checkpoint: Path = DEMO_CHECKPOINT_DIR,
                       sentences: list[str] | None = None, voices: list[str] | None = None) -> dict:
    """Held-out sentences x held-out voices, clean and augmented audio."""
    rng = np.random.default_rng(seed)
    sentences = sentences or HELD_OUT_SENTENCES
    voices = voices or HELD_OUT_VOICES
    pred, true, pred_aug = [], [], []
    e_speech, e_silent, offsets, curves = [], [], [], []
    for i, text in enumerate(sentences):
        voice = voices[i % len(voices)]
        u = make_utterance(text, voice, rate=int(rng.integers(140, 221)), pitch=int(rng.integers(30, 71)),
                           lead_s=0.6, tail_s=0.6)
        p = model.params(u.audio)
        pa = model.params(augmented(u, rng).audio)
        pred.append(p[:, 0])
        pred_aug.append(pa[:, 0])
        true.append(u.targets[:, 0])
        codes = model.codes(u.audio)
        dmu = model.mouth_dmu(codes)
        energy = motion_energy(dmu)
        # silent: frames 3+ frames (120 ms) away from any speech frame
        near = np.convolve(u.speech.astype(float), np.ones(7), "same") > 0
        e_speech.append(energy[u.speech])
        e_silent.append(energy[~near])
        motion = video_motion(model, u.audio, checkpoint) if video else image_motion(model, dmu)
        curves.append(lag_correlations(motion, audio_envelope(u.audio, len(motion))))
        offsets.append(int(np.argmax(curves[-1])) - MAX_LAG)
    es, ez = np.concatenate(e_speech), np.concatenate(e_silent)
    return {
        "utterances": len(sentences), "voices": sorted(set(voices)),
        "jaw_pearson_r_clean": pearson(np.concatenate(pred), np.concatenate(true)),
        "jaw_pearson_r_augmented": pearson(np.concatenate(pred_aug), np.concatenate(true)),
        "silence_ratio": float(ez.mean() / es.mean()),
        "av_offset_frames_pooled": pooled_offset(curves),
        "av_offset_frames_median": float(np.median(offsets)),
        "av_offset_frames": offsets,
        "motion_measured_on": "rendered pixels" if video else "projected mouth Gaussians",
    }


def real_recordings(folder: Path) -> list[Path]:
    """WAV files and 16 kHz raw PCM files (pocketsphinx test data) under ``folder``."""
    if not folder.is_dir():
        return []
    files = sorted(folder.rglob("*.wav")) + sorted(folder.glob("*.raw"))
    return files


def load_recording(path: Path) -> np.ndarray:
    """Any WAV (any rate) or 16 kHz s16 raw file -> 16 kHz mono float32."""
    from huma_rt.speech.audio import prepare_input, read_wav

    if path.suffix == ".raw":  # pocketsphinx test data: headerless 16 kHz s16le mono
        return (np.fromfile(path, "<i2").astype(np.float32) / 32768.0)
    pcm, sr = read_wav(path)
    return prepare_input(pcm, sr, name=str(path))


def evaluate_real(model: DemoModel, files: list[Path], video: bool = False,
                  checkpoint: Path = DEMO_CHECKPOINT_DIR) -> dict:
    """Silence ratio (silero VAD decides speech vs silence) and A/V offset on real recordings."""
    from huma_rt.speech.vad import detect_segments

    rows = []
    e_speech, e_silent, curves = [], [], []
    for path in files:
        audio = load_recording(path)
        if audio.size < 16000:
            continue
        codes = model.codes(audio)
        frames = len(codes)
        speech = np.zeros(frames, bool)
        for seg in detect_segments(audio):
            speech[int(seg.start_s * 25): int(np.ceil(seg.end_s * 25))] = True
        near = np.convolve(speech.astype(float), np.ones(7), "same") > 0
        dmu = model.mouth_dmu(codes)
        energy = motion_energy(dmu)
        motion = video_motion(model, audio, checkpoint) if video else image_motion(model, dmu)
        curve = lag_correlations(motion, audio_envelope(audio, frames))
        curves.append(curve)
        lag, corr = int(np.argmax(curve)) - MAX_LAG, float(curve.max())
        e_speech.append(energy[speech])
        e_silent.append(energy[~near])
        rows.append({"file": path.name, "seconds": round(audio.size / 16000, 2), "offset_frames": lag,
                     "corr": round(corr, 3), "silent_frames": int((~near).sum()),
                     "silence_ratio": silence_ratio(energy, speech, ~near)})
    if not rows:
        return {"files": 0}
    es, ez = np.concatenate(e_speech), np.concatenate(e_silent)
    return {"files": len(rows), "silence_ratio": float(ez.mean() / es.mean()) if ez.size else float("nan"),
            "av_offset_frames_pooled": pooled_offset(curves),
            "av_offset_frames_median": float(np.median([r["offset_frames"] for r in rows])),
            "speech_frames": int(es.size), "silent_frames": int(ez.size), "per_file": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT_DIR)
    parser.add_argument("--real", type=Path, default=REAL_SPEECH_DIR,
                        help="folder of real speech recordings (default: pocketsphinx-testdata)")
    parser.add_argument("--video", action="store_true", help="measure motion on rendered frames")
    parser.add_argument("--no-real", action="store_true", help="skip the real recordings")
    parser.add_argument("--sentences", type=int, default=len(HELD_OUT_SENTENCES),
                        help="how many held-out sentences (default: all)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    model = DemoModel.load(args.checkpoint)
    if not 1 <= args.sentences <= len(HELD_OUT_SENTENCES):
        raise InputError(f"--sentences must be in 1..{len(HELD_OUT_SENTENCES)}; got {args.sentences}")
    result = {"synthetic_held_out": evaluate_synthetic(
        model, video=args.video, checkpoint=args.checkpoint, sentences=HELD_OUT_SENTENCES[:args.sentences])}
    files = [] if args.no_real else real_recordings(args.real)
    if not files and not args.no_real:
        raise InputError(f"no real recordings under {args.real}; install Debian's pocketsphinx-testdata "
                         "or pass --real DIR with WAV files")
    if files:
        result["real_recordings"] = evaluate_real(model, files, video=args.video, checkpoint=args.checkpoint)
        result["real_recordings"]["source"] = str(args.real)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
