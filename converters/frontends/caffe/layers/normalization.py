"""BatchNorm (with a following Scale folded in), Scale, Bias, LRN and SSD's Normalize."""
from __future__ import annotations

import logging

import numpy as np

from converters.errors import ConversionError
from converters.frontends.caffe.builder import Builder, axis_index, image_input
from converters.frontends.caffe.proto import LayerParameter
from converters.frontends.caffe.registry import converter

log = logging.getLogger(__name__)


@converter("BatchNorm")
def _batch_norm(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    dims = builder.dims(x)
    c = dims[1]
    blobs = builder.blobs(layer, 2)
    factor = float(blobs[2].ravel()[0]) if len(blobs) > 2 and blobs[2].size else 1.0
    factor = 0.0 if factor == 0 else 1.0 / factor  # Caffe stores running sums and their weight
    mean = builder.fit(layer, blobs[0], (c,), "mean") * factor
    var = builder.fit(layer, blobs[1], (c,), "variance") * factor
    gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
    scale = builder.fused.get(layer.name)
    if scale is not None:
        sblobs = builder.blobs(scale, 2 if scale.scale_param.bias_term else 1)
        gamma = builder.fit(scale, sblobs[0], (c,), "scale")
        if scale.scale_param.bias_term:
            beta = builder.fit(scale, sblobs[1], (c,), "bias")
    if layer.batch_norm_param.HasField("use_global_stats") and not layer.batch_norm_param.use_global_stats:
        log.warning("BatchNorm %s asks for batch statistics; the stored statistics are used", layer.name)
    inputs = [x, builder.const(layer, "scale", gamma), builder.const(layer, "bias", beta),
              builder.const(layer, "mean", mean), builder.const(layer, "var", var)]
    builder.add("BatchNormalization", inputs, layer, dims, writer=scale,
                epsilon=float(layer.batch_norm_param.eps))


def _broadcast(builder: Builder, layer: LayerParameter, array: np.ndarray, dims, axis: int, num_axes: int,
               what: str) -> np.ndarray:
    """A Scale/Bias blob covering axes [axis, axis + num_axes) shaped to broadcast against dims."""
    axis = axis_index(axis, len(dims), layer)
    end = len(dims) if num_axes == -1 else axis + num_axes
    covered = tuple(dims[axis:end])
    array = builder.fit(layer, array, covered, what)
    return array.reshape(covered + (1,) * (len(dims) - end))


def _only_input(builder: Builder, layer: LayerParameter) -> str:
    """The layer's one bottom (Scale and Bias by a second blob instead of learned weights are not supported)."""
    if len(layer.bottom) > 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: {layer.type} with a second input blob is not supported")
    return builder.bottom(layer)


@converter("Scale")
def _scale(builder: Builder, layer: LayerParameter) -> None:
    p = layer.scale_param
    x = _only_input(builder, layer)
    dims = builder.dims(x)
    blobs = builder.blobs(layer, 2 if p.bias_term else 1)
    gamma = _broadcast(builder, layer, blobs[0], dims, p.axis, p.num_axes, "scale")
    if not p.bias_term:
        builder.add("Mul", [x, builder.const(layer, "scale", gamma)], layer, dims)
        return
    y = builder.aux("Mul", [x, builder.const(layer, "scale", gamma)], layer, "mul", dims)
    _add_bias(builder, layer, y, blobs[1], dims, p.axis, p.num_axes)


def _add_bias(builder: Builder, layer: LayerParameter, x: str, blob, dims, axis: int, num_axes: int) -> None:
    """The layer's output: x + the bias blob broadcast over `dims` (Scale's bias term, Bias)."""
    beta = _broadcast(builder, layer, blob, dims, axis, num_axes, "bias")
    builder.add("Add", [x, builder.const(layer, "bias", beta)], layer, dims)


@converter("Bias")
def _bias(builder: Builder, layer: LayerParameter) -> None:
    p = layer.bias_param
    x = _only_input(builder, layer)
    _add_bias(builder, layer, x, builder.blobs(layer, 1)[0], builder.dims(x), p.axis, p.num_axes)


@converter("LRN")
def _lrn(builder: Builder, layer: LayerParameter) -> None:
    p = layer.lrn_param
    x, dims = image_input(builder, layer)
    size = int(p.local_size)
    if size % 2 == 0:
        raise ConversionError(f"Caffe layer {layer.name!r}: LRN local_size must be odd, not {size}")
    if p.norm_region == p.ACROSS_CHANNELS:
        # Caffe and ONNX both scale by k + alpha / size * sum(x^2) over the channel window
        builder.add("LRN", [x], layer, dims, size=size, alpha=float(p.alpha), beta=float(p.beta), bias=float(p.k))
        return
    # WITHIN_CHANNEL: x * (1 + alpha * mean of x^2 over a size x size window, zeros padded)^-beta
    sq = builder.aux("Mul", [x, x], layer, "square", dims)
    half = (size - 1) // 2
    avg = builder.aux("AveragePool", [sq], layer, "window_mean", dims, kernel_shape=[size, size],
                      strides=[1, 1], pads=[half] * 4, count_include_pad=1)
    scaled = builder.aux("Mul", [avg, builder.const(layer, "alpha", np.float32(p.alpha))], layer, "alpha_mul", dims)
    shifted = builder.aux("Add", [scaled, builder.const(layer, "one", np.float32(1.0))], layer, "shift", dims)
    power = builder.aux("Pow", [shifted, builder.const(layer, "neg_beta", np.float32(-p.beta))], layer, "pow", dims)
    builder.add("Mul", [x, power], layer, dims)


@converter("Normalize")
def _normalize(builder: Builder, layer: LayerParameter) -> None:
    """SSD's L2 normalisation (conv4_3_norm): x / sqrt(sum x^2 + eps) * scale, the sum over channels at each
    pixel (across_spatial: false) or over the whole sample; scale one value (channel_shared) or one per channel."""
    x, dims = image_input(builder, layer)
    p = layer.norm_param
    axes = [1] if not p.across_spatial else [1, 2, 3]
    sq = builder.aux("Mul", [x, x], layer, "square", dims)
    total = builder.aux("ReduceSum", [sq, builder.const(layer, "axes", axes, np.int64)], layer, "sum",
                        (1, 1) + (dims[2:] if not p.across_spatial else (1, 1)), keepdims=1)
    norm = builder.aux("Sqrt", [builder.aux("Add", [total, builder.const(layer, "eps", float(p.eps))], layer, "eps",
                                            builder.dims(total))], layer, "norm", builder.dims(total))
    unit = builder.aux("Div", [x, norm], layer, "unit", dims)
    (scale,) = builder.blobs(layer, 1)[:1]
    shape = (1,) if p.channel_shared else (1, dims[1], 1, 1)
    scale = builder.fit(layer, scale, shape, "scale")
    builder.add("Mul", [unit, builder.const(layer, "scale", scale)], layer, dims)
