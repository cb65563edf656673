"""The model family: AudioEncoder, SpatialEncoder, Deformer (torch only).

Every graph exports to ONNX opset >= 17 with TensorRT-supported ops only (Conv, MatMul, Add,
Relu, GridSample, Transpose, Concat, Slice...). Shapes follow docs/INTERFACES.md:

- ``AudioEncoder.forward``: mel [B, T, n_mels] -> code [B, F, code_dim], F = (T - R)/4 + 1 with
  R = ``EncoderConfig.receptive_mels``; valid (unpadded) convolutions only, so a code depends on
  exactly the R mel frames of its window and streaming equals offline by construction.
- ``SpatialEncoder.forward``: canonical means [N, 3] -> feat [N, hidden] (run once at preload).
- ``Deformer.forward``: feat [N, hidden], code [B, code_dim] -> dmu [B,N,3], dquat [B,N,4],
  dscale [B,N,3].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from huma_rt.errors import InputError
from huma_rt.model_config import DeformerConfig, EncoderConfig

from .mel_torch import LogMel

# Rough log-mel statistics of speech (natural log, floor 1e-5) so an untrained encoder sees
# inputs of unit scale; training replaces them with dataset statistics (set_normalisation).
_DEFAULT_MEL_MEAN = -5.0
_DEFAULT_MEL_STD = 4.0


def temporal_kernels(span: int) -> list[int]:
    """Kernel sizes of the valid temporal convs whose receptive field is ``span + 1`` frames."""
    return [3] * (span // 2) + ([2] if span % 2 else [])


class AudioEncoder(nn.Module):
    """log-mel [B, T, n_mels] -> motion code [B, F, code_dim] (one code per video frame).

    Layers: input normalisation (mean/std buffers) -> Conv1d(kernel = stride = mels per video
    frame) -> ReLU -> valid Conv1d layers (kernel 3, or 2 for an odd span) with ReLU whose total
    receptive field is past_frames + 1 + lookahead_frames video frames -> linear head.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_mels, c, k = cfg.mel.n_mels, cfg.channels, cfg.mels_per_frame
        self.register_buffer("mel_mean", torch.full((n_mels,), _DEFAULT_MEL_MEAN))
        self.register_buffer("mel_std", torch.full((n_mels,), _DEFAULT_MEL_STD))
        self.frame_conv = nn.Conv1d(n_mels, c, kernel_size=k, stride=k)
        self.temporal = nn.ModuleList(
            nn.Conv1d(c, c, kernel_size=ks) for ks in temporal_kernels(cfg.past_frames + cfg.lookahead_frames)
        )
        self.head = nn.Linear(c, cfg.code_dim)
        self.logmel = LogMel(cfg.mel)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the per-bin input statistics (mean [n_mels], std [n_mels] > 0)."""
        n = self.cfg.mel.n_mels
        if tuple(mean.shape) != (n,) or tuple(std.shape) != (n,):
            raise InputError(f"mean and std must have shape ({n},); got {tuple(mean.shape)}, {tuple(std.shape)}")
        if not bool(torch.all(std > 0)):
            raise InputError(f"std must be > 0 everywhere; got min {float(std.min())}")
        self.mel_mean.copy_(mean)
        self.mel_std.copy_(std)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel - self.mel_mean) / self.mel_std  # [B, T, n_mels]
        x = torch.relu(self.frame_conv(x.transpose(1, 2)))  # [B, C, T/4]
        for conv in self.temporal:
            x = torch.relu(conv(x))
        return self.head(x.transpose(1, 2))  # [B, F, code_dim]

    def num_frames(self, num_samples: int) -> int:
        """Video frames (codes) for a clip of ``num_samples`` samples: ceil(S / samples_per_frame)."""
        return -(-num_samples // self.cfg.samples_per_frame)

    def pad_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, S] -> [B, S'] with past context and lookahead silence (timing contract)."""
        cfg = self.cfg
        s = audio.shape[-1]
        left = cfg.past_frames * cfg.samples_per_frame + cfg.mel.left_pad
        right = self.num_frames(s) * cfg.samples_per_frame + cfg.lookahead_samples - s
        return F.pad(audio, (left, right))

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio [B, S] float32 at 16 kHz -> code [B, ceil(S / 640), code_dim] (the offline path)."""
        if audio.dim() != 2 or audio.dtype != torch.float32:
            raise InputError(f"audio must be a [B, S] float32 tensor; got {tuple(audio.shape)} {audio.dtype}")
        if audio.shape[1] == 0:
            return audio.new_zeros((audio.shape[0], 0, self.cfg.code_dim))
        return self(self.logmel(self.pad_audio(audio)))


class SpatialEncoder(nn.Module):
    """Tri-plane features at canonical positions: means [N, 3] -> feat [N, hidden].

    Positions are normalised by the config's bounding box to [-1, 1] and bilinearly sampled
    (border clamp) from three planes (xy, xz, yz); the concatenated 3*plane_channels features go
    through the deformer's first linear layer here, so preload pays for it once.
    """

    def __init__(self, cfg: DeformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        lo = torch.tensor(cfg.bbox_min, dtype=torch.float32)
        hi = torch.tensor(cfg.bbox_max, dtype=torch.float32)
        if lo.shape != (3,) or hi.shape != (3,) or not bool(torch.all(hi > lo)):
            raise InputError(f"bbox_min/bbox_max must be 3 floats with max > min; got {cfg.bbox_min}, {cfg.bbox_max}")
        self.register_buffer("bbox_lo", lo, persistent=False)
        self.register_buffer("bbox_scale", 2.0 / (hi - lo), persistent=False)
        r, c = cfg.plane_resolution, cfg.plane_channels
        self.planes = nn.Parameter(torch.randn(3, c, r, r) * 0.1)
        self.proj = nn.Linear(3 * c, cfg.hidden)

    def forward(self, means: torch.Tensor) -> torch.Tensor:
        p = (means - self.bbox_lo) * self.bbox_scale - 1.0  # [N, 3] in [-1, 1]
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        grid = torch.stack([torch.stack([x, y], -1), torch.stack([x, z], -1), torch.stack([y, z], -1)])
        f = F.grid_sample(
            self.planes, grid.unsqueeze(1), mode="bilinear", padding_mode="border", align_corners=True
        )  # [3, C, 1, N]
        f = f.squeeze(2).permute(2, 0, 1).reshape(means.shape[0], -1)  # [N, 3C]
        return self.proj(f)


class Deformer(nn.Module):
    """Per-frame deformer: feat [N, H] + code [B, D] -> (dmu [B,N,3], dquat [B,N,4], dscale [B,N,3]).

    h = relu(feat + W_c code) broadcast over Gaussians, then ``layers`` hidden H x H layers with
    ReLU, then a linear head initialised small so the untrained deltas are near zero (rest pose).
    """

    def __init__(self, cfg: DeformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.code_proj = nn.Linear(cfg.code_dim, h)
        self.hidden = nn.ModuleList(nn.Linear(h, h) for _ in range(cfg.layers))
        self.head = nn.Linear(h, 10)
        with torch.no_grad():
            self.head.weight.mul_(1e-2 * math.sqrt(h))  # std ~ 1e-2 / sqrt(3): deltas near zero
            self.head.bias.zero_()

    def forward(self, feat: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.relu(feat.unsqueeze(0) + self.code_proj(code).unsqueeze(1))  # [B, N, H]
        for layer in self.hidden:
            x = torch.relu(layer(x))
        out = self.head(x)  # [B, N, 10]
        return out[..., 0:3], out[..., 3:7], out[..., 7:10]


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of ``module`` (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def build_models(
    enc_cfg: EncoderConfig, def_cfg: DeformerConfig, seed: int | None = 0
) -> tuple[AudioEncoder, SpatialEncoder, Deformer]:
    """Freshly initialised (encoder, spatial, deformer) in eval mode; ``seed`` makes it reproducible."""
    check_compatible(enc_cfg, def_cfg)
    if seed is not None:
        torch.manual_seed(seed)
    return AudioEncoder(enc_cfg).eval(), SpatialEncoder(def_cfg).eval(), Deformer(def_cfg).eval()


def check_compatible(enc_cfg: EncoderConfig, def_cfg: DeformerConfig) -> None:
    """The deformer consumes the encoder's codes: their code_dim must agree."""
    if enc_cfg.code_dim != def_cfg.code_dim:
        raise InputError(
            f"encoder code_dim {enc_cfg.code_dim} must equal deformer code_dim {def_cfg.code_dim}"
        )
