"""Before the frame pass: is there one trackable face in this video at all?

The frame pass reads every frame (minutes for a long video) and only then could a video with no
face or two people be refused. The probe tracks ``count`` frames spread evenly over the video
(found by seeking, a second or two in all), each on its own as the pass treats a frame it has to
detect afresh, and counts their refusals. tracking.py refuses the video at once only when almost
none of them is kept (2 or fewer of 24 for the default 50 %; ``PROBE_RISK``): such a video could
reach the share the training needs only if its trackable stretches fell between the probes, and
the probes are a few seconds apart. Anything less clear-cut goes on to the pass, which refuses
as soon as the share can no longer be reached.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from .face_detect import FaceModel
from .tracking_pass import FramePass, PassState
from .tracking_tracks import REASONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    """The probed frames' indices (estimated from their times) and their refusal names
    (``"ok"`` for a kept frame, else a :data:`REASONS` name)."""

    frames: tuple[int, ...]
    reasons: tuple[str, ...]

    @property
    def kept(self) -> int:
        return sum(r == "ok" for r in self.reasons)

    def counts(self) -> dict[str, int]:
        return dict(Counter(r for r in self.reasons if r != "ok").most_common())


def probe_frames(samples, config, model: FaceModel | None = None) -> ProbeResult:
    """Track each frame of ``samples`` ((index, seconds, rgb uint8 [H, W, 3]), e.g.
    VideoReader.sample) on its own with TrackingConfig ``config``."""
    model = model or FaceModel()
    frames, reasons = [], []
    for index, t, rgb in samples:
        state = PassState()  # no memory: the frame is detected afresh, as after a refusal
        FramePass(config, state, model).push(0, t, rgb)
        frames.append(int(index))
        reasons.append(REASONS[state.reason[0]])
    result = ProbeResult(tuple(frames), tuple(reasons))
    log.info("tracking probe: %d of %d sampled frames kept %s", result.kept, len(reasons), result.counts())
    return result
