"""``huma-rt render``: an audio file or text through a bundle into MP4 (with audio), PNG frames, or raw RGB24 on stdout.

  huma-rt render --bundle me.bundle --audio speech.mp3 -o out.mp4
  huma-rt render --bundle me.bundle --text "Hello there." -o out.mp4   # Piper voice (or --tts espeak)

The audio goes through huma_rt.media.audio_file (the one reader of ``render``, ``demo`` and
``chat``): WAV/FLAC/MP3/M4A/OGG..., any rate it accepts, downmixed and resampled to the avatar's
16 kHz while decoding; the MP4's audio track is that same 16 kHz mono signal. Text is spoken by
huma_rt.speech.say (as ``demo`` speaks it), after the bundle has loaded, so a bad bundle fails
before a voice is loaded; with ``--png-dir`` its speech is written beside the frames
(``speech.wav``), and ``--raw``, whose ffmpeg command muxes an audio file, needs ``--audio``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from huma_rt.errors import InputError
from huma_rt.speech.say import VOICES

log = logging.getLogger(__name__)

RATE = 16000  # what the reader hands the avatar (Avatar.render's model rate)
SPEECH_WAV = "speech.wav"  # --text with --png-dir: the spoken text beside the frames


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", required=True, type=Path, help="bundle folder or .tar written by 'huma-rt pack'")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", "--wav", dest="audio", type=Path, metavar="FILE",
                     help="input audio: WAV (8/16/24/32-bit, float), FLAC, MP3, M4A, OGG, ...; "
                          "any rate from 4 to 384 kHz, 1-8 channels, at most 1 hour (--wav is the old name)")  # fmt: skip
    src.add_argument("--text", help="text for the avatar to say (spoken by --tts)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", type=Path, help="MP4 file (H.264 when available, else MPEG-4; AAC audio)")
    out.add_argument("--png-dir", type=Path, help="folder for frame_000000.png, ...")
    out.add_argument("--raw", action="store_true", help="raw RGB24 frames to stdout (the ffmpeg command goes to stderr)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "triton"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16"))
    p.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: its own)")
    p.add_argument("--tts", choices=VOICES, default="auto",
                   help="voice for --text: the Piper voice package, or espeak-ng (auto: Piper if installed)")
    p.add_argument("--blink", action="store_true",
                   help="the avatar blinks every few seconds, as when served (bundles with a blink code)")
    p.add_argument("--strict-rate", action="store_true", help="refuse audio that is not 16 kHz instead of resampling")
    p.add_argument("--trusted-key", dest="trusted_keys", action="append", type=Path, metavar="KEY.pub",
                   help="ed25519 public key (repeatable): the bundle must be signed by one of them "
                        "('huma-rt pack --sign', 'huma-rt keygen')")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from huma_rt.media import Mp4Writer, load_audio, write_png, write_wav
    from huma_rt.runtime import Avatar
    from huma_rt.runtime.blink import BlinkSchedule
    from huma_rt.speech.say import speak

    if args.output is not None and args.output.suffix.lower() != ".mp4":
        raise InputError(f"-o must name an .mp4 file; got {args.output}")
    if args.text is not None and args.raw:
        raise InputError("--raw writes frames only, and its ffmpeg command muxes an audio file: "
                         "give --audio FILE, or use -o or --png-dir with --text")  # fmt: skip
    mono = None
    if args.audio is not None:
        mono, info = load_audio(args.audio, RATE)
        if args.strict_rate and info.sample_rate != RATE:
            raise InputError(f"--strict-rate: {args.audio} must be {RATE} Hz; got {info.sample_rate} Hz")
    rate = RATE
    t0 = time.perf_counter()
    avatar = Avatar.load(args.bundle, device=args.device, backend=args.backend, precision=args.precision,
                         threads=args.threads, trusted_keys=args.trusted_keys)  # fmt: skip
    t_load = time.perf_counter() - t0
    if mono is None:
        mono, voice = speak(args.text, args.tts)
        log.info("text spoken by %s: %.2f s", voice, mono.size / RATE)
    w, h = avatar.size
    blinks = BlinkSchedule(avatar.fps) if args.blink else None
    frames = avatar.render(mono, sample_rate=rate, strict=args.strict_rate, blinks=blinks)
    t1 = time.perf_counter()
    n = 0
    if args.output is not None:
        with Mp4Writer(args.output, avatar.fps, avatar.size, sample_rate=rate) as mp4:
            for f in frames:
                mp4.write(f.rgb)
                n += 1
            mp4.close(mono)
        where = str(args.output)
    elif args.png_dir is not None:
        args.png_dir.mkdir(parents=True, exist_ok=True)
        if args.text is not None:
            write_wav(args.png_dir / SPEECH_WAV, mono, rate)
        for f in frames:
            write_png(args.png_dir / f"frame_{f.index:06d}.png", f.rgb)
            n += 1
        where = f"{args.png_dir}/frame_%06d.png"
    else:
        print(
            f"ffmpeg -f rawvideo -pix_fmt rgb24 -s {w}x{h} -r {avatar.fps} -i - -i {args.audio} "
            "-c:v libx264 -pix_fmt yuv420p -c:a aac -shortest out.mp4",
            file=sys.stderr,
        )
        out = sys.stdout.buffer
        try:
            for f in frames:
                out.write(f.rgb.data)
                n += 1
            out.flush()
        except BrokenPipeError:
            log.warning("stdout closed after %d frames", n)
            return 1
        where = "stdout"
    dt = time.perf_counter() - t1
    secs = mono.size / rate
    print(f"{n} frames ({secs:.2f} s of audio) -> {where}; preload {t_load:.2f} s, render {dt:.2f} s "
          f"({n / max(dt, 1e-9):.1f} fps)", file=sys.stderr)  # fmt: skip
    return 0
