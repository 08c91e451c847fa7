"""Convolution and Deconvolution."""
from __future__ import annotations

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder, image_input, pair
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter


def _conv_geometry(layer: LayerParameter, channels: int):
    """The layer's parameters, kernel, stride, pad, dilation and group, each checked."""
    p = layer.convolution_param
    if p.axis != 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: convolution over axis {p.axis} is not supported")
    kernel = pair(p.kernel_size, "kernel_h", "kernel_w", p, None, layer, "kernel size")
    stride = pair(p.stride, "stride_h", "stride_w", p, 1, layer, "stride")
    pad = pair(p.pad, "pad_h", "pad_w", p, 0, layer, "pad")
    dilation = pair(p.dilation, None, None, p, 1, layer, "dilation")
    group = int(p.group)
    if group < 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: group {group} is invalid; it must be >= 1")
    if channels % group or p.num_output % group:
        raise ConversionError(f"Caffe layer {layer.name!r}: {channels} input and {p.num_output} output channels "
                              f"do not split into {group} groups")
    return p, kernel, stride, pad, dilation, group


@converter("Convolution")
def _convolution(builder: Builder, layer: LayerParameter) -> None:
    x, (n, c, h, w) = image_input(builder, layer)
    p, kernel, stride, pad, dilation, group = _conv_geometry(layer, c)
    blobs = builder.blobs(layer, 2 if p.bias_term else 1)
    weight = builder.fit(layer, blobs[0], (p.num_output, c // group, *kernel), "weight")
    inputs = [x, builder.const(layer, "weight", weight)]
    if p.bias_term:
        inputs.append(builder.const(layer, "bias", builder.fit(layer, blobs[1], (p.num_output,), "bias")))
    out = [(size + 2 * pd - (d * (k - 1) + 1)) // s + 1
           for size, k, s, pd, d in zip((h, w), kernel, stride, pad, dilation)]
    if min(out) <= 0:
        raise ConversionError(f"Caffe layer {layer.name!r}: the input {h}x{w} is too small for this convolution")
    builder.add("Conv", inputs, layer, (n, p.num_output, *out), kernel_shape=list(kernel),
                strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(dilation), group=group)


@converter("Deconvolution")
def _deconvolution(builder: Builder, layer: LayerParameter) -> None:
    x, (n, c, h, w) = image_input(builder, layer)
    p, kernel, stride, pad, dilation, group = _conv_geometry(layer, c)
    blobs = builder.blobs(layer, 2 if p.bias_term else 1)
    weight = builder.fit(layer, blobs[0], (c, p.num_output // group, *kernel), "weight")  # (C_in, C_out/g, kh, kw)
    inputs = [x, builder.const(layer, "weight", weight)]
    if p.bias_term:
        inputs.append(builder.const(layer, "bias", builder.fit(layer, blobs[1], (p.num_output,), "bias")))
    out = [s * (size - 1) + d * (k - 1) + 1 - 2 * pd
           for size, k, s, pd, d in zip((h, w), kernel, stride, pad, dilation)]
    builder.add("ConvTranspose", inputs, layer, (n, p.num_output, *out), kernel_shape=list(kernel),
                strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(dilation), group=group)
