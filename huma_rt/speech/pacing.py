"""Keeping an answer's synthesis ahead of its playback.

An answer starts with a short first chunk ("Sure,": 0.3 s of audio) so that it is heard early.
The next chunk must then be synthesized before that audio runs out, and the avatar's clock takes
the lookahead of audio (120 ms on the demo) when it starts: a 21-character sentence (~150 ms of
Piper on a quiet core, 240-360 ms on a loaded one at lowered priority) did not make it, and the
visitor heard a gap after "Sure,". The pacer cuts such a chunk at a clause or phrase boundary
into a piece that is made in time, and lowers the TTS thread's priority only once enough audio
waits ahead of the playback (``yield_ahead_s``), not at the first audio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from huma_rt.config_checks import check_numbers
from huma_rt.speech.text import pace_cut


@dataclass(frozen=True)
class PacingConfig:
    """margin_s: audio kept in hand when a piece is done (the clock takes a frame's audio at
    once, threads wake late). safety: the estimated synthesis time is multiplied by it (the rate
    is an average of the last calls; a core that gets busier runs slower). yield_ahead_s: the TTS
    thread keeps its priority until this much audio waits ahead of the playback."""

    margin_s: float = 0.06
    safety: float = 1.3
    yield_ahead_s: float = 1.0

    def validate(self) -> None:
        check_numbers(self, {"margin_s": 0.0, "safety": 1.0, "yield_ahead_s": 0.0}, owner="PacingConfig",
                      upper={"margin_s": 5.0, "safety": 10.0, "yield_ahead_s": 60.0})


class SynthesisPacer:
    """One answer's chunks -> the pieces to synthesize, each decided just before it is made.

    tts: has ``chars_within(seconds) -> int | None`` (``PiperTTS``); a TTS without it is never
    cut. ahead_s: seconds of the answer's audio made and not yet played (``math.inf`` where no
    clock plays it: audio made as fast as possible). on_yield: lowers the calling thread's
    priority (``pipeline.yield_to_frames``), called once.
    """

    def __init__(self, tts, ahead_s: Callable[[], float], on_yield: Callable[[], None],
                 config: PacingConfig | None = None) -> None:  # fmt: skip
        self.config = config or PacingConfig()
        self.config.validate()
        self._within = getattr(tts, "chars_within", None)
        self._ahead_s, self._on_yield = ahead_s, on_yield
        self.playing = False  # the answer's first audio was handed on
        self.yielded = False
        self.cuts = 0  # pieces cut off chunks to stay ahead

    def pieces(self, chunk: str) -> Iterator[str]:
        """The pieces of ``chunk``, in order; each is cut when the one before it has been made and
        handed on (``audio_out``), so the audio ahead is measured then. The answer's first chunk
        is never cut here (``text.first_cut`` made it short)."""
        rest = chunk
        while rest:
            cut = None
            if self.playing and self._within is not None:
                ahead = self._ahead_s()
                if math.isfinite(ahead):
                    fit = self._within(max(0.0, ahead - self.config.margin_s) / self.config.safety)
                    if fit is not None and len(rest) > fit:
                        cut = pace_cut(rest, fit)
            if cut is None:
                yield rest
                return
            piece, rest = cut
            self.cuts += 1
            yield piece

    def audio_out(self) -> None:
        """A piece's audio was handed on: the answer plays; once enough of it waits ahead, the
        frames get the CPU before the TTS."""
        self.playing = True
        if not self.yielded and self._ahead_s() >= self.config.yield_ahead_s:
            self.yielded = True
            self._on_yield()
