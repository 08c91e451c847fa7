"""Split-18: `num_outputs` instead of a `split` input; chunks of ceil(n / num_outputs), the last smaller."""
from __future__ import annotations

import math

import torch
from torch import nn

from converters.network.ops import register, result


class Split(nn.Module):
    def __init__(self, axis: int, parts: int):
        super().__init__()
        self.axis, self.parts = axis, parts

    def forward(self, x: torch.Tensor, split: torch.Tensor | None = None):
        if split is not None:
            return torch.split(x, [int(s) for s in split.tolist()], dim=self.axis)
        return torch.split(x, math.ceil(x.shape[self.axis] / self.parts), dim=self.axis)


@register("Split", 18)
def convert(node, graph):
    parts = node.attributes.get("num_outputs", len(node.output_values))
    return result(Split(node.attributes.get("axis", 0), parts), node)
