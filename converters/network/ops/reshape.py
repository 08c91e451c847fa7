"""Reshape (versions 5 to 21) with `allowzero` as ONNX defines it.

A 0 in the shape copies the input's dimension; with allowzero=1 it is a literal 0. With no 0 in
the shape the two are the same ordinary reshape, which is what torch.onnx's default (dynamo)
exporter writes for every flatten. onnx2torch 1.5 refuses allowzero=1 outright."""
from __future__ import annotations

import torch
from torch import nn

from converters.network.ops import register, result


class Reshape(nn.Module):
    def __init__(self, allowzero: bool):
        super().__init__()
        self.allowzero = allowzero

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(d) for d in shape.tolist()]
        if not self.allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return torch.reshape(x, dims)


@register("Reshape", 5, 13, 14, 19, 21)
def convert(node, graph):
    return result(Reshape(bool(node.attributes.get("allowzero", 0))), node)
