"""Saliency maps (Simonyan et al. 2014): |d score / d pixel|, max over colour channels."""
from __future__ import annotations

import torch

from converters.network.network import Network
from converters.input_spec import standardise
from inverter.config import ConfigError


def saliency(network: Network, rgb01: torch.Tensor, index: int | None = None,
             node: str | None = None) -> tuple[torch.Tensor, int]:
    """Gradient of one score with respect to the pixels in [0, 1] (RGB), whatever the network's
    own preprocessing; returns (B, H, W) maps and the class used (default: the top-1)."""
    node = node or network.output_names[0]
    x = rgb01.detach().clone().to(network.device, network.dtype).requires_grad_(True)
    (scores,) = network.from_standardised(standardise(x), [node])
    scores = scores.flatten(1)
    index = int(scores[0].argmax()) if index is None else index
    check_class(index, scores.shape[1], node)
    scores[:, index].sum().backward()
    return x.grad.abs().amax(dim=1).cpu(), index


def check_class(index: int, count: int, node: str) -> None:
    """Refuse a class (score) index the node does not have: one clear line, not an IndexError."""
    if not 0 <= index < count:
        raise ConfigError(f"class {index} is out of range: node {node!r} has {count} scores, so use 0..{count - 1}")
