"""Phoneme -> viseme mapping and coarticulated per-frame targets."""

from __future__ import annotations

import numpy as np
import pytest
from huma_rt.export.demo.visemes import REST, frame_targets, viseme_curves, viseme_for

from huma_rt.errors import InputError
from huma_rt.speech.espeak import PhonemeEvent


def test_table():
    for ph in ("p", "b", "m"):
        assert viseme_for(ph).closure == 1.0
    assert viseme_for("ɑː").jaw > 0.8 > viseme_for("iː").jaw
    assert viseme_for("uː").round > 0.9 and viseme_for("iː").spread > 0.8
    assert viseme_for("ˈaɪ") == viseme_for("aɪ")  # stress marks ignored
    assert viseme_for("_:") == REST and viseme_for("") == REST
    assert 0 < viseme_for("ʘ").jaw < 0.5  # unknown: neutral, small opening
    with pytest.raises(InputError, match="phoneme"):
        viseme_for(3)  # type: ignore[arg-type]


def _events(seq, t=0.2):
    out = []
    for ph, dur in seq:
        out.append(PhonemeEvent(t, t + dur, ph))
        t += dur
    return out


def test_silence_is_rest_and_vowel_opens():
    ev = _events([("m", 0.08), ("ɑː", 0.25), ("p", 0.06), ("ɑː", 0.25)], t=0.5)
    t = np.array([0.0, 0.05, 0.7, 0.92, 1.9, 2.3])
    c = viseme_curves(ev, t, audio_end_s=2.0)
    assert c.shape == (6, 4) and (c >= 0).all() and (c <= 1).all()
    np.testing.assert_allclose(c[[0, -1]], 0.0, atol=1e-3)  # far from speech: rest
    assert c[2, 0] > 0.7  # inside the vowel: open jaw
    assert c[3, 3] > 0.5 > c[2, 3]  # the /p/ (closure starts before its release event): lips pressed
    # coarticulation: jaw moves smoothly, no step between neighbouring samples
    dense = viseme_curves(ev, np.linspace(0, 1.5, 1501))
    assert np.abs(np.diff(dense[:, 0])).max() < 0.05


def test_frame_targets():
    ev = _events([("h", 0.05), ("ɛ", 0.1), ("l", 0.06), ("oʊ", 0.2)])
    f = frame_targets(ev, 25)
    assert f.shape == (25, 4)
    assert f[:2, 0].max() < 0.15 and f[-5:].max() < 0.05
    assert f[:, 1].max() > 0.4  # /oʊ/ rounds
    assert frame_targets([], 3).max() == 0
    with pytest.raises(InputError):
        frame_targets(ev, -1)
    with pytest.raises(InputError, match="end_s"):
        viseme_curves([PhonemeEvent(0.3, 0.3, "a")], np.zeros(1))
