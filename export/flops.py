"""Parameter counts and per-frame FLOPs of the model family, counted by running the models.

FLOPs are those of matrix multiplies and convolutions (2 per multiply-accumulate) as
``torch.utils.flop_counter.FlopCounterMode`` counts them; elementwise ops (bias, ReLU, the
normalisation) and the tri-plane's bilinear lookup are left out, they are a few percent.
Run ``python -m huma_rt.export.flops`` to print the table used in docs/models.md.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from huma_rt.model_config import DeformerConfig, EncoderConfig

from .models import AudioEncoder, Deformer, SpatialEncoder, build_models, count_parameters

DEFAULT_NS = (10_000, 50_000, 100_000)


def count_flops(fn, *args) -> int:
    """Matrix FLOPs of one call ``fn(*args)`` (no grad)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def model_costs(
    encoder: AudioEncoder, spatial: SpatialEncoder, deformer: Deformer, ns: tuple[int, ...] = DEFAULT_NS
) -> dict:
    """Parameters and FLOPs: encoder per streamed frame and amortised offline, deformer per frame at each N."""
    cfg = encoder.cfg
    window = torch.zeros(1, cfg.receptive_mels, cfg.mel.n_mels)
    clip_frames = 250  # 10 s at 25 fps, for the amortised whole-clip cost
    clip = torch.zeros(1, cfg.receptive_mels + cfg.mels_per_frame * (clip_frames - 1), cfg.mel.n_mels)
    code = torch.zeros(1, deformer.cfg.code_dim)
    per_n = {}
    for n in ns:
        means = torch.rand(n, 3) * 2 - 1
        feat = spatial(means).detach()
        per_n[n] = {
            "spatial_preload": count_flops(spatial, means),
            "deformer_per_frame": count_flops(deformer, feat, code),
        }
    enc_stream = count_flops(encoder, window)
    for entry in per_n.values():
        entry["total_per_frame"] = enc_stream + entry["deformer_per_frame"]
    return {
        "parameters": {
            "encoder": count_parameters(encoder),
            "spatial": count_parameters(spatial),
            "deformer": count_parameters(deformer),
        },
        "encoder_per_frame_streaming": enc_stream,
        "encoder_per_frame_offline": count_flops(encoder, clip) // clip_frames,
        "per_n": per_n,
    }


def format_costs(costs: dict) -> str:
    """Markdown tables of ``model_costs`` output."""
    p = costs["parameters"]
    lines = [
        "| network | parameters |",
        "|---|---|",
        *(f"| {k} | {v:,} |" for k, v in p.items()),
        f"| spatial + deformer | {p['spatial'] + p['deformer']:,} |",
        "",
        f"Encoder: {costs['encoder_per_frame_streaming'] / 1e6:.2f} MFLOP per streamed frame "
        f"(one receptive window), {costs['encoder_per_frame_offline'] / 1e6:.2f} MFLOP per frame "
        "amortised over a 10 s clip encoded at once.",
        "",
        "| N dynamic Gaussians | deformer MFLOP / frame | encoder + deformer MFLOP / frame | spatial MFLOP (once, preload) |",
        "|---|---|---|---|",
    ]
    for n, e in costs["per_n"].items():
        lines.append(
            f"| {n:,} | {e['deformer_per_frame'] / 1e6:.1f} | {e['total_per_frame'] / 1e6:.1f} | "
            f"{e['spatial_preload'] / 1e6:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS), help="dynamic Gaussian counts")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args(argv)
    costs = model_costs(*build_models(EncoderConfig(), DeformerConfig(), seed=0), ns=tuple(args.n))
    print(json.dumps(costs, indent=2) if args.json else format_costs(costs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
