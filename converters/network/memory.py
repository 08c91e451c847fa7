"""How much memory a model needs at the chosen input size, estimated from the ONNX graph before
anything runs (a 1 KB file can declare a 40000x40000 input or a 115 GB ConstantOfShape).

The estimate is the sum of every tensor the graph holds: initializers, the input, and each
value whose shape ONNX shape inference (with data propagation) fixes at this size, plus
ConstantOfShape outputs whose shape is a constant. Past the limit (by default half the
machine's physical memory) loading stops with one line naming `--max-memory`.
"""
from __future__ import annotations

import math
import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

from converters.errors import UserError

DEFAULT_FRACTION = 0.5  # of physical memory: the forward pass, the backward pass and the optimiser share it


class MemoryLimitError(UserError):
    """A model that would need more memory than the limit at this input size."""


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def default_limit() -> int:
    return int(physical_memory() * DEFAULT_FRACTION)


def _itemsize(elem_type: int) -> int:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except Exception:
        return 4


def _type_bytes(value: onnx.ValueInfoProto) -> int | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    if any(d is None or d < 0 for d in dims):
        return None
    return math.prod(dims) * _itemsize(t.elem_type)


def estimate_bytes(model: onnx.ModelProto, input_name: str, input_shape: tuple[int, ...]) -> int:
    """Bytes of every tensor of `model` with `input_name` fixed at `input_shape` (an upper bound of one forward pass)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    for value in probe.graph.input:
        if value.name == input_name:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for d in input_shape:
                dims.add().dim_value = int(d)
    try:
        probe = onnx.shape_inference.infer_shapes(probe, data_prop=True)
    except Exception:  # inference is a help, not a requirement: count what is known
        pass
    sizes: dict[str, int] = {}
    for tensor in model.graph.initializer:
        sizes[tensor.name] = math.prod(tensor.dims) * _itemsize(tensor.data_type)
    for value in (*probe.graph.input, *probe.graph.value_info, *probe.graph.output):
        size = _type_bytes(value)
        if size is not None and value.name not in sizes:
            sizes[value.name] = size
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    constants[node.output[0]] = attr.t
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in constants and node.output[0] not in sizes:
            shape = numpy_helper.to_array(constants[node.input[0]]).astype(np.float64)
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            sizes[node.output[0]] = int(np.prod(shape)) * (_itemsize(value.data_type) if value is not None else 4)
    return int(sum(sizes.values()))


def check_memory(model: onnx.ModelProto, input_name: str, input_shape: tuple[int, ...],
                 limit: float | None = None) -> int:
    """The estimate, or MemoryLimitError past `limit` bytes (None: half the physical memory; inf: no limit)."""
    limit = default_limit() if limit is None else limit
    needed = estimate_bytes(model, input_name, input_shape)
    if needed > limit:
        size = "x".join(str(d) for d in input_shape)
        raise MemoryLimitError(f"the model needs about {needed / 2**30:.1f} GB at input {size}, over the "
                               f"{limit / 2**30:.1f} GB limit; pass --max-memory GB to lift it "
                               "(or a smaller --size where the model allows)")
    return needed
