"""Checkpoints: ``model.safetensors`` + ``encoder.json`` + ``deformer.json`` in one folder.

Weights are stored as float32 safetensors under the prefixes ``encoder.``, ``spatial.`` and
``deformer.``; configs are the dataclasses' JSON. Nothing is ever unpickled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import huma_rt
from huma_rt.errors import FormatError, InputError
from huma_rt.model_config import DeformerConfig, EncoderConfig

from .models import AudioEncoder, Deformer, SpatialEncoder, check_compatible

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"
ENCODER_JSON = "encoder.json"
DEFORMER_JSON = "deformer.json"
FORMAT_TAG = {"format": "huma-rt-checkpoint", "version": "1"}
# Where the trained demo avatar's checkpoint lives once it has been trained and committed.
DEMO_CHECKPOINT_DIR = Path(huma_rt.__file__).parent / "data" / "demo"

Models = tuple[AudioEncoder, SpatialEncoder, Deformer, EncoderConfig, DeformerConfig]


def is_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a folder holding the three checkpoint files."""
    p = Path(path)
    return all((p / name).is_file() for name in (WEIGHTS, ENCODER_JSON, DEFORMER_JSON))


def prepare_output_dir(path: str | Path) -> Path:
    """Create output folder ``path`` (parents too); InputError when it is an existing file."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"output folder {p} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {p}: {exc}") from exc
    return p


def save_checkpoint(path: str | Path, encoder: AudioEncoder, spatial: SpatialEncoder, deformer: Deformer) -> Path:
    """Write the three models and their configs to folder ``path``; returns the folder."""
    check_compatible(encoder.cfg, deformer.cfg)
    if spatial.cfg.to_dict() != deformer.cfg.to_dict():
        raise InputError("spatial encoder and deformer must share one DeformerConfig")
    out = prepare_output_dir(path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in (("encoder", encoder), ("spatial", spatial), ("deformer", deformer)):
        for name, value in module.state_dict().items():
            tensors[f"{prefix}.{name}"] = value.detach().to("cpu", torch.float32).contiguous()
    tmp = out / (WEIGHTS + ".tmp")
    save_file(tensors, str(tmp), metadata=FORMAT_TAG)
    os.replace(tmp, out / WEIGHTS)  # a crash mid-write never leaves a truncated checkpoint
    encoder.cfg.save(out / ENCODER_JSON)
    deformer.cfg.save(out / DEFORMER_JSON)
    log.info("saved checkpoint to %s (%d tensors)", out, len(tensors))
    return out


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FormatError(f"checkpoint weights {path} are not a readable safetensors file: {exc}") from exc


def _load_into(module: torch.nn.Module, prefix: str, weights: dict[str, torch.Tensor], source: Path) -> None:
    own = {k[len(prefix) + 1 :]: v for k, v in weights.items() if k.startswith(prefix + ".")}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(own))
    unexpected = sorted(set(own) - set(expected))
    if missing or unexpected:
        raise FormatError(
            f"checkpoint {source} does not match the {prefix} config: "
            f"missing tensors {[prefix + '.' + k for k in missing]}, "
            f"unexpected tensors {[prefix + '.' + k for k in unexpected]}"
        )
    wrong = [
        f"{prefix}.{name} has shape {tuple(value.shape)} but the config expects {tuple(expected[name].shape)}"
        for name, value in sorted(own.items())
        if tuple(value.shape) != tuple(expected[name].shape)
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise FormatError(f"checkpoint {source} does not match its config: " + "; ".join(wrong[:3]) + more)
    for name, value in own.items():
        if not value.is_floating_point():
            raise FormatError(f"checkpoint {source}: tensor {prefix}.{name} must be floating point; got {value.dtype}")
        if not bool(torch.isfinite(value).all()):
            raise FormatError(f"checkpoint {source}: tensor {prefix}.{name} holds NaN or Inf")
    module.load_state_dict({k: v.to(torch.float32) for k, v in own.items()})


def load_checkpoint(path: str | Path) -> Models:
    """Read folder ``path`` -> (encoder, spatial, deformer, enc_cfg, def_cfg), models in eval mode.

    Raises FormatError when the folder or a file is missing or corrupt, or when the configs do
    not match the stored tensors (names or shapes).
    """
    p = Path(path)
    if not p.is_dir():
        raise FormatError(f"checkpoint folder {p} does not exist or is not a folder")
    for name in (WEIGHTS, ENCODER_JSON, DEFORMER_JSON):
        if not (p / name).is_file():
            raise FormatError(f"checkpoint folder {p} has no {name} (expected {WEIGHTS}, {ENCODER_JSON}, {DEFORMER_JSON})")
    enc_cfg = EncoderConfig.load(p / ENCODER_JSON)
    def_cfg = DeformerConfig.load(p / DEFORMER_JSON)
    try:
        check_compatible(enc_cfg, def_cfg)
        encoder, spatial, deformer = AudioEncoder(enc_cfg), SpatialEncoder(def_cfg), Deformer(def_cfg)
    except InputError as exc:
        raise FormatError(f"checkpoint {p} has inconsistent configs: {exc}") from exc
    weights = _read_weights(p / WEIGHTS)
    for prefix, module in (("encoder", encoder), ("spatial", spatial), ("deformer", deformer)):
        _load_into(module, prefix, weights, p / WEIGHTS)
    stray = sorted(k for k in weights if k.split(".", 1)[0] not in ("encoder", "spatial", "deformer"))
    if stray:
        raise FormatError(f"checkpoint {p / WEIGHTS} holds unknown tensors {stray}")
    log.info("loaded checkpoint %s", p)
    return encoder.eval(), spatial.eval(), deformer.eval(), enc_cfg, def_cfg
