"""The chat command's MP4 sink: frame count and audio track, checked by decoding with PyAV."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from huma_rt.errors import InputError

av = pytest.importorskip("av")


def test_mp4_has_every_frame_and_the_audio(tmp_path):
    from huma_rt.speech._mp4 import Mp4Sink

    sink = Mp4Sink(tmp_path / "a.mp4", 25, (33, 20))  # odd width: padded to even for yuv420p
    for i in range(30):
        sink(SimpleNamespace(rgb=np.full((20, 33, 3), 8 * i, np.uint8)))
    audio = (0.3 * np.sin(np.arange(30 * 640) * 0.05)).astype(np.float32)
    sink.close(audio)
    with av.open(str(tmp_path / "a.mp4")) as c:
        video = list(c.decode(video=0))
    assert len(video) == 30
    assert abs(int(video[-1].to_ndarray(format="rgb24")[10, 10, 0]) - 8 * 29) <= 6
    with av.open(str(tmp_path / "a.mp4")) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    assert 30 * 640 <= samples <= 30 * 640 + 2048  # AAC pads to whole 1024-sample frames


def test_mp4_refuses_other_containers(tmp_path):
    from huma_rt.speech._mp4 import Mp4Sink

    with pytest.raises(InputError, match=".mp4"):
        Mp4Sink(tmp_path / "a.avi", 25, (8, 8))
