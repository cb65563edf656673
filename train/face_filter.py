"""Temporal smoothing of landmark tracks: the One-Euro filter (Casiez, Roussel, Vogel, CHI 2012).

Why One-Euro: a first-order low-pass whose cutoff rises with the speed of the signal, so a still
face loses its frame-to-frame jitter (cutoff ``min_cutoff``) while a fast jaw opening or a blink
keeps most of its speed (cutoff grows by ``beta`` x speed). Causal, it still lags a fast opening
by about a frame, so tracking.py runs it forwards and backwards and averages (zero phase: the
video is whole before training). It has two parameters that
read in Hz and in units of the signal, unlike a Savitzky-Golay window that blurs blinks. Each
valid run of frames is filtered on its own: the filter restarts after a gap so a face that
reappears elsewhere is not dragged from its old place.
"""

from __future__ import annotations

import numpy as np

from huma_rt.errors import InputError


def _alpha(cutoff: np.ndarray | float, rate: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau * rate)


def one_euro(x: np.ndarray, rate: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0,
             valid: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Filter ``x`` float [T, ...] sampled at ``rate`` Hz along axis 0 -> float64 [T, ...].

    ``beta`` is in 1/(units of x): cutoff = min_cutoff + beta * |dx/dt|. Frames where ``valid``
    (bool [T]) is False are copied through and restart the filter.
    """
    if rate <= 0 or min_cutoff <= 0 or beta < 0 or d_cutoff <= 0:
        raise InputError(f"one_euro needs rate, min_cutoff, d_cutoff > 0 and beta >= 0; got "
                         f"{rate}, {min_cutoff}, {d_cutoff}, {beta}")  # fmt: skip
    x = np.asarray(x, np.float64)
    out = x.copy()
    valid = np.ones(len(x), bool) if valid is None else np.asarray(valid, bool)
    a_d = _alpha(d_cutoff, rate)
    prev = None
    dx = np.zeros(x.shape[1:])
    for i in range(len(x)):
        if not valid[i]:
            prev = None
            continue
        if prev is None:
            prev, dx = x[i], np.zeros(x.shape[1:])
            out[i] = prev
            continue
        dx = a_d * (x[i] - prev) * rate + (1 - a_d) * dx
        a = _alpha(min_cutoff + beta * np.abs(dx), rate)
        prev = a * x[i] + (1 - a) * prev
        out[i] = prev
    return out
