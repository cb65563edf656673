"""Photometric losses and image metrics of the static fit (torch, images [H,W,3] float in [0,1]).

The loss is 3DGS's: (1 - lambda) * L1 + lambda * (1 - SSIM) with lambda = 0.2; SSIM uses an
11x11 Gaussian window (sigma 1.5) and the usual constants for a data range of 1. Metrics accept an
optional mask [H,W] (the face matte) so PSNR/SSIM can be reported on the face region.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from huma_rt.errors import InputError

C1, C2 = 0.01**2, 0.03**2


def _window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """The normalised 1-D Gaussian [size]; SSIM's 2-D window is its outer product (separable)."""
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of [1,C,H,W] with zero padding, as two 1-D passes (11x cheaper than 2-D)."""
    c, k = x.shape[1], g.shape[0]
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), padding=(0, k // 2), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), padding=(k // 2, 0), groups=c)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise InputError(f"images must both be [H,W,3]; got {tuple(a.shape)} and {tuple(b.shape)}")


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM [H,W] (mean over channels) of images a, b [H,W,3] in [0,1]; zero padding
    at the border as in 3DGS's implementation."""
    _check_pair(a, b)
    g = _window(dtype=a.dtype).to(a.device)
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    # the five local statistics in one blur call
    mu_x, mu_y, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), g).split(3, 1)
    sxx, syy, sxy = exx - mu_x * mu_x, eyy - mu_y * mu_y, exy - mu_x * mu_y
    num = (2 * mu_x * mu_y + C1) * (2 * sxy + C2)
    den = (mu_x * mu_x + mu_y * mu_y + C1) * (sxx + syy + C2)
    return (num / den)[0].mean(0)


def photometric_loss(render: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.2) -> torch.Tensor:
    """3DGS's (1 - w) * L1 + w * (1 - SSIM) of render and target [H,W,3] -> scalar."""
    l1 = (render - target).abs().mean()
    if ssim_weight == 0.0:
        return l1
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - ssim_map(render, target).mean())


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of x [H,W,...] over the pixels where mask [H,W] is true (None: all); InputError if none."""
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype)
    while m.ndim < x.ndim:
        m = m[..., None]
    m = m.expand_as(x)
    if float(m.sum()) <= 0:
        raise InputError("the mask must cover at least one pixel; got an empty mask")
    return (x * m).sum() / m.sum()


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of images [H,W,3] in [0,1], over the pixels where mask [H,W] > 0.5 if given."""
    _check_pair(a, b)
    m = None if mask is None else mask > 0.5
    mse = float(masked_mean((a.double() - b.double()) ** 2, m))
    return float("inf") if mse <= 0 else -10.0 * math.log10(mse)


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Mean SSIM of images [H,W,3] in [0,1], over the pixels where mask [H,W] > 0.5 if given."""
    m = None if mask is None else mask > 0.5
    return float(masked_mean(ssim_map(a.double(), b.double()), m))
