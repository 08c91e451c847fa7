"""Gelu (opset 20; ConvNeXt, Swin and ViT from torch.onnx at its default opset): exact or tanh."""
from __future__ import annotations

import torch
from torch import nn

from converters.network.ops import register, result


class Gelu(nn.Module):
    def __init__(self, approximate: str):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(x, approximate=self.approximate)


@register("Gelu", 20)
def convert(node, graph):
    approximate = node.attributes.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise NotImplementedError(f'Gelu approximate="{approximate}" is not defined by ONNX')
    return result(Gelu(approximate), node)
