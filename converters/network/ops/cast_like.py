"""CastLike (versions 15, 19, 21): the input cast to the element type of a second tensor (torch.onnx's
default exporter without its optimiser writes one before each constant it combines with an input)."""
from __future__ import annotations

import torch
from torch import nn

from converters.network.ops import register, result


class CastLike(nn.Module):
    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype)


@register("CastLike", 15, 19, 21)
def convert(node, graph):
    return result(CastLike(), node)
