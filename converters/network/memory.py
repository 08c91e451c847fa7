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
from converters.network.checks import KEEP_OPS

PROTOBUF_LIMIT = 2**31 - 2**24  # bytes of one serialised ModelProto, with room for the graph
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


def _attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _grown_shape(node: onnx.NodeProto, shapes: dict, constants: dict) -> list[int] | None:
    """The output shape of an op that can grow a tensor far past its input (Resize/Upsample, Tile,
    Expand, ConstantOfShape, Pad, ConvTranspose) from its input shape and constant arguments, where
    ONNX's inference left it unknown; None when it cannot be told."""
    def const(k):
        if len(node.input) > k and node.input[k] in constants:
            return numpy_helper.to_array(constants[node.input[k]]).astype(np.float64).reshape(-1)
        return None

    x = shapes.get(node.input[0]) if node.input else None
    op = node.op_type
    if op in ("Resize", "Upsample"):
        sizes = const(3) if op == "Resize" else None
        if sizes is not None and sizes.size:
            return [int(v) for v in sizes]
        scales = const(2 if op == "Resize" else 1)
        if scales is None and op == "Upsample":
            scales = np.asarray(_attr(node, "scales", []), dtype=np.float64)
        if x and scales is not None and len(scales) == len(x):
            return [int(math.floor(d * s)) for d, s in zip(x, scales)]
    elif op == "Tile":
        repeats = const(1)
        if x and repeats is not None and len(repeats) == len(x):
            return [int(d * r) for d, r in zip(x, repeats)]
    elif op in ("Expand", "ConstantOfShape"):
        shape = const(1 if op == "Expand" else 0)
        if shape is not None:
            x = x or []
            rank = max(len(x), len(shape))
            a, b = [1] * (rank - len(x)) + list(x), [1] * (rank - len(shape)) + [int(v) for v in shape]
            return [max(p, q) for p, q in zip(a, b)]
    elif op == "Pad":
        pads = const(1) if len(node.input) > 1 else np.asarray(_attr(node, "pads", []), dtype=np.float64)
        if x and pads is not None and len(pads) == 2 * len(x):
            return [int(d + pads[k] + pads[k + len(x)]) for k, d in enumerate(x)]
    elif op == "ConvTranspose" and x and len(x) == 4 and len(node.input) > 1 and node.input[1] in constants:
        w = list(constants[node.input[1]].dims)
        explicit = _attr(node, "output_shape")
        if explicit:
            return [x[0], w[1] * _attr(node, "group", 1), *[int(v) for v in explicit[-2:]]]
        strides = _attr(node, "strides", [1, 1])
        dil = _attr(node, "dilations", [1, 1])
        pads = _attr(node, "pads", [0, 0, 0, 0])
        extra = _attr(node, "output_padding", [0, 0])
        return [x[0], w[1] * _attr(node, "group", 1),
                *[strides[k] * (x[2 + k] - 1) + extra[k] + (w[2 + k] - 1) * dil[k] + 1 - pads[k] - pads[k + 2]
                  for k in range(2)]]
    return None


GROWING_OPS = ("Resize", "Upsample", "Tile", "Expand", "ConstantOfShape", "Pad", "ConvTranspose")


def _dims(value: onnx.ValueInfoProto) -> list[int] | None:
    t = value.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return None if any(d is None or d < 0 for d in dims) else dims


def estimate(model: onnx.ModelProto, input_name: str, input_shape: tuple[int, ...]) -> tuple[int, str, int]:
    """(bytes of every tensor of `model` with `input_name` fixed at `input_shape`, the node making
    the largest one, its bytes): an upper bound of one forward pass. Shapes come from ONNX shape
    inference with data propagation; where it leaves a growing op's output unknown, from the op's
    own formula on its constant arguments."""
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
    shapes: dict[str, list[int]] = {input_name: [int(d) for d in input_shape]}
    types: dict[str, int] = {}
    for value in (*probe.graph.input, *probe.graph.value_info, *probe.graph.output):
        dims = _dims(value)
        types[value.name] = value.type.tensor_type.elem_type
        if dims is not None and value.name not in shapes:
            shapes[value.name] = dims
        size = _type_bytes(value)
        if size is not None and value.name not in sizes:
            sizes[value.name] = size
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    constants[node.output[0]] = attr.t
    largest, where = 0, ""
    for i, node in enumerate(model.graph.node):
        out = node.output[0] if node.output else ""
        if node.op_type in GROWING_OPS and out not in shapes:
            shape = _grown_shape(node, shapes, constants)
            if shape is not None:
                shapes[out] = shape
                value = _attr(node, "value") if node.op_type == "ConstantOfShape" else None
                elem = value.data_type if value is not None else types.get(node.input[0], 1) if node.input else 1
                sizes[out] = int(np.prod(np.asarray(shape, dtype=np.float64))) * _itemsize(elem or 1)
        elif out not in shapes and node.op_type in KEEP_OPS and node.input and node.input[0] in shapes:
            shapes[out] = shapes[node.input[0]]  # elementwise: where inference stopped, the size carries on
            sizes.setdefault(out, sizes.get(node.input[0], 0))
        for name in node.output:
            if sizes.get(name, 0) > largest:
                largest, where = sizes[name], f"{node.op_type} node {node.name or f'{node.op_type}_{i}'!r}"
    return int(sum(sizes.values())), where, largest


def estimate_bytes(model: onnx.ModelProto, input_name: str, input_shape: tuple[int, ...]) -> int:
    """Bytes of every tensor of `model` with `input_name` fixed at `input_shape` (`estimate`'s first number)."""
    return estimate(model, input_name, input_shape)[0]


def check_memory(model: onnx.ModelProto, input_name: str, input_shape: tuple[int, ...],
                 limit: float | None = None) -> int:
    """The estimate, or MemoryLimitError past `limit` bytes (None: half the physical memory; inf: no limit)."""
    limit = default_limit() if limit is None else limit
    needed, node, largest = estimate(model, input_name, input_shape)
    if needed > limit:
        size = "x".join(str(d) for d in input_shape)
        at = f" ({node} makes {largest / 2**30:.1f} GB)" if node else ""
        raise MemoryLimitError(f"the model needs about {needed / 2**30:.1f} GB at input {size}{at}, over the "
                               f"{limit / 2**30:.1f} GB limit; pass --max-memory GB to lift it "
                               "(or a smaller --size where the model allows)")
    return needed


def check_external_data(tensors: list[tuple[onnx.TensorProto, int]], inline: int, path,
                        limit: float | None = None) -> None:
    """Before external data is read: each entry (tensor, bytes its region holds) must hold exactly what
    the tensor's shape needs (ModelError), and all of them with the `inline` bytes must fit the limit
    (MemoryLimitError naming the largest tensor)."""
    from converters.errors import ModelError

    limit = default_limit() if limit is None else limit
    total, largest = inline, None
    for tensor, held in tensors:
        needed = math.prod(tensor.dims) * _itemsize(tensor.data_type)
        if held != needed:
            raise ModelError(f"{path}: tensor {tensor.name!r} has shape {list(tensor.dims)} ({needed} bytes) but its "
                             f"external data holds {held} bytes; the file is corrupt: export it again")
        total += needed
        if largest is None or needed > largest[1]:
            largest = (tensor.name, needed)
    if total > limit:
        at = f" (tensor {largest[0]!r}: {largest[1] / 2**30:.1f} GB)" if largest else ""
        raise MemoryLimitError(f"{path}: its weights take {total / 2**30:.1f} GB{at}, over the {limit / 2**30:.1f} GB "
                               "limit, before they are read; pass --max-memory GB to lift it")
    if total > PROTOBUF_LIMIT:
        raise ModelError(f"{path}: its weights take {total / 2**30:.1f} GB; invert-onnx converts models under 2 GB "
                         "(the protobuf limit the conversion works in): cut the model or export it in float16")
