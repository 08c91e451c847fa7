"""Element-wise activations, Power and Softmax."""
from __future__ import annotations

import numpy as np

from converters.frontends.caffe.builder import Builder, axis_index
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


@converter("ReLU")
def _relu(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    slope = float(layer.relu_param.negative_slope)
    if slope:
        builder.add("LeakyRelu", [x], layer, builder.dims(x), alpha=slope)
    else:
        builder.add("Relu", [x], layer, builder.dims(x))


@converter("PReLU")
def _prelu(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    dims = builder.dims(x)
    slope = builder.blobs(layer, 1)[0]
    if layer.prelu_param.channel_shared:
        slope = builder.fit(layer, slope, (1,), "slope")
    else:
        slope = builder.fit(layer, slope, (dims[1],), "slope").reshape((dims[1],) + (1,) * (len(dims) - 2))
    builder.add("PRelu", [x, builder.const(layer, "slope", slope)], layer, dims)


@converter("ELU")
def _elu(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    builder.add("Elu", [x], layer, builder.dims(x), alpha=float(layer.elu_param.alpha))


@converter("Power")
def _power(builder: Builder, layer: LayerParameter) -> None:
    """(shift + scale * x) ^ power, as the nodes that are not the identity."""
    p = layer.power_param
    x = builder.bottom(layer)
    dims = builder.dims(x)
    steps = [(op, value) for op, value, neutral in
             (("Mul", p.scale, 1.0), ("Add", p.shift, 0.0), ("Pow", p.power, 1.0)) if value != neutral]
    if not steps:
        builder.alias(layer, 0, x)
        return
    for k, (op, value) in enumerate(steps):
        operand = builder.const(layer, op.lower(), np.float32(value))
        if k == len(steps) - 1:
            builder.add(op, [x, operand], layer, dims)
        else:
            x = builder.aux(op, [x, operand], layer, op.lower(), dims)


@converter("Softmax")
def _softmax(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    dims = builder.dims(x)
    builder.add("Softmax", [x], layer, dims, axis=axis_index(layer.softmax_param.axis, len(dims), layer))


UNARY_OPS = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs", "BNLL": "Softplus"}  # BNLL: log(1 + exp(x))


@converter(*UNARY_OPS)
def _unary(builder: Builder, layer: LayerParameter) -> None:
    """Parameterless element-wise layers: one ONNX op each."""
    x = builder.bottom(layer)
    builder.add(UNARY_OPS[layer.type], [x], layer, builder.dims(x))
