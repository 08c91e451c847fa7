"""Receptive field of each node in input pixels, by walking kernels, strides and dilations."""
from __future__ import annotations

import onnx
from onnx import numpy_helper

from converters.network.names import NodeInfo

WINDOW_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool")
GLOBAL_OPS = ("GlobalAveragePool", "GlobalMaxPool", "Gemm", "MatMul", "Flatten", "Reshape",
              "ReduceMean", "ReduceMax")


def assign_receptive_fields(nodes: list[NodeInfo], model: onnx.ModelProto) -> None:
    """Set `receptive_field` (pixels along one side; None once the node sees the whole image)."""
    inits = {t.name: t for t in model.graph.initializer}
    protos = {n.name: n for n in model.graph.node}
    # tensor -> (receptive field, jump between neighbouring outputs), both in input pixels.
    # Only image-like tensors (rank >= 3) carry a field: shape computations feeding Pad or
    # Reshape do not.
    field: dict[str, tuple[float, float]] = {i.name: (1.0, 1.0) for i in model.graph.input}
    shape_of = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    shape_of.update({n.outputs[0]: list(n.shape) for n in nodes if n.shape})
    rank = {t: len(shape) for t, shape in shape_of.items()}
    for node in nodes:
        ins = [field[t] for t in node.inputs if t in field]
        if not ins or (node.shape is not None and len(node.shape) < 2):
            node.receptive_field, node.on_data_path = None, False
            continue
        rf, jump = max(ins)
        if rf != float("inf"):
            proto = protos[node.name]
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
            if node.op_type in WINDOW_OPS:
                kernel = attrs.get("kernel_shape")
                if kernel is None and len(node.inputs) > 1 and node.inputs[1] in inits:
                    kernel = list(numpy_helper.to_array(inits[node.inputs[1]]).shape[2:])
                kernel = kernel or [1]
                dil = (attrs.get("dilations") or [1])[0]
                stride = (attrs.get("strides") or [1])[0]
                rf = rf + (dil * (kernel[0] - 1)) * jump
                jump = jump * stride
            elif node.op_type == "Slice":
                step = _spatial_step(node, inits, shape_of)
                # a strided Slice subsamples; a space-to-depth stem (YOLOv5's Focus) concatenates every
                # offset of it, so each output pixel covers step x step inputs: counted as such (for a
                # lone strided Slice this overstates the field by step - 1 input pixels)
                rf, jump = rf + (step - 1) * jump, jump * step
            elif node.op_type == "Reshape" and _layout_only(shape_of.get(node.inputs[0]), node.shape):
                pass  # (1, H, W, 1) <-> (1, 1, H, W): a one-channel NHWC/NCHW change keeps every pixel in place
            elif node.op_type in GLOBAL_OPS:
                rf, jump = float("inf"), float("inf")
        node.on_data_path = rank.get(node.outputs[0], 4) >= 3 or rf == float("inf")
        if node.on_data_path:
            for t in node.outputs:
                field[t] = (rf, jump)
        node.receptive_field = None if rf == float("inf") else int(rf)


def _layout_only(before, after) -> bool:
    """A Reshape that only moves size-1 axes: same rank, same sizes, spatial sizes > 1 in the same order."""
    if not before or not after or len(before) != len(after) or len(after) < 3:
        return False
    before, after = before[1:], after[1:]  # the batch axis may be dynamic (0)
    return [d for d in before if d != 1] == [d for d in after if d != 1] and 0 not in before


def _spatial_step(node: NodeInfo, inits: dict, shape_of: dict) -> int:
    """The largest step a Slice takes along the last two (spatial, NCHW) axes; 1 if unknown."""
    def values(k):
        if len(node.inputs) > k and node.inputs[k] in inits:
            return [int(v) for v in numpy_helper.to_array(inits[node.inputs[k]]).reshape(-1)]
        return None

    steps, axes = values(4), values(3)
    if not steps:
        return 1
    rank = len(shape_of.get(node.inputs[0]) or []) or 4
    axes = axes or list(range(len(steps)))
    spatial = [abs(s) for s, a in zip(steps, axes) if (a % rank) in (rank - 2, rank - 1)]
    return max(spatial, default=1)
