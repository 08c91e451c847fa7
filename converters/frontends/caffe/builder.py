"""The ONNX graph under construction while a Caffe net is walked, and the blob bookkeeping.

In-place layers (top == bottom) get distinct ONNX tensors. Every node keeps its Caffe layer
name; a blob's *last* value carries the blob's own name (what `net.blobs["conv3_1"]` holds
after a forward pass), earlier values are named `{blob}/{layer}_out`.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from converters.errors import ConversionError
from converters.frontends.caffe.proto import LayerParameter, blob_array
from converters.network.edges import consumers, producers


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
        consumed, produced = consumers(self.nodes), producers(self.nodes)
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


def axis_index(axis: int, rank: int, layer: LayerParameter) -> int:
    """A Caffe axis (negative counts from the end) as an index into a `rank`-d blob."""
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


def pair(values, h_field: str | None, w_field: str | None, param, default: int | None, layer,
         what: str) -> tuple[int, int]:
    """Caffe's kernel/stride/pad/dilation: `x_h`/`x_w`, or one value for both, or one per axis."""
    found = _pair_values(values, h_field, w_field, param, default)
    if found is not None:
        least = 0 if what == "pad" else 1  # a stride, kernel or dilation of 0 divides by zero later
        if min(found) < least:
            raise ConversionError(f"Caffe layer {layer.name!r}: {what} {found[0]}x{found[1]} is invalid; "
                                  f"it must be >= {least}")
        return found
    raise ConversionError(f"Caffe layer {layer.name!r}: give the {what} as one value or two"
                          + (f" or {h_field}/{w_field}" if h_field else "") + " (2D layers only)")


def image_input(builder: Builder, layer: LayerParameter) -> tuple[str, tuple[int, ...]]:
    """The layer's first bottom and its shape, which must be (N, C, H, W)."""
    x = builder.bottom(layer)
    dims = builder.dims(x)
    if len(dims) != 4:
        raise ConversionError(f"Caffe layer {layer.name!r} ({layer.type}) needs a 4-d (N, C, H, W) input, "
                              f"got shape {dims}; only 2D layers are supported")
    return x, dims
