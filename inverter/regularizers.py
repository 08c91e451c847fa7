"""Image priors of Mahendran & Vedaldi (2015): the alpha-norm and total variation TV_beta.

Both return one value per batch element (sums over channels and pixels), and both are
`Objective`s, so they compose with feature terms: `feature_match(...) + 1e-5 * tv()`.
"""
from __future__ import annotations

import torch

from inverter.objectives import Objective


def alpha_norm_value(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """||x||_alpha^alpha = sum |x|^alpha, per batch element."""
    if alpha == 6:  # the usual choice: two multiplies are twice as fast as pow (scripts/bench.py)
        x2 = x * x
        return (x2 * x2 * x2).flatten(1).sum(1)
    return x.abs().pow(alpha).flatten(1).sum(1)


def tv_value(x: torch.Tensor, beta: float) -> torch.Tensor:
    """TV_beta = sum over pixels of ((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta/2).

    Differences past the last row/column are 0 (replicated border), so every pixel, the
    bottom-right one included, is tied to its neighbours."""
    dx = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    dy = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    squared = dx * dx + dy * dy
    if beta == 2:
        return squared.flatten(1).sum(1)
    return (squared + 1e-8).pow(beta / 2).flatten(1).sum(1)  # eps: finite gradient at 0 for beta < 2


def alpha_norm(alpha: float = 6.0) -> Objective:
    return Objective.term(f"alpha_norm", lambda image, feats: alpha_norm_value(image, alpha))


def tv(beta: float = 2.0) -> Objective:
    return Objective.term("tv", lambda image, feats: tv_value(image, beta))
