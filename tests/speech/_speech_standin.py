"""TEST DOUBLE, labelled as such: a stand-in for ``huma_rt.Avatar`` built to the session
contract of docs/INTERFACES.md, used only because huma_rt.runtime has not landed in this tree
yet. It renders nothing: each frame's rgb is filled with the frame index (mod 256) so tests can
check order, and the frame spans follow the timing contract (frame t = samples
[640 t, 640 t + 640), emitted once 1400 samples of lookahead past its end have arrived).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOOKAHEAD = 1400


@dataclass
class StandInFrame:
    index: int
    pts: float
    sample_start: int
    sample_end: int
    rgb: np.ndarray


class StandInSession:
    def __init__(self, avatar: StandInAvatar) -> None:
        self.avatar = avatar
        self.pushed = 0
        self.finished = False
        self.next_index = 0
        self._rgb = np.zeros((8, 8, 3), np.uint8)

    def push_audio(self, pcm, sample_rate=16000):
        assert sample_rate == 16000 and pcm.dtype == np.float32 and pcm.ndim == 1
        assert np.isfinite(pcm).all()
        self.pushed += pcm.size

    def finish(self):
        self.finished = True

    def frames(self):
        while True:
            t = self.next_index
            end = 640 * (t + 1)
            ready = end + LOOKAHEAD <= self.pushed or (self.finished and 640 * t < self.pushed)
            if not ready:
                return
            self._rgb[...] = t % 256
            self.next_index += 1
            yield StandInFrame(t, t / 25, 640 * t, end, self._rgb)


class StandInAvatar:
    fps = 25
    sample_rate = 16000
    size = (8, 8)

    def __init__(self) -> None:
        self.sessions: list[StandInSession] = []

    def session(self, live=False):
        s = StandInSession(self)
        self.sessions.append(s)
        return s
