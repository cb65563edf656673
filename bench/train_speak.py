"""A trained avatar speaking new speech: a Piper sentence it never heard -> frames -> a contact
sheet with the audio level under each frame, and how much the mouth moves in speech vs silence.

    python -m huma_rt.bench.train_speak --bundle me.bundle --out DIR [--text "..."] [--mp4]

Mouth motion: the mean absolute difference (0-255 levels) of each frame from the rest frame (the
first frame, before any speech), over frames whose 40 ms of audio is speech (RMS above -40 dBFS)
and over silent ones. A talking avatar moves in speech and rests in silence; the ratio says how
cleanly. Writes ``speak.json``, ``speak.md`` and ``speak_sheet.png`` (and ``speak.mp4`` with --mp4).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from huma_rt.errors import HumaError

log = logging.getLogger(__name__)

TEXT = ("Hello there. I learned to speak from a short video, and now I can say things "
        "that were never said in it. Can you see my lips move?")  # fmt: skip
SPEECH_DBFS = -40.0


def speak(bundle: Path, out: Path, text: str = TEXT, mp4: bool = False) -> dict:
    from huma_rt.commands.demo import contact_sheet, sheet_indices
    from huma_rt.media import write_png
    from huma_rt.runtime import Avatar
    from huma_rt.speech.audio import resample
    from huma_rt.speech.tts import PiperTTS

    pcm, rate = PiperTTS.load().synthesize(text)
    pcm16 = resample(pcm, rate, 16000) if rate != 16000 else pcm
    pcm16 = np.concatenate([np.zeros(8000, np.float32), pcm16.astype(np.float32), np.zeros(8000, np.float32)])
    avatar = Avatar.load(bundle, device="cpu")
    try:
        frames = [f.rgb.copy() for f in avatar.render(pcm16, 16000)]
        fps = int(avatar.fps)
    finally:
        avatar.close()
    spf = 16000 // fps
    rms = np.array([np.sqrt(np.mean(np.square(pcm16[i * spf:(i + 1) * spf], dtype=np.float64)) + 1e-12)
                    for i in range(len(frames))])  # fmt: skip
    speech = 20 * np.log10(rms) > SPEECH_DBFS
    rest = frames[0].astype(np.float32)
    motion = np.array([np.abs(f.astype(np.float32) - rest).mean() for f in frames])
    out.mkdir(parents=True, exist_ok=True)
    sheet = {i: frames[i] for i in sheet_indices(len(frames), 8, 3)}
    write_png(out / "speak_sheet.png", contact_sheet(sheet, pcm16, fps, cols=8, scale=1))
    if mp4:
        from huma_rt.media.mp4 import Mp4Writer

        writer = Mp4Writer(out / "speak.mp4", fps, (frames[0].shape[1], frames[0].shape[0]), sample_rate=16000)
        for f in frames:
            writer.write(f)
        writer.close(pcm16)
    result = {
        "bundle": str(bundle), "text": text, "frames": len(frames), "fps": fps,
        "size": [int(frames[0].shape[1]), int(frames[0].shape[0])],
        "speech_frames": int(speech.sum()), "silent_frames": int((~speech).sum()),
        "motion_speech_mean": float(motion[speech].mean()), "motion_silence_mean": float(motion[~speech].mean()),
        "motion_speech_p95": float(np.percentile(motion[speech], 95)),
    }
    result["speech_over_silence"] = result["motion_speech_mean"] / max(result["motion_silence_mean"], 1e-6)
    (out / "speak.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items())
    (out / "speak.md").write_text(f"# A trained avatar speaking new speech\n\n| | |\n|---|---|\n{rows}\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--text", default=TEXT)
    p.add_argument("--mp4", action="store_true", help="also write speak.mp4 (not for committing)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        r = speak(a.bundle, a.out, a.text, a.mp4)
    except HumaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
