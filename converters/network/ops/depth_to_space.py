"""DepthToSpace in DCR mode (tf2onnx's, e.g. MediaPipe's full-range face detector); onnx2torch takes CRD only."""
from __future__ import annotations

import torch
from onnx2torch.node_converters import registry
from torch import nn

from converters.network.ops import register, result


class DepthToSpaceDCR(nn.Module):
    def __init__(self, block: int):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        b = self.block
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
        return y.reshape(n, c // (b * b), h * b, w * b)


def _wrap(original):
    def convert(node, graph):
        if node.attributes.get("mode", "DCR") != "DCR":
            return original(node, graph)
        return result(DepthToSpaceDCR(int(node.attributes["blocksize"])), node)
    return convert


for _key, _converter in list(registry._CONVERTER_REGISTRY.items()):
    if _key.domain == "" and _key.operation_type == "DepthToSpace":
        register("DepthToSpace", _key.version)(_wrap(_converter))
