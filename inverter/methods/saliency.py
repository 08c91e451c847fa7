"""Saliency maps (Simonyan et al. 2014): |d score / d pixel|, max over colour channels."""
from __future__ import annotations

import torch

from converters.network.network import Network
from converters.input_spec import standardise


def saliency(network: Network, rgb01: torch.Tensor, index: int | None = None,
             node: str | None = None) -> tuple[torch.Tensor, int]:
    """Gradient of one score with respect to the pixels in [0, 1] (RGB), whatever the network's
    own preprocessing; returns (B, H, W) maps and the class used (default: the top-1)."""
    node = node or network.output_names[0]
    x = rgb01.detach().clone().to(network.dtype).requires_grad_(True)
    (scores,) = network.features(standardise(x), [node])
    scores = scores.flatten(1)
    index = int(scores[0].argmax()) if index is None else index
    scores[:, index].sum().backward()
    return x.grad.abs().amax(dim=1), index
