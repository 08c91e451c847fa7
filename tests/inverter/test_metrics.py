"""PSNR against its closed form; SSIM against scikit-image's reference implementation on real photos."""
import math

import numpy as np
import pytest
import torch

from inverter.io.images import load_image
from inverter.io.metrics import psnr, ssim


def test_psnr_closed_form():
    a = torch.full((1, 3, 16, 16), 0.5)
    b = torch.full((1, 3, 16, 16), 0.6)
    assert abs(psnr(a, b) - 10 * math.log10(1 / 0.01)) < 1e-4
    assert psnr(b, b) == float("inf")


@pytest.mark.parametrize("photo_name", ["astronaut.png", "chelsea.png", "coffee.png"])
@pytest.mark.parametrize("damage", ["noise", "blur", "shift"])
def test_ssim_equals_scikit_image(photo_name, damage):
    """Gaussian window sigma 1.5 (11x11), K1 0.01, K2 0.03, population covariance, range 1: the
    settings of Wang et al. 2004 that scikit-image's `structural_similarity` reproduces."""
    skimage_data = pytest.importorskip("skimage.data")
    from pathlib import Path

    from skimage.metrics import structural_similarity

    photo = load_image(Path(skimage_data.__file__).parent / photo_name, (96, 96))
    g = torch.Generator().manual_seed(0)
    if damage == "noise":
        other = (photo + 0.1 * torch.randn(photo.shape, generator=g)).clamp(0, 1)
    elif damage == "blur":
        other = torch.nn.functional.avg_pool2d(photo, 3, stride=1, padding=1, count_include_pad=False)
    else:
        other = photo.roll(3, dims=3)
    ours = ssim(other, photo)
    reference = structural_similarity(other[0].permute(1, 2, 0).numpy().astype(np.float64),
                                      photo[0].permute(1, 2, 0).numpy().astype(np.float64),
                                      gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0, channel_axis=2)
    assert abs(ours - reference) < 1e-4, (ours, reference)
    assert ours < 0.99  # the damage is visible to both


def test_ssim_of_an_image_smaller_than_the_window():
    """A 5x5 image: one window position, the 5x5 cut of the sigma-1.5 Gaussian; reference by hand in numpy."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 5, 5, generator=g), torch.rand(1, 3, 5, 5, generator=g)
    x = np.arange(5) - 2.0
    w = np.exp(-x**2 / 4.5)
    w = np.outer(w, w) / np.outer(w, w).sum()
    values = []
    for ch in range(3):
        p, q = a[0, ch].double().numpy(), b[0, ch].double().numpy()
        mp, mq = (w * p).sum(), (w * q).sum()
        vp, vq, cv = (w * p * p).sum() - mp**2, (w * q * q).sum() - mq**2, (w * p * q).sum() - mp * mq
        values.append((2 * mp * mq + 1e-4) * (2 * cv + 9e-4) / ((mp**2 + mq**2 + 1e-4) * (vp + vq + 9e-4)))
    assert abs(ssim(a, b) - np.mean(values)) < 1e-9
    assert ssim(torch.rand(1, 3, 1, 2, generator=g), torch.rand(1, 3, 1, 2, generator=g)) <= 1  # 1x2: a 1x1 window
