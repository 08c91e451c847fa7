"""Caffe (deploy prototxt + caffemodel) -> ONNX, opset 17, without Caffe or a pip converter.

One small converter function per Caffe layer type, registered with `@converter("Type")`
(the shape of onnx2torch's registry): supporting a new layer is one new function. Each
function reads its bottoms from the `Builder`, adds ONNX node(s) and writes its tops.

Caffe facts this file honours:

- In-place layers (top == bottom) get distinct ONNX tensors. Every node keeps its Caffe
  layer name; a blob's *last* value carries the blob's own name (what `net.blobs["conv3_1"]`
  holds after a forward pass: after BatchNorm, Scale and ReLU), earlier values are named
  `{blob}/{layer}_out` (`conv3_1/conv3_1_out`, `conv3_1/bn3_1_out`).
- BatchNorm's third blob is a scale factor (mean and variance are divided by it); a Scale
  that directly and only follows a BatchNorm is folded into one BatchNormalization node named
  after the BatchNorm layer, so conv -> bn -> relu chains stay visible to the name walk.
- Pooling rounds the output size up, but drops a last window that would start in the
  padding: ceil_mode=1 exactly when that gives a larger output than floor rounding.
- A caffemodel may hold more layers than the prototxt: blobs are matched by layer name.

`invert_onnx.caffe_layer_outputs` in the ONNX metadata maps each Caffe layer to the ONNX
tensor(s) holding its output, and `invert_onnx.input_spec` records the preprocessing.
"""
from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.frontends.caffe.proto import LayerParameter, NetParameter, blob_array, read_caffemodel, read_prototxt
from converters.frontends.atomic_output import save_onnx
from converters.frontends.cleanup import set_input_spec
from converters.errors import ConversionError, first_line
from converters.input_spec import InputSpec
from converters.network.onnx_io import OPSET

log = logging.getLogger(__name__)

MIN_OPSET = 13  # Softmax over one axis (Caffe's semantics) from opset 13 on
LAYER_OUTPUTS_KEY = "invert_onnx.caffe_layer_outputs"
CAFFE_SPEC = InputSpec(channel_order="BGR", scale=255.0, mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
                       source="Caffe default (BGR, [0, 255], ImageNet mean subtracted)")
# Layers that only matter for training: a train_val prototxt converts without them.
TRAINING_ONLY = {"SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
                 "InfogainLoss", "MultinomialLogisticLoss", "ContrastiveLoss", "Silence"}

Converter = Callable[["Builder", LayerParameter], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*layer_types: str) -> Callable[[Converter], Converter]:
    """Register the function that converts these Caffe layer types."""
    def register(fn: Converter) -> Converter:
        for layer_type in layer_types:
            if layer_type in CONVERTERS:
                raise ValueError(f"Caffe layer type {layer_type} already has a converter")
            CONVERTERS[layer_type] = fn
        return fn
    return register


# ----------------------------------------------------------------------------- the builder
class Builder:
    """The ONNX graph under construction and the Caffe blob -> ONNX tensor bookkeeping."""

    def __init__(self, weights: dict[str, LayerParameter], size: tuple[int, int] | None):
        self.weights = weights
        self.size = size  # (H, W) that replaces the prototxt's image size, if given
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.tensor: dict[str, str] = {}  # Caffe blob -> ONNX tensor holding its current value
        self.shapes: dict[str, tuple[int, ...]] = {}  # ONNX tensor -> shape (batch 1)
        self.versions: dict[str, list[str]] = defaultdict(list)  # blob -> tensors written to it
        self.layer_outputs: dict[str, list[str]] = {}
        self.node_names: set[str] = set()
        self.tensor_names: set[str] = set()
        self.fused: dict[str, LayerParameter] = {}  # BatchNorm layer -> the Scale folded into it
        self.skip: set[str] = set()
        self.batch = 1  # the prototxt's batch size (a Reshape copying it keeps the batch dynamic)

    # -- names
    def _unique(self, name: str, taken: set[str]) -> str:
        base, k = name, 1
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    # -- reading
    def bottom(self, layer: LayerParameter, i: int = 0) -> str:
        if i >= len(layer.bottom):
            raise ConversionError(f"Caffe layer {layer.name!r} ({layer.type}) needs {i + 1} input blob(s), "
                                  f"the prototxt gives {len(layer.bottom)}")
        blob = layer.bottom[i]
        if blob not in self.tensor:
            raise ConversionError(f"Caffe layer {layer.name!r} reads blob {blob!r}, which no earlier "
                                  "layer or net input produces")
        return self.tensor[blob]

    def dims(self, tensor: str) -> tuple[int, ...]:
        return self.shapes[tensor]

    def blobs(self, layer: LayerParameter, count: int) -> list[np.ndarray]:
        """The learned blobs of a layer: from the caffemodel by layer name, else from the prototxt."""
        source = self.weights.get(layer.name)
        blobs = list(source.blobs) if source is not None and len(source.blobs) else list(layer.blobs)
        if len(blobs) < count:
            where = "has no weights" if not blobs else f"has {len(blobs)} weight blob(s), needs {count}"
            raise ConversionError(f"Caffe layer {layer.name!r} ({layer.type}) {where} in the caffemodel: "
                                  "do the prototxt and the caffemodel belong together?")
        return [blob_array(b) for b in blobs]

    def fit(self, layer: LayerParameter, array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        """A weight blob reshaped to what the layer needs (old blobs carry 4D shapes)."""
        if array.size != int(np.prod(shape)):
            raise ConversionError(f"Caffe layer {layer.name!r}: the {what} blob has shape {tuple(array.shape)} "
                                  f"({array.size} values) but the layer needs {shape}; the caffemodel does not "
                                  "fit this prototxt (or this input size)")
        return array.reshape(shape)

    # -- writing
    def const(self, layer: LayerParameter, suffix: str, array, dtype=np.float32) -> str:
        name = self._unique(f"{layer.name}/{suffix}", self.tensor_names)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def aux(self, op: str, inputs: list[str], layer: LayerParameter, suffix: str, shape: tuple[int, ...],
            **attrs) -> str:
        """A helper node `{layer}/{suffix}` inside one Caffe layer; returns its output tensor."""
        name = self._unique(f"{layer.name}/{suffix}", self.node_names)
        out = self._unique(name, self.tensor_names)
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        self.shapes[out] = tuple(shape)
        return out

    def add(self, op: str, inputs: list[str], layer: LayerParameter, shape: tuple[int, ...], *,
            top: int = 0, writer: LayerParameter | None = None, **attrs) -> str:
        """The node named after `layer` that writes top blob `top` of `writer` (default: the layer)."""
        name = self._unique(layer.name, self.node_names)
        out = self.write_top(writer or layer, top, layer.name, shape)
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def write_top(self, layer: LayerParameter, i: int, producer: str, shape: tuple[int, ...]) -> str:
        if i >= len(layer.top):
            raise ConversionError(f"Caffe layer {layer.name!r} ({layer.type}) has no top blob #{i + 1}")
        blob = layer.top[i]
        tensor = self._unique(f"{blob}/{producer}_out", self.tensor_names)
        self.tensor[blob] = tensor
        self.versions[blob].append(tensor)
        self.shapes[tensor] = tuple(int(d) for d in shape)
        self.layer_outputs.setdefault(layer.name, []).append(tensor)
        return tensor

    def alias(self, layer: LayerParameter, i: int, tensor: str) -> None:
        """Top blob `i` holds the same values as `tensor` (Dropout, Split): no node."""
        self.tensor[layer.top[i]] = tensor
        self.layer_outputs.setdefault(layer.name, []).append(tensor)

    def graph_input(self, layer: LayerParameter | None, blob: str, shape: list[int]) -> None:
        if blob in self.tensor:
            raise ConversionError(f"the net input {blob!r} is defined twice")
        shape = [int(d) for d in shape]
        if any(d <= 0 for d in shape):
            raise ConversionError(f"the net input {blob!r} has shape {shape}: give positive dimensions")
        if len(shape) == 4 and self.size:
            shape[2:] = self.size
        self.batch = shape[0]
        self.tensor_names.add(blob)
        self.tensor[blob] = blob
        self.versions[blob].append(blob)
        self.shapes[blob] = (1, *shape[1:])
        if layer is not None:
            self.layer_outputs.setdefault(layer.name, []).append(blob)
        self.inputs.append(helper.make_tensor_value_info(blob, TensorProto.FLOAT, ["batch", *shape[1:]]))

    # -- the model
    def model(self, name: str, opset: int) -> onnx.ModelProto:
        if not self.inputs:
            raise ConversionError("the prototxt defines no net input (an Input layer, or input: / input_shape)")
        # A blob's last value carries the blob's name; earlier values keep `{blob}/{layer}_out`.
        rename = {}
        for blob, tensors in self.versions.items():
            last = tensors[-1]
            if last != blob and blob not in self.tensor_names:
                rename[last] = blob
                self.tensor_names.add(blob)
        for node in self.nodes:
            node.input[:] = [rename.get(t, t) for t in node.input]
            node.output[:] = [rename.get(t, t) for t in node.output]
        shapes = {rename.get(t, t): s for t, s in self.shapes.items()}
        self.layer_outputs = {k: [rename.get(t, t) for t in v] for k, v in self.layer_outputs.items()}
        consumed = {t for node in self.nodes for t in node.input}
        produced = [t for node in self.nodes for t in node.output]
        inputs = {i.name for i in self.inputs}
        finals = dict.fromkeys(rename.get(t, t) for t in self.tensor.values())
        outputs = [t for t in finals if t not in consumed and t not in inputs and t in produced]
        if not outputs:
            raise ConversionError("the converted net has no output (every layer was skipped?)")
        graph = helper.make_graph(
            self.nodes, name or "caffe", self.inputs,
            [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["batch", *shapes[t][1:]]) for t in outputs],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="invert-onnx (caffe)")
        model.ir_version = 8  # what opset 17 runtimes read
        return model


# ----------------------------------------------------------------------------- helpers
def _axis(axis: int, rank: int, layer: LayerParameter) -> int:
    if not -rank <= axis < rank:
        raise ConversionError(f"Caffe layer {layer.name!r}: axis {axis} is outside a {rank}-d blob")
    return axis % rank


def _pair_values(values, h_field, w_field, param, default) -> tuple[int, int] | None:
    if h_field and (param.HasField(h_field) or param.HasField(w_field)):
        return int(getattr(param, h_field)), int(getattr(param, w_field))
    values = [int(v) for v in values]
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    if not values and default is not None:
        return default, default
    return None


def _pair(values, h_field: str | None, w_field: str | None, param, default: int | None, layer,
          what: str) -> tuple[int, int]:
    """Caffe's kernel/stride/pad/dilation: `x_h`/`x_w`, or one value for both, or one per axis."""
    pair = _pair_values(values, h_field, w_field, param, default)
    if pair is not None:
        least = 0 if what == "pad" else 1  # a stride, kernel or dilation of 0 divides by zero later
        if min(pair) < least:
            raise ConversionError(f"Caffe layer {layer.name!r}: {what} {pair[0]}x{pair[1]} is invalid; "
                                  f"it must be >= {least}")
        return pair
    raise ConversionError(f"Caffe layer {layer.name!r}: give the {what} as one value or two"
                          + (f" or {h_field}/{w_field}" if h_field else "") + " (2D layers only)")


def _image(builder: Builder, layer: LayerParameter) -> tuple[str, tuple[int, ...]]:
    x = builder.bottom(layer)
    dims = builder.dims(x)
    if len(dims) != 4:
        raise ConversionError(f"Caffe layer {layer.name!r} ({layer.type}) needs a 4-d (N, C, H, W) input, "
                              f"got shape {dims}; only 2D layers are supported")
    return x, dims


# ----------------------------------------------------------------------------- inputs
@converter("Input")
def _input(builder: Builder, layer: LayerParameter) -> None:
    shapes = list(layer.input_param.shape)
    if not shapes:
        raise ConversionError(f"Input layer {layer.name!r} gives no shape (input_param {{ shape {{ dim: ... }} }})")
    for i, top in enumerate(layer.top):
        builder.graph_input(layer, top, list(shapes[min(i, len(shapes) - 1)].dim))


@converter("Data", "ImageData", "MemoryData", "DummyData")
def _data(builder: Builder, layer: LayerParameter) -> None:
    """Training-style data layers: the image top becomes the net input (labels are dropped)."""
    if layer.type == "MemoryData":
        p = layer.memory_data_param
        shape = [p.batch_size or 1, p.channels or 3, p.height, p.width]
    elif layer.type == "DummyData":
        p = layer.dummy_data_param
        shape = list(p.shape[0].dim) if p.shape else [p.num[0], p.channels[0], p.height[0], p.width[0]]
    else:
        crop = layer.transform_param.crop_size
        side = crop or (layer.image_data_param.crop_size if layer.type == "ImageData" else layer.data_param.crop_size)
        shape = [1, 3, side, side]
    if len(shape) == 4 and not all(shape[2:]) and builder.size:
        shape[2:] = builder.size
    if any(not d for d in shape):
        raise ConversionError(f"{layer.type} layer {layer.name!r} does not fix the image size: "
                              "give one (--size H[,W]) or use an Input layer in a deploy prototxt")
    builder.graph_input(layer, layer.top[0], shape)


# ----------------------------------------------------------------------------- convolutions
def _conv_geometry(layer: LayerParameter):
    p = layer.convolution_param
    if p.axis != 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: convolution over axis {p.axis} is not supported")
    kernel = _pair(p.kernel_size, "kernel_h", "kernel_w", p, None, layer, "kernel size")
    stride = _pair(p.stride, "stride_h", "stride_w", p, 1, layer, "stride")
    pad = _pair(p.pad, "pad_h", "pad_w", p, 0, layer, "pad")
    dilation = _pair(p.dilation, None, None, p, 1, layer, "dilation")
    return p, kernel, stride, pad, dilation


@converter("Convolution")
def _convolution(builder: Builder, layer: LayerParameter) -> None:
    x, (n, c, h, w) = _image(builder, layer)
    p, kernel, stride, pad, dilation = _conv_geometry(layer)
    group = int(p.group)
    if group < 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: group {group} is invalid; it must be >= 1")
    if c % group or p.num_output % group:
        raise ConversionError(f"Caffe layer {layer.name!r}: {c} input and {p.num_output} output channels "
                              f"do not split into {group} groups")
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
    x, (n, c, h, w) = _image(builder, layer)
    p, kernel, stride, pad, dilation = _conv_geometry(layer)
    group = int(p.group)
    if group < 1 or c % group or p.num_output % group:
        raise ConversionError(f"Caffe layer {layer.name!r}: group {group} is invalid for {c} input and "
                              f"{p.num_output} output channels")
    blobs = builder.blobs(layer, 2 if p.bias_term else 1)
    weight = builder.fit(layer, blobs[0], (c, p.num_output // group, *kernel), "weight")  # (C_in, C_out/g, kh, kw)
    inputs = [x, builder.const(layer, "weight", weight)]
    if p.bias_term:
        inputs.append(builder.const(layer, "bias", builder.fit(layer, blobs[1], (p.num_output,), "bias")))
    out = [s * (size - 1) + d * (k - 1) + 1 - 2 * pd
           for size, k, s, pd, d in zip((h, w), kernel, stride, pad, dilation)]
    builder.add("ConvTranspose", inputs, layer, (n, p.num_output, *out), kernel_shape=list(kernel),
                strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]], dilations=list(dilation), group=group)


@converter("InnerProduct")
def _inner_product(builder: Builder, layer: LayerParameter) -> None:
    p = layer.inner_product_param
    x = builder.bottom(layer)
    dims = builder.dims(x)
    if _axis(p.axis, len(dims), layer) != 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: InnerProduct over axis {p.axis} is not supported")
    k = int(np.prod(dims[1:]))
    if len(dims) > 2:  # Caffe flattens everything after the batch axis implicitly
        x = builder.aux("Flatten", [x], layer, "flatten", (dims[0], k), axis=1)
    blobs = builder.blobs(layer, 2 if p.bias_term else 1)
    shape = (k, p.num_output) if p.transpose else (p.num_output, k)
    inputs = [x, builder.const(layer, "weight", builder.fit(layer, blobs[0], shape, "weight"))]
    if p.bias_term:
        inputs.append(builder.const(layer, "bias", builder.fit(layer, blobs[1], (p.num_output,), "bias")))
    builder.add("Gemm", inputs, layer, (dims[0], p.num_output), transB=0 if p.transpose else 1)


# ----------------------------------------------------------------------------- normalisation
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
    axis = _axis(axis, len(dims), layer)
    end = len(dims) if num_axes == -1 else axis + num_axes
    covered = tuple(dims[axis:end])
    array = builder.fit(layer, array, covered, what)
    return array.reshape(covered + (1,) * (len(dims) - end))


@converter("Scale")
def _scale(builder: Builder, layer: LayerParameter) -> None:
    p = layer.scale_param
    if len(layer.bottom) > 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: Scale with a second input blob is not supported")
    x = builder.bottom(layer)
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
    if len(layer.bottom) > 1:
        raise ConversionError(f"Caffe layer {layer.name!r}: Bias with a second input blob is not supported")
    x = builder.bottom(layer)
    _add_bias(builder, layer, x, builder.blobs(layer, 1)[0], builder.dims(x), p.axis, p.num_axes)


@converter("LRN")
def _lrn(builder: Builder, layer: LayerParameter) -> None:
    p = layer.lrn_param
    x, dims = _image(builder, layer)
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


# ----------------------------------------------------------------------------- activations
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


def _unary(op: str) -> Converter:
    def convert(builder: Builder, layer: LayerParameter) -> None:
        x = builder.bottom(layer)
        builder.add(op, [x], layer, builder.dims(x))
    convert.__name__ = f"_{op.lower()}"
    return convert


converter("Sigmoid")(_unary("Sigmoid"))
converter("TanH")(_unary("Tanh"))
converter("AbsVal")(_unary("Abs"))
converter("BNLL")(_unary("Softplus"))  # log(1 + exp(x))


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


@converter("Dropout")
def _dropout(builder: Builder, layer: LayerParameter) -> None:
    builder.alias(layer, 0, builder.bottom(layer))  # the identity at test time (Caffe scales in training)


@converter("Split")
def _split(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    for i in range(len(layer.top)):
        builder.alias(layer, i, x)


@converter("Softmax")
def _softmax(builder: Builder, layer: LayerParameter) -> None:
    x = builder.bottom(layer)
    dims = builder.dims(x)
    builder.add("Softmax", [x], layer, dims, axis=_axis(layer.softmax_param.axis, len(dims), layer))


# ----------------------------------------------------------------------------- pooling
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
    x, (n, c, h, w) = _image(builder, layer)
    if p.pool == p.STOCHASTIC:
        raise ConversionError(f"Caffe layer {layer.name!r}: STOCHASTIC pooling has no ONNX equivalent")
    if p.global_pooling:
        if p.pool == p.AVE:
            builder.add("GlobalAveragePool", [x], layer, (n, c, 1, 1))
        else:  # onnx2torch has no GlobalMaxPool; the size is fixed here, so a full-size window
            builder.add("MaxPool", [x], layer, (n, c, 1, 1), kernel_shape=[h, w], strides=[1, 1])
        return
    kernel = _pair([p.kernel_size] if p.HasField("kernel_size") else [], "kernel_h", "kernel_w", p, None,
                   layer, "kernel size")
    stride = _pair([p.stride], "stride_h", "stride_w", p, 1, layer, "stride")
    pad = _pair([p.pad], "pad_h", "pad_w", p, 0, layer, "pad")
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


# ----------------------------------------------------------------------------- merging and shapes
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
    axis = _axis(int(p.concat_dim) if p.HasField("concat_dim") else p.axis, len(dims[0]), layer)
    if any(len(d) != len(dims[0]) or d[:axis] + d[axis + 1:] != dims[0][:axis] + dims[0][axis + 1:] for d in dims):
        raise ConversionError(f"Caffe layer {layer.name!r}: Concat inputs {dims} differ off axis {axis}")
    shape = list(dims[0])
    shape[axis] = sum(d[axis] for d in dims)
    builder.add("Concat", xs, layer, tuple(shape), axis=axis)


@converter("Flatten")
def _flatten(builder: Builder, layer: LayerParameter) -> None:
    p = layer.flatten_param
    x = builder.bottom(layer)
    dims = builder.dims(x)
    axis, end = _axis(p.axis, len(dims), layer), _axis(p.end_axis, len(dims), layer)
    shape = dims[:axis] + (int(np.prod(dims[axis:end + 1])),) + dims[end + 1:]
    if axis == 1 and end == len(dims) - 1:
        builder.add("Flatten", [x], layer, shape, axis=1)
        return
    target = [0] * axis + [-1] + list(dims[end + 1:])  # 0 copies the (dynamic) batch and leading axes
    builder.add("Reshape", [x, builder.const(layer, "shape", target, np.int64)], layer, shape)


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


# ----------------------------------------------------------------------------- the net
def _active_layers(net: NetParameter) -> list[LayerParameter]:
    """The layers of the TEST phase (a deploy net), by Caffe's include/exclude rules."""
    state = net.state  # defaults: phase TEST, level 0, no stages

    def meets(rule) -> bool:
        if rule.HasField("phase") and rule.phase != state.phase:
            return False
        if rule.HasField("min_level") and state.level < rule.min_level:
            return False
        if rule.HasField("max_level") and state.level > rule.max_level:
            return False
        return all(s in state.stage for s in rule.stage) and not any(s in state.stage for s in rule.not_stage)

    active = []
    for layer in net.layer:
        if layer.include:
            keep = any(meets(rule) for rule in layer.include)
        else:
            keep = not any(meets(rule) for rule in layer.exclude)
        if keep:
            active.append(layer)
    return active


def _plan_folds(layers: list[LayerParameter], builder: Builder) -> None:
    """Find Scale layers that directly and only follow a BatchNorm: fold each into it."""
    version: dict[str, int] = defaultdict(int)
    readers: dict[tuple[str, int], list[LayerParameter]] = defaultdict(list)
    writer: dict[tuple[str, int], LayerParameter] = {}
    for layer in layers:
        for blob in layer.bottom:
            readers[(blob, version[blob])].append(layer)
        for blob in layer.top:
            version[blob] += 1
            writer[(blob, version[blob])] = layer
    for key, bn in writer.items():
        if bn.type != "BatchNorm" or len(bn.top) != 1:
            continue
        users = readers.get(key, [])
        if len(users) != 1 or users[0].type != "Scale":
            continue
        scale = users[0]
        p = scale.scale_param
        if len(scale.bottom) == 1 and len(scale.top) == 1 and p.axis in (1, -3) and p.num_axes == 1:
            builder.fused[bn.name] = scale
            builder.skip.add(scale.name)


def _net_inputs(net: NetParameter, builder: Builder) -> None:
    """The old-style inputs: `input:` with `input_shape { dim }` or four `input_dim:` each."""
    for i, blob in enumerate(net.input):
        if i < len(net.input_shape):
            shape = list(net.input_shape[i].dim)
        elif len(net.input_dim) >= 4 * (i + 1):
            shape = list(net.input_dim[4 * i: 4 * i + 4])
        else:
            raise ConversionError(f"net input {blob!r} has no shape (input_shape {{ dim: ... }} or 4 input_dim)")
        builder.graph_input(None, blob, shape)


def _default_spec(layers: list[LayerParameter]) -> InputSpec:
    """Caffe's usual preprocessing, or the mean/scale a data layer's transform_param gives."""
    for layer in layers:
        t = layer.transform_param
        if layer.HasField("transform_param") and len(t.mean_value) == 3:
            return InputSpec(channel_order="BGR", scale=255.0, mean=tuple(float(v) for v in t.mean_value),
                             std=(1.0 / (t.scale or 1.0),) * 3, source=f"the {layer.name!r} layer's transform_param")
    return CAFFE_SPEC


def caffe_to_onnx(prototxt: str | Path, caffemodel: str | Path, out_path: str | Path, *,
                  input_spec: InputSpec | None = None, opset: int = OPSET) -> Path:
    """Convert a Caffe deploy net and its weights to an ONNX file (batch dimension dynamic).

    input_spec: the preprocessing to record (default: BGR, [0, 255], ImageNet mean subtracted);
    a size in it replaces the prototxt's input height and width.
    """
    if not MIN_OPSET <= opset <= OPSET:
        raise ConversionError(f"Caffe nets convert at ONNX opset {MIN_OPSET} to {OPSET}, not {opset}")
    out_path = Path(out_path)
    net = read_prototxt(prototxt)
    weights: dict[str, LayerParameter] = {}
    for layer in read_caffemodel(caffemodel).layer:
        if layer.name not in weights or (len(layer.blobs) and not len(weights[layer.name].blobs)):
            weights[layer.name] = layer
    layers = _active_layers(net)
    spec = input_spec or _default_spec(layers)
    builder = Builder(weights, spec.size)
    _net_inputs(net, builder)
    _plan_folds(layers, builder)
    for layer in layers:
        if layer.name in builder.skip:
            continue
        convert = CONVERTERS.get(layer.type)
        if convert is None:
            if layer.type in TRAINING_ONLY:
                log.info("skipping training-only layer %s (%s)", layer.name, layer.type)
                continue
            raise ConversionError(f"unsupported Caffe layer type {layer.type!r} (layer {layer.name!r}); "
                                  f"supported: {', '.join(sorted(CONVERTERS))}")
        try:
            convert(builder, layer)
        except ConversionError:
            raise
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ConversionError(f"cannot convert Caffe layer {layer.name!r} ({layer.type}): {exc}") from None
    model = builder.model(net.name, opset)
    first = builder.inputs[0].type.tensor_type.shape.dim
    if len(first) == 4:
        spec = spec.with_size(first[2].dim_value, first[3].dim_value)
    model = set_input_spec(model, spec)
    entry = model.metadata_props.add()
    entry.key, entry.value = LAYER_OUTPUTS_KEY, json.dumps(builder.layer_outputs)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted Caffe net fails the ONNX checker: {first_line(exc)}") from None
    save_onnx(model, out_path)
    log.info("converted %s (%d layers) to %s (%d nodes)", Path(prototxt).name, len(layers), out_path,
             len(model.graph.node))
    return out_path


def layer_outputs(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Caffe layer name -> the ONNX tensor(s) holding its output, from a converted model's metadata."""
    meta = {p.key: p.value for p in model.metadata_props}
    return json.loads(meta.get(LAYER_OUTPUTS_KEY, "{}"))
