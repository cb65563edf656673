"""The soak benchmark's checks: a clean run counts nothing, and each fault it watches for is counted."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from huma_rt.bench import soak

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from _runtime_avatar import pack_small, shared_export  # noqa: E402

from huma_rt.runtime import Avatar  # noqa: E402


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak")
    bundle = pack_small(shared_export(root / "export"), root / "bundle")
    return Avatar.load(bundle, device="cpu", renderer="cpu", threads=1)


class _DropsFrame:
    """A session whose ``frames()`` swallows frame ``drop``; or shifts every sample span by one."""

    def __init__(self, session, drop: int | None = None, shift_span: bool = False) -> None:
        self.s, self.drop, self.shift = session, drop, shift_span

    def push_audio(self, pcm):
        self.s.push_audio(pcm)

    def finish(self):
        self.s.finish()

    def frames(self):
        for f in self.s.frames():
            if f.index == self.drop:
                continue
            if self.shift:
                f.sample_start += 1
            yield f


def _soak_one(avatar, session, seconds=1.3) -> soak.SessionLog:
    log = soak.SessionLog()
    audio = soak.speech_like(2.0)
    soak.stream_one(session, audio, 123, int(seconds * 16000), 0, 0.0, log,
                    avatar.lookahead_samples, 640, avatar.fps)  # fmt: skip
    return log


def test_a_clean_session_has_no_fault(avatar):
    log = _soak_one(avatar, avatar.session())
    assert (log.frames, log.expected) == (33, 33)
    assert (log.lost, log.span_errors, log.drift_frames) == (0, 0, 0)
    assert log.frame_s.size == log.frames and np.all(log.frame_s > 0)


def test_a_dropped_frame_is_lost_and_drift(avatar):
    log = _soak_one(avatar, _DropsFrame(avatar.session(), drop=5))
    assert log.lost == 1 and log.drift_frames == 0  # the next index arrives; only the gap is counted
    log = _soak_one(avatar, _DropsFrame(avatar.session(), drop=32))  # the last frame: short total
    assert log.lost == 1


def test_a_wrong_sample_span_is_counted(avatar):
    log = _soak_one(avatar, _DropsFrame(avatar.session(), shift_span=True))
    assert log.span_errors == log.frames > 0


def test_quick_soak_writes_its_tables(avatar, tmp_path):
    rec = soak.run(True, tmp_path, bundle=Path(avatar.bundle.path), sessions=2, seconds=1.0, sample_s=0.05)
    row = rec["results"][0]
    assert (row["frames"], row["expected"], row["frames_lost"], row["drift_frames_max"]) == (50, 50, 0, 0)
    assert len(rec["rss_samples"]) >= 2 and (tmp_path / "soak.md").is_file()
    assert "Frame time by tenth" in (tmp_path / "soak.md").read_text()


def test_rss_trend_sees_growth_and_flatness():
    flat = [(60.0 * i, 300.0) for i in range(10)]
    growing = [(60.0 * i, 300.0 + 2.0 * i) for i in range(10)]
    assert soak.rss_trend(flat)["rss_slope_mib_per_min"] == pytest.approx(0.0, abs=1e-9)
    assert soak.rss_trend(growing)["rss_slope_mib_per_min"] == pytest.approx(2.0)
    assert soak.rss_trend(growing)["rss_growth_second_half_mib"] == pytest.approx(8.0)
