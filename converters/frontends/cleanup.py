"""ONNX clean-up after export: drop Identity nodes that only rename weights, set metadata."""
from __future__ import annotations

import onnx

from converters.input_spec import METADATA_KEY, InputSpec


def drop_weight_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """torch.onnx (without constant folding) emits `Identity(weight)` nodes; consumers read the weight directly."""
    inits = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in model.graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not rename:
        return model
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def set_input_spec(model: onnx.ModelProto, spec: InputSpec) -> onnx.ModelProto:
    """Record what the network expects, so `Network` feeds it correctly whoever loads it. The channel
    count comes from the graph's first input (a grey Keras model records one mean and std, not RGB's)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if inputs and len(inputs[0].type.tensor_type.shape.dim) == 4:
        dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
        channels = dims[1] if spec.layout == "NCHW" else dims[3]
        if channels in (1, 3, 4) and channels != spec.channels:
            spec = spec.with_channels(channels)
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    return model
