"""Robustness transforms applied to the image before each forward pass (never to the priors).

Each takes the batch and one torch.Generator per element, so element b's random draws
depend only on its own seed: a batch equals the same runs made one by one.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def jitter(amount: int):
    """Roll each image by up to `amount` pixels in x and y (wrapping)."""

    def apply(x: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        if amount <= 0:
            return x
        out = []
        for b, g in enumerate(gens):
            dx, dy = torch.randint(-amount, amount + 1, (2,), generator=g).tolist()
            out.append(torch.roll(x[b : b + 1], shifts=(dy, dx), dims=(2, 3)))
        return torch.cat(out)

    return apply


def scale_rotate(scales: tuple[float, ...] = (1.0,), degrees: float = 0.0):
    """Zoom by a scale drawn from `scales` and rotate by up to +-degrees, about the centre."""

    def apply(x: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        thetas = []
        for g in gens:
            s = scales[int(torch.randint(len(scales), (1,), generator=g))]
            a = math.radians(float(torch.empty(1).uniform_(-degrees, degrees, generator=g))) if degrees else 0.0
            c, n = math.cos(a) / s, math.sin(a) / s
            thetas.append(torch.tensor([[c, -n, 0.0], [n, c, 0.0]]))
        theta = torch.stack(thetas).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    return apply


def compose(*steps):
    steps = [s for s in steps if s is not None]

    def apply(x: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        for step in steps:
            x = step(x, gens)
        return x

    return apply
