"""Pooling, with Caffe's rounding of the output size."""
from __future__ import annotations

import math

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder, image_input, pair
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


def _pooled(size: int, k: int, s: int, pad: int, ceil: bool) -> tuple[int, int]:
    """(Caffe's output size, floor-rounded output size) along one axis."""
    floor_out = (size + 2 * pad - k) // s + 1
    if not ceil:
        return floor_out, floor_out
    out = int(math.ceil((size + 2 * pad - k) / s)) + 1
    if pad and (out - 1) * s >= size + pad:  # the last window would start in the padding: drop it
        out -= 1
    return out, floor_out


@converter("Pooling")
def _pooling(builder: Builder, layer: LayerParameter) -> None:
    p = layer.pooling_param
    x, (n, c, h, w) = image_input(builder, layer)
    if p.pool == p.STOCHASTIC:
        raise ConversionError(f"Caffe layer {layer.name!r}: STOCHASTIC pooling has no ONNX equivalent")
    if p.global_pooling:
        if p.pool == p.AVE:
            builder.add("GlobalAveragePool", [x], layer, (n, c, 1, 1))
        else:  # onnx2torch has no GlobalMaxPool; the size is fixed here, so a full-size window
            builder.add("MaxPool", [x], layer, (n, c, 1, 1), kernel_shape=[h, w], strides=[1, 1])
        return
    kernel = pair([p.kernel_size] if p.HasField("kernel_size") else [], "kernel_h", "kernel_w", p, None,
                   layer, "kernel size")
    stride = pair([p.stride], "stride_h", "stride_w", p, 1, layer, "stride")
    pad = pair([p.pad], "pad_h", "pad_w", p, 0, layer, "pad")
    ceil = p.round_mode == p.CEIL
    sizes = [_pooled(size, k, s, pd, ceil) for size, k, s, pd in zip((h, w), kernel, stride, pad)]
    out = [caffe for caffe, _ in sizes]
    # ceil_mode=1 exactly when rounding up adds a window; that window then starts inside the
    # padded image, where ONNX, onnxruntime and torch all agree with Caffe.
    ceil_mode = int(any(caffe != floor for caffe, floor in sizes))
    if min(out) <= 0:
        raise ConversionError(f"Caffe layer {layer.name!r}: the input {h}x{w} is too small for this pooling")
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]],
                 ceil_mode=ceil_mode)
    if p.pool == p.MAX:
        builder.add("MaxPool", [x], layer, (n, c, *out), **attrs)
    else:  # Caffe averages over the window clipped to the padded image, padding counted
        builder.add("AveragePool", [x], layer, (n, c, *out), count_include_pad=1, **attrs)
