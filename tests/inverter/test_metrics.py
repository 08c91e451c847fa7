"""PSNR and SSIM against closed-form values."""
import math

import torch

from inverter.io.metrics import psnr, ssim


def test_psnr_closed_form():
    a = torch.full((1, 3, 16, 16), 0.5)
    b = torch.full((1, 3, 16, 16), 0.6)
    assert abs(psnr(a, b) - 10 * math.log10(1 / 0.01)) < 1e-4
    assert psnr(b, b) == float("inf")


def test_ssim_closed_form():
    a = torch.full((1, 3, 32, 32), 0.5)
    b = torch.full((1, 3, 32, 32), 0.7)
    c1 = 0.01**2
    # constant images: variances and covariance vanish, only the luminance term remains
    expected = (2 * 0.5 * 0.7 + c1) / (0.5**2 + 0.7**2 + c1)
    assert abs(ssim(a, b) - expected) < 1e-5
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert abs(ssim(noise, noise) - 1) < 1e-5
    assert ssim(noise, 1 - noise) < 0
