"""The log-mel front end in PyTorch, built from the numpy matrices of huma_rt.audio.mel.

Training uses it inside ``AudioEncoder.encode_audio``; the runtime computes the same features
in numpy (huma_rt/audio/features.py). Both multiply by the very same float32 matrices, so they
agree to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from huma_rt.audio.mel import dft_basis, mel_filterbank
from huma_rt.model_config import MelConfig


class LogMel(nn.Module):
    """audio [B, S] float32 -> log-mel [B, T, n_mels], T = 1 + (S - n_fft) // hop, no padding.

    Frame m is audio[:, m*hop : m*hop + n_fft], exactly as ``huma_rt.audio.mel.log_mel``.
    """

    def __init__(self, cfg: MelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # non-persistent: derived from the config, never stored in checkpoints
        self.register_buffer("basis", torch.from_numpy(dft_basis(cfg).copy()), persistent=False)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(cfg).copy()), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio.unfold(-1, self.cfg.n_fft, self.cfg.hop)  # [B, T, n_fft]
        spec = frames @ self.basis
        nb = self.cfg.n_fft // 2 + 1
        power = spec[..., :nb] ** 2 + spec[..., nb:] ** 2
        return torch.log(power @ self.fb + self.cfg.log_floor)
