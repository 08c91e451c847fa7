"""A big dense head (Flatten/Dense/Dropout/activation layers) written as ONNX nodes by hand.

tf2onnx deep-copies the whole graph, weights included, before each of its optimizers, so the
138M-parameter VGG16 with its classifier needs > 12 GB. When a functional model ends in such a
chain holding over DENSE_SPLIT_PARAMETERS parameters, tf2onnx converts the model up to it and
`append_dense_tail` appends the chain, named in tf2onnx's manner (`vgg16_1/fc1_1/MatMul`).
"""
from __future__ import annotations

import numpy as np
import onnx

from converters.errors import ConversionError

DENSE_SPLIT_PARAMETERS = 20_000_000  # a dense head bigger than this is written by hand (module doc)

_TAIL_LAYERS = ("Flatten", "Dense", "Dropout", "Activation", "ReLU", "Softmax")
_ACTIVATIONS = {"linear": None, "relu": "Relu", "softmax": "Softmax", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _activation(layer) -> str | None:
    """The ONNX op of a Dense/Activation layer's activation (None: linear); KeyError if another."""
    function = layer.activation
    return _ACTIVATIONS[getattr(function, "__name__", str(function))]


def _tail_layer_supported(layer) -> bool:
    kind = type(layer).__name__
    try:
        if kind in ("Dense", "Activation"):
            _activation(layer)
        if kind == "Flatten":
            return getattr(layer, "data_format", "channels_last") == "channels_last"
        if kind == "ReLU":
            return not layer.max_value and not layer.negative_slope and not layer.threshold
        if kind == "Softmax":
            return layer.axis in (-1, [-1], (-1,))
    except (KeyError, AttributeError):
        return False
    return kind in _TAIL_LAYERS


def dense_tail(model) -> list:
    """The chain of Flatten/Dense/Dropout/activation layers ending a functional model, when its
    dense layers hold more than DENSE_SPLIT_PARAMETERS parameters; else []."""
    try:
        expected = model.output
        layers = list(model.layers)
    except (AttributeError, ValueError):  # subclassed models have no symbolic output
        return []
    tail = []
    for layer in reversed(layers):
        if type(layer).__name__ not in _TAIL_LAYERS or not _tail_layer_supported(layer):
            break
        try:
            output, inputs = layer.output, layer.input
        except (AttributeError, ValueError):  # a layer called more than once
            break
        if output is not expected or isinstance(inputs, (list, tuple, dict)):
            break
        tail.append(layer)
        expected = inputs
    tail.reverse()
    while tail and type(tail[0]).__name__ != "Flatten" and not tail[0].count_params():
        tail.pop(0)  # start at the first layer worth cutting at
    if sum(layer.count_params() for layer in tail) <= DENSE_SPLIT_PARAMETERS:
        return []
    return tail


def append_dense_tail(model: onnx.ModelProto, tail: list, scope: str) -> onnx.ModelProto:
    """Append Keras Flatten/Dense/activation layers to the (single) output of an ONNX graph.

    Flatten on the NHWC output is a Reshape to (batch, -1): the same element order as Keras.
    A Dense layer is MatMul by its kernel (in, out), Add of its bias, then its activation.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    if len(graph.output) != 1:
        raise ConversionError("the convolutional part has several outputs; cannot append the dense head")
    x = graph.output[0].name
    nodes, initializers = [], []

    def add(op: str, prefix: str, inputs: list[str], **attrs) -> str:
        name = f"{prefix}/{op}"
        nodes.append(helper.make_node(op, inputs, [f"{name}:0"], name=name, **attrs))
        return f"{name}:0"

    def constant(array: np.ndarray, name: str) -> str:
        initializers.append(numpy_helper.from_array(array, name))
        return name

    units = None
    for layer in tail:
        prefix = f"{scope}_1/{layer.name}_1"  # the scopes tf2onnx gives Keras layers
        kind = type(layer).__name__
        if kind == "Flatten":
            x = add("Reshape", prefix, [x, constant(np.array([0, -1], np.int64), f"{prefix}/shape")])
        elif kind == "Dense":
            kernel, *bias = layer.get_weights()
            units = kernel.shape[1]
            x = add("MatMul", prefix, [x, constant(kernel.astype(np.float32), f"{prefix}/kernel")])
            if bias:
                x = add("Add", prefix, [x, constant(bias[0].astype(np.float32), f"{prefix}/bias")])
            op = _activation(layer)
            if op:
                x = add(op, prefix, [x], **({"axis": -1} if op == "Softmax" else {}))
        elif kind in ("Activation", "ReLU", "Softmax"):
            op = _activation(layer) if kind == "Activation" else ("Relu" if kind == "ReLU" else "Softmax")
            if op:
                x = add(op, prefix, [x], **({"axis": -1} if op == "Softmax" else {}))
        # Dropout: the identity at inference
    final = tail[-1].name
    nodes[-1].output[0] = final  # the graph output is named after the last layer, as tf2onnx does
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(
        final, onnx.TensorProto.FLOAT, [batch.dim_param or batch.dim_value or "batch", units]))
    return model
