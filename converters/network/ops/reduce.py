"""Reduce* at opset 18 (axes moved from an attribute to an optional input) and ReduceMax/ReduceMin-20.

The axes must be a constant (they are once shapes are fixed); `noop_with_empty_axes=1` with no
axes is the identity, as ONNX defines it."""
from __future__ import annotations

from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.utils.common import get_const_value
from torch import nn

from converters.network.ops import register, result

OPS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
       "ReduceProd", "ReduceSumSquare")


def convert(node, graph):
    axes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            axes = [int(a) for a in get_const_value(node.input_values[1], graph).tolist()]
        except KeyError:
            raise NotImplementedError(f"{node.operation_type} with axes computed at run time") from None
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        return result(nn.Identity(), node, (node.input_values[0],))
    module = OnnxReduceStaticAxes(operation_type=node.operation_type, axes=axes or None,
                                  keepdims=node.attributes.get("keepdims", 1))
    return result(module, node, (node.input_values[0],))


for _op in OPS:
    register(_op, 18, *((20,) if _op in ("ReduceMax", "ReduceMin") else ()))(convert)
