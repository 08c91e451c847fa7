"""Floating-point operations of a `Network`'s ONNX graph, per node and up to any node.

Convention (batch 1, at the network's input size):

- a multiply-add is 2 FLOPs; a Conv, ConvTranspose, Gemm or MatMul costs 2 x its
  multiply-adds, and its bias (when present) 1 FLOP per output element — so VGG16's conv1_1
  at 224 px is 2*64*(3*3*3)*224*224 + 64*224*224 = 176,619,520 FLOPs;
- BatchNormalization in inference is a per-channel scale and shift: 2 per output element;
- elementwise ops (Relu, Clip, Add, Mul, Sigmoid, ...): 1 per output element (an n-input
  Sum/Max/Min/Mean: n - 1);
- MaxPool/AveragePool/LpPool: the kernel's size per output element; global pooling and
  reductions: 1 per input element; LRN: 2*size + 3 per output element; Softmax: 3 per element;
- data movement (Reshape, Flatten, Transpose, Concat, Pad, Slice, Gather, Cast, Shape,
  Constant, Identity, Dropout, Resize ...) costs 0, as does any op not listed here.

Shapes come from `network.nodes` (recorded by running the torch graph once); a missing one
is taken from ONNX shape inference with the batch fixed at 1.
"""
from __future__ import annotations

import logging
import math

import onnx

from converters.network.edges import producers
from converters.network.names import NodeInfo

log = logging.getLogger(__name__)

ELEMENTWISE_OPS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Clip", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log", "Sqrt", "Reciprocal", "Neg",
    "Abs", "Sign", "Floor", "Ceil", "Round", "Add", "Sub", "Mul", "Div", "Pow", "Mod", "ThresholdedRelu",
})
VARIADIC_OPS = frozenset({"Sum", "Max", "Min", "Mean"})
WINDOW_POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"})
INPUT_SIZED_OPS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum",
                             "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare",
                             "ReduceLogSumExp", "ReduceProd"})
FREE_OPS = frozenset({"Reshape", "Flatten", "Transpose", "Concat", "Split", "Slice", "Gather", "Pad", "Squeeze",
                      "Unsqueeze", "Identity", "Shape", "Constant", "ConstantOfShape", "Cast", "Dropout",
                      "Expand", "Tile", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Range"})


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 0


def _attrs(proto: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}


def _tensor_shapes(network) -> dict[str, tuple[int, ...]]:
    """ONNX tensor name -> shape at batch 1: recorded node outputs, graph input, initializers."""
    model = network.onnx_model
    shapes: dict[str, tuple[int, ...]] = {t.name: tuple(t.dims) for t in model.graph.initializer}
    h, w = network.input_spec.size
    layout = network.input_spec.layout
    shapes[network.input_name] = (1, 3, h, w) if layout == "NCHW" else (1, h, w, 3)
    for node in network.nodes:
        if node.shape is not None:
            shapes[node.outputs[0]] = tuple(node.shape)
    return shapes


def _inferred_shapes(network) -> dict[str, tuple[int, ...]]:
    """ONNX shape inference on a weightless copy of the graph, input fixed at batch 1."""
    model = network.onnx_model
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.initializer[:]
    for init in model.graph.initializer:  # weights become inputs of known shape: no bytes copied
        probe.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    for value in probe.graph.input:
        if value.name == network.input_name:
            dims = value.type.tensor_type.shape.dim
            h, w = network.input_spec.size
            fixed = (1, 3, h, w) if network.input_spec.layout == "NCHW" else (1, h, w, 3)
            for d, n in zip(dims, fixed):
                d.Clear()
                d.dim_value = n
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
    except Exception as exc:  # inference is a fallback only
        log.debug("ONNX shape inference failed: %s", exc)
        return {}
    out = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[value.name] = tuple(d.dim_value for d in dims)
    return out


def node_flops(node: NodeInfo, proto: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """FLOPs of one node at batch 1 (the module docstring's convention); None: a shape is missing."""
    op = node.op_type
    if op in FREE_OPS:
        return 0
    out_shape = shapes.get(node.outputs[0])
    if out_shape is None:
        return None
    out = _numel(out_shape)
    attrs = _attrs(proto)
    inputs = list(node.inputs)
    has_bias = len(inputs) > 2 and bool(inputs[2])
    if op == "Conv":
        weight = shapes.get(inputs[1])
        if weight is None:
            return None
        return 2 * out * _numel(weight[1:]) + (out if has_bias else 0)  # (Cin/groups) * kernel per output
    if op == "ConvTranspose":
        weight, x = shapes.get(inputs[1]), shapes.get(inputs[0])
        if weight is None or x is None:
            return None
        return 2 * _numel(x) * _numel(weight[1:]) + (out if has_bias else 0)  # (Cout/groups) * kernel per input
    if op == "Gemm":
        a = shapes.get(inputs[0])
        if a is None:
            return None
        k = a[0] if attrs.get("transA", 0) else a[-1]
        bias = has_bias and attrs.get("beta", 1.0) != 0
        return 2 * out * k + (out if bias else 0)
    if op == "MatMul":
        a = shapes.get(inputs[0])
        if a is None:
            return None
        return 2 * out * a[-1]
    if op == "BatchNormalization":
        return 2 * out
    if op in ("InstanceNormalization", "LayerNormalization", "GroupNormalization"):
        return 5 * out  # mean, variance, normalise, scale, shift
    if op in ELEMENTWISE_OPS:
        return out
    if op in VARIADIC_OPS:
        return out * max(len([t for t in inputs if t]) - 1, 1)
    if op in WINDOW_POOL_OPS:
        return out * _numel(attrs.get("kernel_shape", [1]))
    if op in INPUT_SIZED_OPS:
        x = shapes.get(inputs[0])
        return None if x is None else _numel(x)
    if op == "LRN":
        return out * (2 * int(attrs.get("size", 1)) + 3)
    if op in ("Softmax", "LogSoftmax"):
        return 3 * out
    log.debug("no FLOP formula for %s (node %s); counted as 0", op, node.name)
    return 0


def flops_per_node(network) -> dict[str, int]:
    """ONNX node name -> FLOPs at batch 1 and the network's input size, in graph order."""
    protos = {p.name: p for p in network.onnx_model.graph.node}
    shapes = _tensor_shapes(network)
    counts: dict[str, int | None] = {n.name: node_flops(n, protos[n.name], shapes) for n in network.nodes}
    if any(v is None for v in counts.values()):
        shapes = {**_inferred_shapes(network), **shapes}
        for node in network.nodes:
            if counts[node.name] is None:
                value = node_flops(node, protos[node.name], shapes)
                if value is None:
                    log.warning("no shape for node %s (%s); its FLOPs count as 0", node.name, node.op_type)
                counts[node.name] = value or 0
    return counts  # type: ignore[return-value]


def ancestors(network, node_names: list[str]) -> list[NodeInfo]:
    """The nodes a graph cut at these nodes computes (the nodes themselves included), in graph order."""
    producer = {t: node for t, (node, _) in producers(network.nodes).items()}
    stack = []
    for name in node_names:
        stack.append(producer[name] if name in producer else network.resolve(name))
    seen: set[str] = set()
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(producer[t] for t in node.inputs if t in producer)
    return [n for n in network.nodes if n.name in seen]


def flops_to(network, node_names: list[str] | str) -> int:
    """FLOPs at batch 1 of everything the graph cut at these nodes computes (any accepted names)."""
    names = [node_names] if isinstance(node_names, str) else list(node_names)
    counts = flops_per_node(network)
    return sum(counts[n.name] for n in ancestors(network, names))


def total_flops(network) -> int:
    """FLOPs at batch 1 of the whole graph (up to the model's outputs)."""
    return flops_to(network, network.output_names)
