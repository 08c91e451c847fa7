"""Layers that join blobs: Eltwise and Concat."""
from __future__ import annotations

import numpy as np

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder, axis_index
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


@converter("Eltwise")
def _eltwise(builder: Builder, layer: LayerParameter) -> None:
    p = layer.eltwise_param
    xs = [builder.bottom(layer, i) for i in range(len(layer.bottom))]
    if len(xs) < 2:
        raise ConversionError(f"Caffe layer {layer.name!r}: Eltwise needs at least two input blobs")
    dims = builder.dims(xs[0])
    if any(builder.dims(x) != dims for x in xs):
        raise ConversionError(f"Caffe layer {layer.name!r}: Eltwise inputs differ in shape "
                              f"({', '.join(str(builder.dims(x)) for x in xs)})")
    if p.operation == p.MAX:
        builder.add("Max", xs, layer, dims)
        return
    if p.operation == p.SUM:
        coeffs = list(p.coeff)
        if coeffs and len(coeffs) != len(xs):
            raise ConversionError(f"Caffe layer {layer.name!r}: Eltwise gives {len(coeffs)} coefficients "
                                  f"for {len(xs)} inputs")
        for i, coeff in enumerate(coeffs):
            if coeff != 1.0:
                xs[i] = builder.aux("Mul", [xs[i], builder.const(layer, f"coeff{i}", np.float32(coeff))],
                                    layer, f"coeff{i}_mul", dims)
        if len(xs) > 2:
            builder.add("Sum", xs, layer, dims)
            return
        op = "Add"
    else:
        op = "Mul"
    acc = xs[0]
    for i, x in enumerate(xs[1:], 1):
        if i == len(xs) - 1:
            builder.add(op, [acc, x], layer, dims)
        else:
            acc = builder.aux(op, [acc, x], layer, f"{op.lower()}{i}", dims)


@converter("Concat")
def _concat(builder: Builder, layer: LayerParameter) -> None:
    p = layer.concat_param
    xs = [builder.bottom(layer, i) for i in range(len(layer.bottom))]
    dims = [builder.dims(x) for x in xs]
    axis = axis_index(int(p.concat_dim) if p.HasField("concat_dim") else p.axis, len(dims[0]), layer)
    if any(len(d) != len(dims[0]) or d[:axis] + d[axis + 1:] != dims[0][:axis] + dims[0][axis + 1:] for d in dims):
        raise ConversionError(f"Caffe layer {layer.name!r}: Concat inputs {dims} differ off axis {axis}")
    shape = list(dims[0])
    shape[axis] = sum(d[axis] for d in dims)
    builder.add("Concat", xs, layer, tuple(shape), axis=axis)
