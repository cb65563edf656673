"""Fixtures for the live-serving tests: real speech as files, the demo avatar, a served page."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from _espeak import espeak  # tests/_espeak.py

sys.path.insert(0, str(Path(__file__).parent))


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


@pytest.fixture(scope="session")
def rest_pose(demo_avatar) -> np.ndarray:
    """The demo avatar's rest pose: what its live session draws from silence alone (frame 40,
    long past the receptive field), [H, W, 3] uint8."""
    session = demo_avatar.session(live=True)
    try:
        for frame in session.idle_frames(40):
            rgb = frame.rgb.copy()
    finally:
        session.close()
    return rgb
