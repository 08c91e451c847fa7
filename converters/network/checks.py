"""Checks of an ONNX file made before anything converts or runs it (issue 29): each ends in one line
that says what to do (ModelError, exit 2 on the command line), never in a traceback mid-run.

- `check_input_type`: the input to invert is a float image tensor (not a string tensor, a sequence, a map);
- `check_loaded_weights` (`check_weights` for the name): no NaN, no infinity and nothing absurdly large in
  a weight, naming the tensor and the first bad index (vectorised: one aminmax per converted tensor);
- `spatial_problem` / `smallest_size`: an input size the network's kernels and strides cannot take, and
  the smallest one they can (walked from kernels, strides, pads and dilations: ONNX's own shape
  inference rounds a negative size up to 1 and cannot tell).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from converters.errors import ModelError

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
# A trained weight, BatchNorm variance or bias is far below this (float16 tops out at 65504, which is
# valid); past it the squared feature loss overflows float32 on the first image.
MAX_WEIGHT = 1e15


def type_name(value: onnx.ValueInfoProto) -> str:
    kind = value.type.WhichOneof("value")
    if kind == "tensor_type":
        elem = value.type.tensor_type.elem_type
        return f"a {helper.tensor_dtype_to_string(elem).removeprefix('TensorProto.').lower()} tensor" if elem \
            else "a tensor of unknown type"
    return {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional",
            "sparse_tensor_type": "a sparse tensor"}.get(kind, f"a {kind or 'value of no type'}")


def is_float_tensor(value: onnx.ValueInfoProto) -> bool:
    return value.type.WhichOneof("value") == "tensor_type" and value.type.tensor_type.elem_type in FLOAT_TYPES


def check_input_type(value: onnx.ValueInfoProto) -> None:
    """ModelError unless `value` is a tensor of floats or whole numbers (an image a Cast may make float)."""
    kind = value.type.WhichOneof("value")
    elem = value.type.tensor_type.elem_type if kind == "tensor_type" else None
    if kind != "tensor_type" or elem in (onnx.TensorProto.STRING, onnx.TensorProto.BOOL, onnx.TensorProto.COMPLEX64,
                                         onnx.TensorProto.COMPLEX128, onnx.TensorProto.UNDEFINED):
        raise ModelError(f"input {value.name!r} is {type_name(value)}; invert-onnx inverts an image given as a "
                         "float tensor: export the model with a float image input (or choose one with --input NAME)")


def _float_array(tensor: onnx.TensorProto) -> np.ndarray | None:
    if tensor.data_type not in FLOAT_TYPES or onnx.external_data_helper.uses_external_data(tensor):
        return None
    if tensor.raw_data and tensor.data_type != onnx.TensorProto.BFLOAT16:  # a view of the bytes, no copy
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        return np.frombuffer(tensor.raw_data, dtype=np.dtype(dtype).newbyteorder("<"))
    return numpy_helper.to_array(tensor).reshape(-1)


def check_weights(model: onnx.ModelProto, limit: float = MAX_WEIGHT) -> None:
    """ModelError naming the first initializer that holds a NaN, an infinity or a value past `limit`,
    and its first bad index. A one-element constant may be infinite or huge (a Clip bound, a mask
    value); NaN is refused everywhere."""
    for tensor in model.graph.initializer:
        flat = _float_array(tensor)
        if flat is None or flat.size == 0:
            continue
        top, bottom = float(flat.max()), float(flat.min())  # NaN propagates through both
        if flat.size == 1 and not math.isnan(top):
            continue
        if -limit <= bottom and top <= limit:
            continue
        bad = np.isnan(flat) | (np.abs(flat) > limit) if flat.size > 1 else np.isnan(flat)
        first = int(np.flatnonzero(bad)[0])
        where = np.unravel_index(first, tuple(tensor.dims)) if tensor.dims else (first,)
        index = ", ".join(str(int(i)) for i in where)
        raise ModelError(f"weight {tensor.name!r} holds {float(flat[first]):.6g} at index [{index}] (of shape "
                         f"{list(tensor.dims)}): a NaN, an infinity or a value past {limit:g} is not a trained "
                         "weight; the file is corrupt or badly exported: export it again")


def check_loaded_weights(tensors, model: onnx.ModelProto, limit: float = MAX_WEIGHT) -> None:
    """`check_weights` at the cost of one `aminmax` per converted weight (no copy: VGG16's 138M parameters
    in tens of milliseconds, where reading the ONNX bytes again costs a second). Only when a tensor fails
    are the ONNX initializers of `model` searched, for the name and index to report."""
    import torch

    for t in tensors:
        if not t.is_floating_point() or t.numel() == 0:
            continue
        low, high = torch.aminmax(t.detach().float() if t.element_size() < 4 else t.detach())
        low, high = float(low), float(high)
        if (t.numel() == 1 and not math.isnan(high)) or (-limit <= low and high <= limit):
            continue
        check_weights(model, limit)  # names the initializer and the index
        raise ModelError(f"a weight of shape {list(t.shape)} holds a NaN, an infinity or a value past {limit:g}: "
                         "the file is corrupt or badly exported: export it again")


# --- spatial sizes: what the kernels and strides take
WINDOW_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")
KEEP_OPS = ("Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "Elu", "Selu", "HardSigmoid", "HardSwish",
            "Softplus", "BatchNormalization", "InstanceNormalization", "LRN", "Dropout", "Identity", "Add", "Sub",
            "Mul", "Div", "Max", "Min", "Sum", "Mean", "Concat", "Cast", "Abs", "Neg", "Sqrt", "Exp", "Log", "Pow",
            "Erf", "Gelu", "Mish", "Softmax", "DequantizeLinear", "QuantizeLinear", "Where")


def _ints(attrs: dict, key: str, default: list[int]) -> list[int]:
    value = attrs.get(key)
    return [int(v) for v in value] if value else default


def _constant(inits: dict, name: str) -> np.ndarray | None:
    return numpy_helper.to_array(inits[name]) if name in inits else None


def _window(node: onnx.NodeProto, attrs: dict, inits: dict, hw: list[int]) -> list[int] | None:
    """The output spatial sizes of a Conv or pooling node, as ONNX defines them (may be < 1)."""
    kernel = attrs.get("kernel_shape")
    if kernel is None and node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in inits:
        kernel = list(inits[node.input[1]].dims[2:])
    if not kernel or len(kernel) != 2:
        return None
    strides = _ints(attrs, "strides", [1, 1])
    dilations = _ints(attrs, "dilations", [1, 1])
    pads = _ints(attrs, "pads", [0, 0, 0, 0])
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return [math.ceil(n / max(s, 1)) for n, s in zip(hw, strides)]
    if auto == "VALID":
        pads = [0, 0, 0, 0]
    out = []
    for k in range(2):
        effective = dilations[k] * (int(kernel[k]) - 1) + 1
        span = hw[k] + pads[k] + pads[k + 2] - effective
        stride = max(strides[k], 1)
        steps = -(-span // stride) if attrs.get("ceil_mode") and span >= 0 else span // stride
        out.append(steps + 1)
    return out


def spatial_problem(model: onnx.ModelProto, input_name: str, shape: tuple[int, ...]) -> tuple[str, str] | None:
    """(node name, op type) of the first Conv or pooling node left with an empty output when the input
    has `shape`, or None. Sizes are followed through ops that keep them and Transpose; any other op ends
    the walk along its path (never a false alarm)."""
    inits = {t.name: t for t in model.graph.initializer}
    shapes: dict[str, list[int]] = {input_name: [int(d) for d in shape]}
    for node in model.graph.node:
        first = next((shapes[t] for t in node.input[:1] if t in shapes), None)
        if first is None:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        out: list[int] | None = None
        if node.op_type in WINDOW_OPS:
            hw = _window(node, attrs, inits, first[2:4])
            if hw is not None:
                if min(hw) < 1:
                    return node.name, node.op_type
                out = first[:2] + hw
        elif node.op_type in ("GlobalAveragePool", "GlobalMaxPool"):
            out = first[:2] + [1, 1]
        elif node.op_type == "Transpose":
            perm = _ints(attrs, "perm", [3, 2, 1, 0])
            out = [first[p] for p in perm] if sorted(perm) == [0, 1, 2, 3] else None
        elif node.op_type == "Pad" and len(node.input) > 1:
            pads = _constant(inits, node.input[1])
            if pads is not None and pads.size == 8:
                out = [int(d + pads[k] + pads[k + 4]) for k, d in enumerate(first)]
                if min(out) < 1:
                    return node.name, node.op_type
        elif node.op_type in KEEP_OPS:
            out = first
        if out is not None:
            for t in node.output[:1]:
                shapes[t] = out
    return None


def smallest_size(model: onnx.ModelProto, input_name: str, shape_at, limit: int = 65536) -> int | None:
    """The smallest square size s at which no Conv or pooling node is left empty (`shape_at(s)`: the
    input shape at s x s), or None when even `limit` is too small. Output sizes grow with the input,
    so a bisection finds it."""
    if spatial_problem(model, input_name, shape_at(limit)):
        return None
    low, high = 1, limit  # high always works
    while low < high:
        mid = (low + high) // 2
        if spatial_problem(model, input_name, shape_at(mid)):
            low = mid + 1
        else:
            high = mid
    return high


def check_size(model: onnx.ModelProto, input_name: str, spec, given: bool = True) -> None:
    """ModelError when the network cannot take `spec`'s input size, naming the smallest size it can."""
    h, w = spec.size
    if min(h, w) < 1:
        problem: tuple[str, str] | None = ("", "")
    else:
        problem = spatial_problem(model, input_name, spec.tensor_shape(1))
    if problem is None:
        return
    smallest = smallest_size(model, input_name, lambda s: spec.with_size(s, s).tensor_shape(1))
    what = "--size" if given else "the model's declared input size"
    why = f" ({problem[1]} node {problem[0]!r} would get an empty output)" if problem[0] else ""
    fix = (f"the smallest size it takes is {smallest}x{smallest}: pass --size {smallest} or more" if smallest
           else "no input size gives every node an output: the file is broken; export it again")
    raise ModelError(f"input size {h}x{w} ({what}) is too small for this model{why}; {fix}")
