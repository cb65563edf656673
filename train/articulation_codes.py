"""Tracked articulation -> the demo's articulation scale -> motion codes.

Tracking (tracking.py, face_articulation.py) measures a person in millimetres over their own
rest, divided by fixed full scales; the shipped demo AudioEncoder emits codes
``E @ (jaw, round, spread, closure, blink=0)`` on the demo's [0, 1] scale (export/demo). A
person's avatar is driven at run time by that encoder, so the codes it is trained with must
span the same range the encoder produces for speech.

The mapping, per parameter: ``demo = clip(gain * tracked, 0, 1)``, one gain per parameter
chosen so that the ``QUANTILE`` (90th percentile) of the person's valid frames lands on the
90th percentile of what the demo encoder emits over a fixed speech corpus (the demo's held-out
sentences spoken by espeak-ng with the lead and tail silence its training clips had).

Why a gain and not a full quantile match: both scales put the rest (mouth shut, relaxed lips,
open eyes) at 0, and the avatar's rest pose is code 0, so the map must keep 0 at 0; a gain does,
keeps the tracked timeline's shape (Pearson r is unchanged) and needs one robust statistic, not
a whole distribution that the share of silence in a video would shift. Why the 90th
percentile: a talking-head video is mostly speech, so the top decile lies inside speech even
without knowing where speech is (a silent video has no audio to tell), and it is far enough
from the extremes that a few mistracked frames do not set the scale. Gains are bounded
(``MIN_GAIN``..``MAX_GAIN``) so a parameter the tracker barely sees (its 90th percentile in the
noise) is not blown up into noise on the demo scale. ``blink`` passes through (gain 1): the
tracker's blink already reads 1 for a closed eye and the demo encoder never emits one.

The demo encoder's percentiles are committed (``REFERENCE_Q``) so training needs no espeak-ng;
:func:`reference_quantiles` recomputes them from the shipped weights (tests check they agree,
so retrained demo weights cannot leave them stale).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

from huma_rt.errors import InputError

from .face_articulation import ARTICULATION
from .tracking_tracks import Tracks

log = logging.getLogger(__name__)

BLINK_SHUT = 0.7  # a tracked blink this strong is an eye shut (1: fully, on the demo's scale)
MIN_BLINK_FRAMES = 3  # shut-eye frames the deformer must have been fitted on for the avatar to blink
PARAMS = ARTICULATION[:5]  # the demo's (jaw, round, spread, closure, blink)
SPEECH_PARAMS = PARAMS[:4]  # what the demo encoder drives from audio
QUANTILE = 90.0
MIN_GAIN, MAX_GAIN = 0.25, 4.0
_FLOOR = 0.02  # tracked 90th percentiles below this are noise: the gain is capped by MAX_GAIN
# reference_quantiles() of the shipped demo weights (huma_rt/data/demo, 2026-12-06)
REFERENCE_Q = (0.481, 0.328, 0.338, 0.535, 1.0)


@dataclass
class ArticulationCalibration:
    """Per-person map tracked -> demo scale: ``demo[:, i] = clip(gain[i] * tracked[:, i], 0, 1)``.

    gain [5] per PARAMS; tracked_q / reference_q [5]: the person's and the demo encoder's
    QUANTILE-th percentiles the gains came from; frames: valid frames used.
    """

    gain: np.ndarray
    tracked_q: np.ndarray
    reference_q: np.ndarray
    frames: int

    def to_dict(self) -> dict:
        return {"params": list(PARAMS), "quantile": QUANTILE, "gain": self.gain.tolist(),
                "tracked_q": self.tracked_q.tolist(), "reference_q": self.reference_q.tolist(),
                "frames": int(self.frames)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> ArticulationCalibration:
        if tuple(d.get("params", ())) != PARAMS:
            raise InputError(f"calibration params must be {PARAMS}; got {d.get('params')}")
        arrays = [np.asarray(d[k], np.float64) for k in ("gain", "tracked_q", "reference_q")]
        if any(a.shape != (len(PARAMS),) or not np.isfinite(a).all() for a in arrays):
            raise InputError(f"calibration gain/tracked_q/reference_q must be {len(PARAMS)} finite numbers; got {d}")
        return cls(*arrays, frames=int(d["frames"]))

    def apply(self, articulation: np.ndarray) -> np.ndarray:
        """Tracked articulation float [T, >=5] (NaN where unknown) -> float32 [T, 5] demo scale."""
        a = np.asarray(articulation, np.float64)
        if a.ndim != 2 or a.shape[1] < len(PARAMS):
            raise InputError(f"articulation must be [T, >= {len(PARAMS)}] ({PARAMS} first); got {a.shape}")
        return np.clip(a[:, : len(PARAMS)] * self.gain, 0.0, 1.0).astype(np.float32)  # NaN stays NaN


@functools.lru_cache(maxsize=1)
def reference_quantiles() -> tuple[float, ...]:
    """The demo encoder's QUANTILE-th percentile per PARAMS over the reference speech corpus
    (espeak-ng, the demo's 20 held-out sentences, each in a training voice, 0.3 s lead and 0.4 s
    tail silence); blink is 1 (passed through). Computed once per process (~2-10 s); needs
    espeak-ng. ``REFERENCE_Q`` holds the shipped weights' values. Run it in a process that has
    not synthesised with variant voices ('en-us+f3'): libespeak-ng keeps some of a variant's voice
    state afterwards, which moves these percentiles by up to ~0.015."""
    import torch
    from huma_rt.export.demo.codes import codes_to_params
    from huma_rt.export.demo.corpus import HELD_OUT_SENTENCES, TRAIN_VOICES
    from huma_rt.export.demo.data import make_utterance

    from .audio_adapt import load_demo_encoder
    from .synthetic import demo_embedding

    encoder, emb = load_demo_encoder(), demo_embedding()
    params = []
    with torch.no_grad():
        for i, text in enumerate(HELD_OUT_SENTENCES):
            u = make_utterance(text, TRAIN_VOICES[i % len(TRAIN_VOICES)], rate=175, pitch=50)
            codes = encoder.encode_audio(torch.from_numpy(u.audio)[None])[0].numpy()
            params.append(codes_to_params(codes, emb))
    p = np.clip(np.concatenate(params), 0.0, 1.0)
    q = np.percentile(p, QUANTILE, axis=0)
    q[PARAMS.index("blink")] = 1.0
    log.info("demo encoder reference: %d frames, %s percentile %s", len(p), QUANTILE, np.round(q, 3).tolist())
    return tuple(float(v) for v in q)


def calibrate(articulation: np.ndarray, valid: np.ndarray, reference=REFERENCE_Q) -> ArticulationCalibration:
    """A person's tracked articulation float [T, 11] (tracking.Tracks.articulation; PARAMS first)
    and valid bool [T] -> the calibration (module docstring: one gain per parameter).
    ``reference``: the demo encoder's percentiles [5] (default: the shipped weights')."""
    a = np.asarray(articulation, np.float64)
    v = np.asarray(valid, bool)
    if a.ndim != 2 or a.shape[1] < len(PARAMS) or v.shape != (a.shape[0],):
        raise InputError(f"articulation must be [T, >= {len(PARAMS)}] with valid [T]; got {a.shape} and {v.shape}")
    use = v & np.isfinite(a[:, : len(PARAMS)]).all(1)
    if use.sum() < 2:
        raise InputError(f"calibration needs at least 2 valid tracked frames; got {int(use.sum())} of {len(v)}")
    tracked_q = np.percentile(np.clip(a[use, : len(PARAMS)], 0.0, None), QUANTILE, axis=0)
    ref = np.asarray(reference, np.float64)
    if ref.shape != (len(PARAMS),) or not (ref > 0).all():
        raise InputError(f"reference must be {len(PARAMS)} positive percentiles; got {reference!r}")
    gain = np.clip(ref / np.maximum(tracked_q, _FLOOR), MIN_GAIN, MAX_GAIN)
    gain[PARAMS.index("blink")] = 1.0
    cal = ArticulationCalibration(gain, tracked_q, ref, int(use.sum()))
    log.info("articulation calibration from %d frames: gains %s", cal.frames,
             dict(zip(PARAMS, np.round(gain, 3).tolist(), strict=True)))  # fmt: skip
    return cal


def tracked_params(tracks: Tracks, cal: ArticulationCalibration) -> np.ndarray:
    """The tracked articulation on the demo scale, float32 [T, 5] (PARAMS), NaN where invalid."""
    out = cal.apply(tracks.articulation)
    out[~np.asarray(tracks.valid, bool)] = np.nan
    return out


def params_to_codes(params: np.ndarray) -> np.ndarray:
    """Demo-scale params float [T, 5] -> motion codes float32 [T, code_dim] = params @ E.T (the
    shipped demo's embedding E, export/demo/codes.py). Raises InputError on NaN: pick valid rows."""
    from huma_rt.export.demo import codes

    from .synthetic import demo_embedding

    p = np.asarray(params, np.float32)
    if p.ndim != 2 or p.shape[1] != len(PARAMS) or not np.isfinite(p).all():
        raise InputError(f"params must be finite [T, {len(PARAMS)}] ({PARAMS}); got {p.shape}"
                         f"{'' if np.isfinite(p).all() else ' with NaN'}")  # fmt: skip
    return codes.params_to_codes(p, demo_embedding())


def blink_code(params: np.ndarray, *, shut: float = BLINK_SHUT, min_frames: int = MIN_BLINK_FRAMES) -> np.ndarray | None:
    """The code of shut eyes for a trained avatar's bundle, float32 [code_dim] = E @ (0, 0, 0, 0, 1),
    or None when fewer than ``min_frames`` rows of ``params`` [T, 5] (the frames the deformer was
    fitted on, demo scale, NaN rows ignored) show a blink of at least ``shut``: a deformer never
    shown a shut eye would move the lids anywhere, so such an avatar does not blink."""
    from .synthetic import demo_embedding

    p = np.asarray(params, np.float32)
    if p.ndim != 2 or p.shape[1] != len(PARAMS):
        raise InputError(f"params must be [T, {len(PARAMS)}] ({PARAMS}); got {p.shape}")
    b = p[:, PARAMS.index("blink")]
    if int(np.count_nonzero(b[np.isfinite(b)] >= shut)) < min_frames:
        return None
    return np.ascontiguousarray(demo_embedding()[:, PARAMS.index("blink")], np.float32)
