"""How motion codes relate to the 5 articulation parameters: a fixed linear embedding.

code = E @ params with E [code_dim, 5] having orthogonal columns of norm CODE_SCALE (seeded QR),
so params = E.T @ code / CODE_SCALE**2 for codes in its span. The Deformer is trained to turn
E @ params (plus small noise off the span) into the articulation's deltas, and the AudioEncoder is
trained to emit E @ (jaw, round, spread, closure, blink=0) from speech; both sides are trained
against the same E, which is stored in ``demo.json`` beside the weights.
"""

from __future__ import annotations

import numpy as np

from huma_rt.errors import InputError

from .articulation import PARAMS

CODE_SCALE = 2.0


def embedding(code_dim: int, seed: int = 0) -> np.ndarray:
    """E [code_dim, 5] float32: orthogonal columns of norm CODE_SCALE, deterministic by seed."""
    if code_dim < len(PARAMS):
        raise InputError(f"code_dim must be >= {len(PARAMS)}; got {code_dim}")
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(code_dim, len(PARAMS))))
    q *= np.sign(np.diag(r))[None]  # a unique QR: positive diagonal
    return (q * CODE_SCALE).astype(np.float32)


def params_to_codes(params: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """params [..., 5] -> codes [..., code_dim]."""
    return np.asarray(params, np.float32) @ emb.T


def codes_to_params(codes: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """codes [..., code_dim] -> params [..., 5] (least squares: projection onto E's span)."""
    return np.asarray(codes, np.float32) @ emb / CODE_SCALE**2
