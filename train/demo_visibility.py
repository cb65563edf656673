"""Which of the demo head's Gaussians any frame shows: the rows the demo bundle is packed with.

The procedural head (export/demo/head.py) is a whole head: the back of the skull, the far side of
the hair, the back of the neck and shoulders never show from the demo's fixed camera. The runtime
still projects, bins and sorts them and blends those inside the redrawn tiles. Weighed as
prune_hidden weighs a trained avatar (the most of one pixel a Gaussian covers in any frame), over
the articulation box's 16 corners with eyes open and shut and 64 seeded points inside it, at the
demo's own camera and size.

export/ may not import the rasterizer (DESIGN.md: formats only), so the rows are computed here, from
the shipped checkpoint and head.py, and shipped beside the checkpoint as ``visible.npz`` (the rows
as packed bits, the head's Gaussian count and a sha256 of its means); export/demo/bundle.py packs
only them while they still match the head it builds. tests/train/test_demo_visibility.py checks
the shipped file against a fresh computation.

    python -m huma_rt.train.demo_visibility     # rewrite huma_rt/data/demo/visible.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint
from huma_rt.export.demo.bundle import DEMO_JSON, VISIBLE_NPZ, head_digest
from huma_rt.export.demo.head import HeadSpec, build_camera, build_head

from .prune_hidden import gaussian_weights, keep_mask

log = logging.getLogger(__name__)

__all__ = ["BELOW", "demo_frame_codes", "demo_weights", "write_visible"]

BELOW = 0.02  # as TrainConfig.prune_below: a share of one pixel
_IDENTITY = (np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(3))  # the demo camera holds its own pose


def demo_frame_codes(meta: dict, random_points: int = 64, seed: int = 0) -> np.ndarray:
    """Codes [F, code_dim] float32 the demo is weighed over: E @ params for the 16 corners of
    (jaw, round, spread, closure) in [0, 1]^4 with blink 0 and 1, and ``random_points`` seeded
    points of the box (every 4th with the eyes shut)."""
    params = list(meta["params"])
    emb = np.asarray(meta["code_embedding"], np.float32)  # [code_dim, len(params)]
    k = len(params) - 1
    corners = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(np.float32)  # [16, 4]
    p = np.zeros((2 * corners.shape[0] + random_points, len(params)), np.float32)
    p[: 2 * corners.shape[0], :k] = np.concatenate([corners, corners])
    p[corners.shape[0] : 2 * corners.shape[0], params.index("blink")] = 1.0
    rng = np.random.default_rng(seed)
    inside = rng.uniform(0.0, 1.0, (random_points, len(params))).astype(np.float32)
    inside[:, params.index("blink")] = (np.arange(random_points) % 4 == 0).astype(np.float32)
    p[2 * corners.shape[0] :] = inside
    return p @ emb.T


def demo_weights(checkpoint: Path = DEMO_CHECKPOINT_DIR) -> tuple[np.ndarray, object]:
    """(weights float64 [N]: each Gaussian's most of one pixel covered, the head Gaussians)."""
    meta = json.loads((Path(checkpoint) / DEMO_JSON).read_text())
    _, spatial, deformer, _, _ = load_checkpoint(checkpoint)
    spec = HeadSpec(**meta["head"])
    head = build_head(spec)
    return gaussian_weights(head, spatial, deformer, build_camera(spec.image_size), _IDENTITY,
                            demo_frame_codes(meta)), head  # fmt: skip


def write_visible(checkpoint: Path = DEMO_CHECKPOINT_DIR, below: float = BELOW) -> Path:
    """Weigh the demo head and write ``visible.npz`` beside the checkpoint -> its path."""
    weights, head = demo_weights(checkpoint)
    keep = keep_mask(weights, head.region, below)
    path = Path(checkpoint) / VISIBLE_NPZ
    np.savez(path, keep=np.packbits(keep), count=np.int64(head.count), head_sha256=np.str_(head_digest(head)),
             below=np.float64(below))  # fmt: skip
    log.info("demo head: %d of %d Gaussians shown (%d never cover %.3f of a pixel) -> %s", int(keep.sum()),
             head.count, int((~keep).sum()), below, path)  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m huma_rt.train.demo_visibility", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT_DIR, help="the demo checkpoint folder")
    p.add_argument("--below", type=float, default=BELOW, help="share of one pixel a Gaussian must cover")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    write_visible(a.checkpoint, a.below)
    return 0


if __name__ == "__main__":
    sys.exit(main())
