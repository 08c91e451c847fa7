"""Pixel metrics of a reconstruction against the original: PSNR and SSIM (Wang et al. 2004)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (a is clipped to [0, 1])."""
    mse = float((a.clamp(0, 1) - b).pow(2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM over channels, 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, range 1. An image
    smaller than 11 pixels on a side takes the largest odd window it holds (the same Gaussian, cut)."""
    a = a.clamp(0, 1).double()  # float32 leaves variance residue that matters against C2
    b = b.double()
    c = a.shape[1]
    size = min(11, *a.shape[-2:])
    size -= 1 - size % 2
    w = _gaussian_window(size).to(a.device).expand(c, 1, size, size)
    conv = lambda t: F.conv2d(t, w, groups=c)  # noqa: E731 (valid region only)
    mu_a, mu_b = conv(a), conv(b)
    var_a = conv(a * a) - mu_a**2
    var_b = conv(b * b) - mu_b**2
    cov = conv(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())
