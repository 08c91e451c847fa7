"""ONNX clean-up after export: set the input spec metadata."""
from __future__ import annotations

import onnx

from converters.input_spec import METADATA_KEY, InputSpec


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
