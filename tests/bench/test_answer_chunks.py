"""bench/answer_chunks: the silences a listener hears between an answer's chunks."""

from __future__ import annotations

import pytest
from huma_rt.bench.answer_chunks import listening_gaps, summarize


def test_gaps_are_the_time_a_chunk_came_after_the_audio_before_it_ran_out():
    # 1 s of audio from t=0.5; the next is ready at 1.2 (inside it: no gap), plays 1.5-2.5;
    # the third is ready at 3.0: 0.5 s of silence
    assert listening_gaps([(0.5, 1.0), (1.2, 1.0), (3.0, 0.5)]) == pytest.approx([0.0, 0.5])
    assert listening_gaps([(0.3, 0.2)]) == []
    assert listening_gaps([]) == []


def test_summary_per_tree_and_load():
    answers = [{"first_audio_ms": v, "gap_ms": g} for v, g in ((300, 0), (500, 120), (900, 0))]
    rows = summarize([{"tree": "A", "duty": 0.0, "answers": answers}, {"tree": "B", "duty": 0.0, "answers": answers[:1]}])
    assert rows[0] == {"tree": "A", "duty": 0.0, "answers": 3, "first_audio_p50_ms": 500, "first_audio_p90_ms": 820,
                       "first_audio_max_ms": 900, "first_audio_mean_ms": 567, "answers_with_a_gap": 1,
                       "gap_total_ms": 120}  # fmt: skip
    assert rows[1]["answers"] == 1 and rows[1]["first_audio_p50_ms"] == 300
