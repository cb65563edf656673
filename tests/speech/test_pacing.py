"""The pacer: an answer's next chunk is cut when its synthesis would outlast the audio ahead, and
the TTS keeps its priority until enough audio waits ahead."""

from __future__ import annotations

import math

import pytest

from huma_rt.errors import InputError
from huma_rt.speech.pacing import PacingConfig, SynthesisPacer


class _Rate:
    """A TTS cost model as PiperTTS has it: ``per_char`` seconds for each character (+5)."""

    def __init__(self, per_char: float | None) -> None:
        self.per_char = per_char

    def chars_within(self, seconds: float) -> int | None:
        return None if self.per_char is None else max(0, int(seconds / self.per_char) - 5)


class _Answer:
    """Audio ahead of the playback: each piece made adds its seconds."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead
        self.yields = 0

    def made(self, pacer: SynthesisPacer, seconds: float) -> None:
        self.ahead += seconds
        pacer.audio_out()


def _pacer(tts, answer: _Answer, **cfg) -> SynthesisPacer:
    def on_yield() -> None:
        answer.yields += 1

    return SynthesisPacer(tts, lambda: answer.ahead, on_yield, PacingConfig(**cfg))


TEXT = "Paris is famous for its landmarks, like the Eiffel Tower and the Louvre."


def test_the_first_chunk_is_never_cut_and_later_ones_only_when_late():
    answer = _Answer(0.0)
    pacer = _pacer(_Rate(0.01), answer)
    assert list(pacer.pieces(TEXT)) == [TEXT]  # nothing plays yet: the first chunk is whole
    answer.made(pacer, 10.0)  # 10 s ahead: the next chunk is in time whole
    assert list(pacer.pieces(TEXT)) == [TEXT] and pacer.cuts == 0


def test_a_late_chunk_is_cut_and_the_rest_decided_after_the_piece_is_out():
    answer = _Answer(0.0)
    pacer = _pacer(_Rate(0.01), answer, margin_s=0.05, safety=1.0)
    answer.made(pacer, 0.45)  # "Well," + lead: (0.45 - 0.05) / 0.01 - 5 = 35 characters in time
    pieces = pacer.pieces(TEXT)
    assert next(pieces) == "Paris is famous for its landmarks,"  # 34 characters
    answer.made(pacer, 2.0)  # that piece's audio is out: the rest is in time whole
    assert list(pieces) == ["like the Eiffel Tower and the Louvre."]
    assert pacer.cuts == 1
    # less time ahead: the shortest piece there is, then again after it
    answer2 = _Answer(0.0)
    pacer2 = _pacer(_Rate(0.01), answer2, margin_s=0.05, safety=1.0)
    answer2.made(pacer2, 0.1)
    pieces = pacer2.pieces(TEXT)
    assert next(pieces) == "Paris is famous,"
    answer2.made(pacer2, 0.2)  # 0.3 s ahead: 20 characters
    assert next(pieces) == "for its landmarks,"
    answer2.made(pacer2, 5.0)
    assert list(pieces) == ["like the Eiffel Tower and the Louvre."]


def test_no_cut_without_a_measured_rate_or_while_the_answer_is_held():
    for tts, ahead in ((_Rate(None), 0.2), (object(), 0.2), (_Rate(0.01), math.inf)):
        answer = _Answer(0.0)
        pacer = _pacer(tts, answer)
        answer.made(pacer, ahead)
        assert list(pacer.pieces(TEXT)) == [TEXT]


def test_the_tts_yields_once_enough_audio_waits_ahead():
    answer = _Answer(0.0)
    pacer = _pacer(_Rate(0.01), answer, yield_ahead_s=1.0)
    answer.made(pacer, 0.4)
    assert answer.yields == 0  # 0.4 s ahead: the next piece is still on the critical path
    answer.made(pacer, 0.7)
    assert answer.yields == 1
    answer.made(pacer, 3.0)
    assert answer.yields == 1  # once


@pytest.mark.parametrize("field,value", [("margin_s", -0.1), ("safety", 0.5), ("yield_ahead_s", math.nan),
                                         ("safety", True)])
def test_bad_pacing_config(field, value):
    with pytest.raises(InputError, match=f"PacingConfig.{field} must be a finite number"):
        PacingConfig(**{field: value}).validate()

