"""Conv, ConvTranspose, MaxPool and AveragePool with `auto_pad` SAME_UPPER/SAME_LOWER (keras2onnx, older
tf2onnx and Caffe2 exporters), and the explicit asymmetric pads onnx2torch refuses (ConvTranspose, AveragePool).

The pads are computed from the input's size when the module runs, as onnxruntime does, so they hold
at any --size. Everything else (VALID, NOTSET with pads onnx2torch takes) goes to onnx2torch's own
converter unchanged.

- SAME (Conv, pools): output = ceil(in / stride); total = max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0);
  SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the start.
- SAME (ConvTranspose): output = in * stride; the full transposed convolution is cropped by total =
  stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - out (onnxruntime's split: SAME_UPPER crops
  the odd pixel at the end).
- MaxPool pads with -inf; AveragePool with count_include_pad=0 divides by the pooled count of real pixels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from onnx2torch.node_converters import registry
from torch import nn

from converters.network.ops import register, result

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def same_pads(auto_pad: str, sizes, kernel, strides, dilations) -> list[tuple[int, int]]:
    """(begin, end) per spatial axis for a SAME auto_pad at these input sizes."""
    pads = []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        pads.append((small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small))
    return pads


class AutoPadded(nn.Module):
    """One Conv/ConvTranspose/MaxPool/AveragePool node with its pads computed at run time."""

    def __init__(self, op_type: str, auto_pad: str, pads, kernel, strides, dilations, *,
                 weight=None, bias=None, group: int = 1, output_padding=None, count_include_pad: int = 0,
                 ceil_mode: int = 0):
        super().__init__()
        self.op_type, self.auto_pad = op_type, auto_pad
        self.rank = len(kernel)
        self.explicit = list(pads)  # ONNX order: begins then ends
        self.kernel, self.strides, self.dilations = list(kernel), list(strides), list(dilations)
        self.group, self.count_include_pad, self.ceil_mode = group, count_include_pad, ceil_mode
        self.output_padding = list(output_padding or [0] * self.rank)
        self.weight = nn.Parameter(weight, requires_grad=False) if weight is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None

    def _pads(self, sizes) -> list[tuple[int, int]]:
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            if self.op_type == "ConvTranspose":
                pads = []
                for n, k, s, d, op in zip(sizes, self.kernel, self.strides, self.dilations, self.output_padding):
                    total = s * (n - 1) + op + (k - 1) * d + 1 - n * s
                    small = max(total, 0) // 2
                    pads.append((small, max(total, 0) - small) if self.auto_pad == "SAME_UPPER"
                                else (max(total, 0) - small, small))
                return pads
            return same_pads(self.auto_pad, sizes, self.kernel, self.strides, self.dilations)
        return list(zip(self.explicit[:self.rank], self.explicit[self.rank:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self._pads(tuple(x.shape[2:]))
        flat = [p for begin, end in reversed(pads) for p in (begin, end)]  # F.pad: last axis first
        if self.op_type == "ConvTranspose":
            y = _CONV_T[self.rank](x, self.weight, self.bias, stride=self.strides, dilation=self.dilations,
                                   groups=self.group, output_padding=self.output_padding)
            crop = tuple(slice(None) for _ in range(2)) + tuple(
                slice(b, y.shape[2 + i] - e) for i, (b, e) in enumerate(pads))
            return y[crop]
        same = self.auto_pad in ("SAME_UPPER", "SAME_LOWER")  # exact windows: ceil_mode cannot matter
        if self.op_type == "Conv":
            return _CONV[self.rank](F.pad(x, flat), self.weight, self.bias, stride=self.strides,
                                    dilation=self.dilations, groups=self.group)
        if self.op_type == "MaxPool":
            return _MAX[self.rank](F.pad(x, flat, value=float("-inf")), self.kernel, self.strides,
                                   dilation=self.dilations, ceil_mode=bool(self.ceil_mode) and not same)
        pool = lambda t: _AVG[self.rank](t, self.kernel, self.strides, ceil_mode=bool(self.ceil_mode) and not same,
                                         count_include_pad=True)
        summed = pool(F.pad(x, flat))
        if self.count_include_pad:
            return summed
        ones = torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        return summed / pool(F.pad(ones, flat))


def _needs_us(node) -> bool:
    a = node.attributes
    if a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        return True
    pads = list(a.get("pads", []))
    half = len(pads) // 2
    return node.operation_type in ("ConvTranspose", "AveragePool") and pads[:half] != pads[half:]


def _wrap(op_type: str, original):
    def convert(node, graph):
        if not _needs_us(node) or len(node.output_values) > 1 or any(
                v not in graph.initializers for v in node.input_values[1:] if v):
            return original(node, graph)
        a = node.attributes
        if op_type == "ConvTranspose" and "output_shape" in a:
            raise NotImplementedError("ConvTranspose with output_shape and auto_pad is not implemented")
        if a.get("storage_order", 0) != 0:
            raise NotImplementedError("MaxPool with storage_order=1 is not implemented")
        weight = bias = None
        if op_type in ("Conv", "ConvTranspose"):
            weight = graph.initializers[node.input_values[1]].to_torch()
            if len(node.input_values) > 2 and node.input_values[2]:
                bias = graph.initializers[node.input_values[2]].to_torch()
            kernel = list(a.get("kernel_shape", weight.shape[2:]))
        else:
            kernel = list(a["kernel_shape"])
        rank = len(kernel)
        module = AutoPadded(op_type, a.get("auto_pad", "NOTSET"), a.get("pads", [0] * 2 * rank), kernel,
                            a.get("strides", [1] * rank), a.get("dilations", [1] * rank), weight=weight, bias=bias,
                            group=a.get("group", 1), output_padding=a.get("output_padding"),
                            count_include_pad=a.get("count_include_pad", 0), ceil_mode=a.get("ceil_mode", 0))
        if op_type == "AveragePool" and any(d != 1 for d in module.dilations):
            raise NotImplementedError("AveragePool with dilations is not implemented")
        return result(module, node, (node.input_values[0],))
    return convert


for _key, _converter in list(registry._CONVERTER_REGISTRY.items()):
    if _key.domain == "" and _key.operation_type in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
        register(_key.operation_type, _key.version)(_wrap(_key.operation_type, _converter))
