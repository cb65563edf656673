"""Real speech for tests: the espeak-ng program speaks a text to a WAV, read back as 16 kHz mono
float32. A uniquely named module (``from conftest import ...`` resolves to whichever conftest.py
pytest imported last)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from huma_rt.speech.audio import prepare_input, read_wav


def espeak(text: str, path: Path) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` from espeak-ng (the WAV is left at ``path``)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng (Debian package espeak-ng) is not installed")
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    pcm, rate = read_wav(path)
    return prepare_input(pcm, rate)


def needs_libespeak() -> None:
    """Skip unless libespeak-ng (the library the demo's phoneme timing comes from) loads."""
    from huma_rt.errors import MissingDependencyError
    from huma_rt.speech import espeak as espeak_lib

    try:
        espeak_lib.sample_rate()
    except MissingDependencyError as exc:
        pytest.skip(f"libespeak-ng is not available: {exc}")
