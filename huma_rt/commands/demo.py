"""``huma-rt demo``: the built-in demo avatar speaking text or an audio file, as MP4 + contact sheet.

  huma-rt demo                          # a default sentence
  huma-rt demo --text "Hello there."    # Piper TTS voice (espeak-ng when Piper is unavailable)
  huma-rt demo --audio speech.mp3 -o out.mp4   # --wav is the same flag (its old name)

The first run builds the demo bundle from the shipped weights (ONNX export + procedural head +
pack) into a cache keyed by their content hash; later runs reuse it. Prints the preload time,
rendered frames per second and the real-time factor.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from huma_rt.errors import InputError
from huma_rt.speech.say import VOICES, speak

log = logging.getLogger(__name__)

DEFAULT_TEXT = ("Hello! I am the huma demo avatar. My lips follow any speech you give me, "
                "and I run on a plain CPU.")
SAMPLE_RATE = 16000
SHEET_COLUMNS = 6
SHEET_ROWS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--text", help="text to speak (default: a built-in sentence)")
    src.add_argument("--audio", "--wav", dest="audio", type=Path, metavar="FILE",
                     help="a speech recording: WAV, FLAC, MP3, M4A, OGG, ...; any rate from 4 to 384 kHz, "
                          "1-8 channels, at most 1 hour (--wav is the old name)")  # fmt: skip
    parser.add_argument("-o", "--out", type=Path, default=Path("demo.mp4"), help="output MP4 (default demo.mp4)")
    parser.add_argument("--sheet", type=Path, help="contact-sheet PNG (default: the MP4's name with .png)")
    parser.add_argument("--tts", choices=VOICES, default="auto",
                        help="voice for --text: the Piper voice package, or espeak-ng (auto: Piper if installed)")
    parser.add_argument("--backend", default="auto", help="inference backend for Avatar.load (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--cache-dir", type=Path, help="where the demo bundle is cached (default ~/.cache/huma-rt/demo)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached demo bundle")


def load_wav(path: Path) -> np.ndarray:
    """An audio file (what huma_rt.media.audio_file reads, as ``render`` does) -> 16 kHz mono float32."""
    from huma_rt.media.audio_file import load_audio

    audio, _info = load_audio(path, SAMPLE_RATE)
    return audio


def sheet_indices(num_frames: int, cols: int = SHEET_COLUMNS, rows: int = SHEET_ROWS) -> list[int]:
    """Frame indices of the contact sheet: up to cols*rows, evenly spaced, first and last included."""
    n = min(cols * rows, num_frames)
    return sorted(set(np.linspace(0, num_frames - 1, n).round().astype(int).tolist())) if n > 0 else []


def contact_sheet(frames: dict[int, np.ndarray], audio: np.ndarray, fps: int, cols: int = SHEET_COLUMNS,
                  scale: int = 2, crop: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A grid [rows*(h/scale + 6), cols*w/scale, 3] uint8 of ``frames`` ({index: rgb [H,W,3] uint8},
    in index order, each cut to ``crop`` = (y0, y1, x0, x1) if given), each with a red bar under
    it showing the audio level of that frame, so sound and mouth can be compared at a glance."""
    if crop is not None:
        y0, y1, x0, x1 = crop
        frames = {i: f[y0:y1, x0:x1] for i, f in frames.items()}
    if not frames:
        raise InputError("no frames were rendered; the audio is too short")
    order = sorted(frames)
    rows = -(-len(order) // cols)
    first = frames[order[0]]
    h, w = first.shape[0] // scale, first.shape[1] // scale
    bar = 6
    spf = SAMPLE_RATE // fps
    peak = float(np.abs(audio).max()) or 1.0
    sheet = np.full((rows * (h + bar), cols * w, 3), 255, np.uint8)
    for k, i in enumerate(order):
        r, c = divmod(k, cols)
        y0 = r * (h + bar)
        sheet[y0:y0 + h, c * w:(c + 1) * w] = frames[i][::scale, ::scale][:h, :w]
        seg = audio[i * spf:(i + 1) * spf]
        level = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) / peak * 3) if seg.size else 0.0
        sheet[y0 + h:y0 + h + bar, c * w:c * w + int(min(level, 1.0) * (w - 1))] = (200, 40, 40)
    return sheet


def run(args: argparse.Namespace) -> int:
    from huma_rt.export.demo.bundle import ensure_bundle
    from huma_rt.export.demo.head import face_box

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"-o must name an .mp4 file; got {out}")
    if args.audio is not None:
        audio, source = load_wav(args.audio), f"audio file {args.audio}"
    else:
        text = args.text if args.text is not None else DEFAULT_TEXT
        audio, voice = speak(text, args.tts)
        source = f"text via {voice}"
    sheet_path = args.sheet or out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    bundle, built = ensure_bundle(cache_dir=args.cache_dir, rebuild=args.rebuild)
    t_bundle = time.perf_counter() - t0

    from huma_rt.media import Mp4Writer, write_png
    from huma_rt.runtime import Avatar

    t1 = time.perf_counter()
    avatar = Avatar.load(bundle, device=args.device, backend=args.backend)
    t_preload = time.perf_counter() - t1
    picks = set(sheet_indices(-(-audio.size // (SAMPLE_RATE // avatar.fps))))
    kept: dict[int, np.ndarray] = {}
    writer = Mp4Writer(out, avatar.fps, avatar.size, sample_rate=SAMPLE_RATE)
    frames = avatar.render(audio, sample_rate=SAMPLE_RATE)
    t_render = 0.0
    count = 0
    while True:
        t2 = time.perf_counter()
        frame = next(frames, None)  # only producing frames counts as render time, not encoding
        t_render += time.perf_counter() - t2
        if frame is None:
            break
        writer.write(frame.rgb)
        if frame.index in picks:
            kept[frame.index] = frame.rgb.copy()  # frame.rgb is valid until the next frame
        count += 1
    writer.close(audio)
    write_png(sheet_path, contact_sheet(kept, audio, avatar.fps, scale=1, crop=face_box(avatar.size[1])))

    seconds = audio.size / SAMPLE_RATE
    print(f"audio      {seconds:.2f} s ({source})")
    print(f"bundle     {bundle} ({'built' if built else 'cached'} in {t_bundle:.2f} s)")
    print(f"preload    {t_preload:.2f} s")
    print(f"render     {count} frames in {t_render:.2f} s = {count / max(t_render, 1e-9):.1f} fps, "
          f"real-time factor {t_render / max(seconds, 1e-9):.3f}")
    print(f"wrote      {out} and {sheet_path}")
    return 0
