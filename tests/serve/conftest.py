"""Fixtures for the live-serving tests: real speech as files, the demo avatar, a served page."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from huma_rt.speech.audio import prepare_input, read_wav  # noqa: E402


def espeak(text: str, path: Path) -> np.ndarray:
    """16 kHz mono float32 speech of ``text`` from the espeak-ng program (also left at ``path``)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng (Debian package espeak-ng) is not installed")
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, timeout=30)
    pcm, rate = read_wav(path)
    return prepare_input(pcm, rate)


@pytest.fixture(scope="session")
def question_pcm(tmp_path_factory) -> np.ndarray:
    return espeak("What is the weather like today in Paris?", tmp_path_factory.mktemp("speech") / "q.wav")


@pytest.fixture(scope="session")
def demo_avatar():
    """The demo avatar (built into its cache by the demo's own code when missing)."""
    pytest.importorskip("onnxruntime")
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt.runtime import Avatar

    bundle, _built = ensure_bundle()
    return Avatar.load(bundle, threads=1)
