"""Layers that move values without computing: Dropout, Split, Flatten, Reshape, SSD's Permute."""
from __future__ import annotations

import numpy as np

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder, axis_index
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


@converter("Dropout")
def _dropout(builder: Builder, layer: LayerParameter) -> None:
    builder.alias(layer, 0, builder.bottom(layer))  # the identity at test time (Caffe scales in training)


@converter("Split")
def _split(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    for i in range(len(layer.top)):
        builder.alias(layer, i, x)


@converter("Flatten")
def _flatten(builder: Builder, layer: LayerParameter) -> None:
    p = layer.flatten_param
    x = builder.bottom(layer)
    dims = builder.dims(x)
    axis, end = axis_index(p.axis, len(dims), layer), axis_index(p.end_axis, len(dims), layer)
    shape = dims[:axis] + (int(np.prod(dims[axis:end + 1])),) + dims[end + 1:]
    if axis == 1 and end == len(dims) - 1:
        builder.add("Flatten", [x], layer, shape, axis=1)
        return
    target = [0] * axis + [-1] + list(dims[end + 1:])  # 0 copies the (dynamic) batch and leading axes
    builder.add("Reshape", [x, builder.const(layer, "shape", target, np.int64)], layer, shape)


@converter("Permute")
def _permute(builder: Builder, layer: LayerParameter) -> None:
    """SSD's Permute: the axes in `order`, the ones it leaves out following in their order."""
    x = builder.bottom(layer)
    dims = builder.dims(x)
    order = [axis_index(int(a), len(dims), layer) for a in layer.permute_param.order]
    order += [a for a in range(len(dims)) if a not in order]
    if sorted(order) != list(range(len(dims))):
        raise ConversionError(f"Caffe layer {layer.name!r}: permute order {list(layer.permute_param.order)} "
                              f"repeats an axis")
    builder.add("Transpose", [x], layer, tuple(dims[a] for a in order), perm=order)


@converter("Reshape")
def _reshape(builder: Builder, layer: LayerParameter) -> None:
    p = layer.reshape_param
    x = builder.bottom(layer)
    dims = builder.dims(x)
    axis = p.axis if p.axis >= 0 else len(dims) + 1 + p.axis  # Caffe: -1 starts after the last axis
    end = len(dims) if p.num_axes == -1 else axis + p.num_axes
    if not 0 <= axis <= end <= len(dims):
        raise ConversionError(f"Caffe layer {layer.name!r}: reshape axes [{p.axis}, +{p.num_axes}) do not fit {dims}")
    middle = list(p.shape.dim)
    target = [0] * axis + [int(d) for d in middle] + list(dims[end:])
    if axis == 0 and middle and middle[0] == builder.batch:
        target[0] = 0  # the prototxt's batch size: keep the batch dynamic
    shape = [dims[i] if t == 0 else t for i, t in enumerate(target)]
    if shape.count(-1) > 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: reshape infers more than one axis (-1)")
    total = int(np.prod(dims))
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1]))
        if known == 0 or total % known:
            raise ConversionError(f"Caffe layer {layer.name!r}: cannot reshape {dims} to {target}")
        shape[shape.index(-1)] = total // known
    if int(np.prod(shape)) != total:
        raise ConversionError(f"Caffe layer {layer.name!r}: cannot reshape {dims} ({total} values) to {shape}")
    builder.add("Reshape", [x, builder.const(layer, "shape", target, np.int64)], layer, tuple(shape))
