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
    """Record what the network expects, so `Network` feeds it correctly whoever loads it."""
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    return model
