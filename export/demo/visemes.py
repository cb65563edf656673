"""Phonemes -> viseme targets (jaw, round, spread, closure) per video frame, with coarticulation.

Each IPA phoneme (as espeak-ng reports it) gets a target vector and a dominance: how strongly it
holds its target against its neighbours. The curve at time t is the dominance-weighted mean of
every phoneme's target, with weights falling off exponentially from the phoneme's span
(Cohen & Massaro's coarticulation model, simplified); pauses are phonemes with a closed, relaxed
target. Bilabial closures dominate strongly so p/b/m always shut the lips.

espeak-ng marks a stop at its release; the silent closure before it lies in the previous
phoneme's span, so stops' spans are extended back by their closure time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError
from huma_rt.speech.espeak import PhonemeEvent

VISEME_DIMS = ("jaw", "round", "spread", "closure")


@dataclass(frozen=True)
class Viseme:
    """Target (jaw, round, spread, closure) in [0, 1] and a dominance > 0.

    ``jaw_dominance`` (default: ``dominance``) lets lip consonants hold the lips without
    dictating the jaw: in "map" the jaw opens for the vowel while the lips close around it.
    """

    jaw: float
    round: float = 0.0
    spread: float = 0.0
    closure: float = 0.0
    dominance: float = 1.0
    jaw_dominance: float | None = None

    @property
    def target(self) -> np.ndarray:
        return np.array([self.jaw, self.round, self.spread, self.closure])

    @property
    def dominances(self) -> np.ndarray:
        """[4] dominance per dimension (jaw, round, spread, closure)."""
        jd = self.dominance if self.jaw_dominance is None else self.jaw_dominance
        return np.array([jd, self.dominance, self.dominance, self.dominance])


REST = Viseme(0.0, 0.0, 0.0, 0.0, dominance=1.5)

# Longest-prefix match on the IPA string (stress marks and length removed first).
_TABLE: dict[str, Viseme] = {
    # bilabials: lips shut
    "p": Viseme(0.05, closure=1.0, dominance=8.0, jaw_dominance=0.8),
    "b": Viseme(0.05, closure=1.0, dominance=8.0, jaw_dominance=0.8),
    "m": Viseme(0.05, closure=1.0, dominance=8.0, jaw_dominance=0.8),
    # labiodentals: lower lip to upper teeth
    "f": Viseme(0.12, closure=0.55, dominance=3.0, jaw_dominance=0.8),
    "v": Viseme(0.12, closure=0.55, dominance=3.0, jaw_dominance=0.8),
    # rounded consonants
    "w": Viseme(0.15, round=0.95, dominance=3.0),
    "ʃ": Viseme(0.2, round=0.6, dominance=2.0),
    "ʒ": Viseme(0.2, round=0.6, dominance=2.0),
    "tʃ": Viseme(0.2, round=0.55, dominance=2.0),
    "dʒ": Viseme(0.2, round=0.55, dominance=2.0),
    "ɹ": Viseme(0.2, round=0.4, dominance=1.2),
    "r": Viseme(0.2, round=0.3, dominance=1.2),
    # other consonants: small jaw, follow their neighbours (low dominance)
    "θ": Viseme(0.18, spread=0.2, dominance=1.0),
    "ð": Viseme(0.18, spread=0.2, dominance=1.0),
    "s": Viseme(0.1, spread=0.45, dominance=1.3),
    "z": Viseme(0.1, spread=0.45, dominance=1.3),
    "t": Viseme(0.15, spread=0.2, dominance=0.8),
    "d": Viseme(0.15, spread=0.2, dominance=0.8),
    "n": Viseme(0.15, spread=0.1, dominance=0.6),
    "l": Viseme(0.25, dominance=0.6),
    "ɾ": Viseme(0.2, dominance=0.5),
    "k": Viseme(0.2, dominance=0.5),
    "ɡ": Viseme(0.2, dominance=0.5),
    "g": Viseme(0.2, dominance=0.5),
    "ŋ": Viseme(0.2, dominance=0.5),
    "h": Viseme(0.3, dominance=0.3),
    "j": Viseme(0.2, spread=0.5, dominance=1.0),
    "ʔ": Viseme(0.1, dominance=0.5),
    "x": Viseme(0.2, dominance=0.5),
    # vowels
    "iː": Viseme(0.22, spread=0.9, dominance=1.4),
    "i": Viseme(0.22, spread=0.8, dominance=1.3),
    "ɪ": Viseme(0.3, spread=0.6, dominance=1.2),
    "eɪ": Viseme(0.5, spread=0.6, dominance=1.3),
    "e": Viseme(0.5, spread=0.55, dominance=1.3),
    "ɛ": Viseme(0.55, spread=0.45, dominance=1.3),
    "æ": Viseme(0.8, spread=0.4, dominance=1.4),
    "a": Viseme(0.9, dominance=1.4),
    "aɪ": Viseme(0.85, spread=0.2, dominance=1.4),
    "aʊ": Viseme(0.85, round=0.3, dominance=1.4),
    "ɑ": Viseme(0.95, dominance=1.4),
    "ɒ": Viseme(0.85, round=0.3, dominance=1.4),
    "ʌ": Viseme(0.65, dominance=1.2),
    "ɐ": Viseme(0.55, dominance=1.1),
    "ə": Viseme(0.4, dominance=0.9),
    "ɚ": Viseme(0.35, round=0.3, dominance=1.0),
    "ɜ": Viseme(0.45, round=0.25, dominance=1.1),
    "ɔɪ": Viseme(0.6, round=0.6, dominance=1.4),
    "ɔ": Viseme(0.65, round=0.7, dominance=1.4),
    "oʊ": Viseme(0.5, round=0.8, dominance=1.4),
    "əʊ": Viseme(0.45, round=0.7, dominance=1.4),
    "o": Viseme(0.5, round=0.8, dominance=1.4),
    "ʊ": Viseme(0.3, round=0.75, dominance=1.3),
    "uː": Viseme(0.25, round=1.0, dominance=1.5),
    "u": Viseme(0.25, round=0.95, dominance=1.5),
    "ɪə": Viseme(0.35, spread=0.4, dominance=1.2),
    "eə": Viseme(0.55, spread=0.3, dominance=1.2),
    "ʊə": Viseme(0.35, round=0.6, dominance=1.2),
    "_": REST,
}
_STRIP = str.maketrans("", "", "ˈˌːˑ̃ʲ")
STOP_CLOSURE_S = {"p": 0.06, "b": 0.05, "t": 0.04, "d": 0.035, "k": 0.04, "ɡ": 0.035, "g": 0.035}
TIME_CONSTANT_S = 0.045  # how fast a phoneme's influence fades outside its span
CLOSURE_TIME_CONSTANT_S = 0.025


def viseme_for(phoneme: str) -> Viseme:
    """The viseme of one IPA phoneme (longest known prefix; unknown -> a neutral small jaw)."""
    if not isinstance(phoneme, str):
        raise InputError(f"phoneme must be a str; got {type(phoneme).__name__}")
    if phoneme in _TABLE:
        return _TABLE[phoneme]
    bare = phoneme.translate(_STRIP)
    if not bare or bare.startswith("_"):
        return REST
    # try with the length mark kept, then without
    for key in (phoneme.replace("ˈ", "").replace("ˌ", ""), bare):
        for n in range(len(key), 0, -1):
            if key[:n] in _TABLE:
                return _TABLE[key[:n]]
    return Viseme(0.25, dominance=0.5)


def viseme_curves(events: Sequence[PhonemeEvent], times: np.ndarray, audio_end_s: float | None = None,
                  tau: float = TIME_CONSTANT_S) -> np.ndarray:
    """Coarticulated targets [T, 4] (jaw, round, spread, closure) at ``times`` [T] seconds.

    Gaps between events (pauses) and the stretches before the first and after the last event are
    REST. Values lie in [0, 1].
    """
    times = np.asarray(times, dtype=np.float64)
    spans: list[tuple[float, float, Viseme]] = []
    prev_start = prev_end = 0.0
    for ev in events:
        start, end = float(ev.start_s), float(ev.end_s)
        if not end > start:
            raise InputError(f"phoneme event {ev} must have end_s > start_s")
        v = viseme_for(ev.phoneme)
        bare = ev.phoneme.translate(_STRIP)
        if bare in STOP_CLOSURE_S:
            # the closure takes at most the second half of the phoneme before the stop
            floor = 0.5 * (prev_start + prev_end) if prev_end >= start - 1e-3 else start - 1.0
            start = max(start - STOP_CLOSURE_S[bare], floor, 0.0)
        if start > prev_end + 1e-3:
            spans.append((prev_end, start, REST))
        spans.append((start, end, v))
        prev_start, prev_end = start, max(prev_end, end)
    last = max(prev_end, audio_end_s if audio_end_s is not None else prev_end)
    spans.append((prev_end, max(last, prev_end) + 1.0, REST))
    if not spans:
        return np.zeros((times.size, 4))
    s = np.array([a for a, _, _ in spans])
    e = np.array([b for _, b, _ in spans])
    targets = np.stack([v.target for _, _, v in spans])  # [K,4]
    dom = np.stack([v.dominances for _, _, v in spans])  # [K,4]
    # distance from each time to each span (0 inside)
    dist = np.maximum(0.0, np.maximum(s[None] - times[:, None], times[:, None] - e[None]))  # [T,K]
    # lip closure is a quick gesture: it fades faster than the jaw and lip shape
    taus = np.array([tau, tau, tau, CLOSURE_TIME_CONSTANT_S * tau / TIME_CONSTANT_S])
    d = dist[:, :, None] / taus  # [T,K,4]
    w = np.where(d > 8, 0.0, np.exp(-d)) * dom[None]  # [T,K,4]
    total = w.sum(1)  # [T,4]
    out = np.einsum("tkd,kd->td", w, targets) / np.maximum(total, 1e-12)
    out[total <= 1e-12] = 0.0
    return np.clip(out, 0.0, 1.0)


def frame_targets(events: Sequence[PhonemeEvent], num_frames: int, fps: int = 25,
                  oversample: int = 8) -> np.ndarray:
    """Viseme targets [num_frames, 4] for video frames: the mean over each frame's span
    [t/fps, (t+1)/fps) (``oversample`` points a frame)."""
    if num_frames < 0:
        raise InputError(f"num_frames must be >= 0; got {num_frames}")
    k = np.arange(num_frames * oversample)
    times = (k + 0.5) / (fps * oversample)
    curves = viseme_curves(events, times, audio_end_s=num_frames / fps)
    return curves.reshape(num_frames, oversample, 4).mean(1)
