"""Absorbing exporters' quirks before onnx2torch: each pass takes and edits an ONNX model in place.

- `constants_to_initializers`: weights stored as `Constant` nodes (Paddle2ONNX) become
  initializers; onnx2torch reads weights from initializers only.
- `constant_cast_likes`: `CastLike(constant, input)` (torch.onnx's default exporter, optimiser off) becomes a
  constant of the input's type, so the weights computed from it fold into initializers.
- `drop_weight_identities`: `Identity(initializer)` nodes (torch.onnx's legacy exporter: merged equal
  weights, or no constant folding) are bypassed, so consumers read the initializer.
- `dequantize`: a quantized file becomes its float equivalent. `DequantizeLinear` of constant
  integer weights (TFLite, onnxruntime static quantisation) becomes a float initializer; a
  `QuantizeLinear -> DequantizeLinear` pair on activations becomes a Clip to its integer range
  (it absorbed a Relu); dynamic
  quantisation (`DynamicQuantizeLinear` + `ConvInteger`/`MatMulInteger`, then Cast and a Mul by
  the scales) becomes `Conv`/`MatMul` on float inputs with the zero-point-shifted integer weights,
  and the activation scale set to 1, so the Mul that follows applies the weight scale alone.
- `static_shapes`: the image input fixed at the chosen size (batch 1), then onnxsim folds shape
  computations into constants (fallback: onnx shape inference only), so ops whose rank depends
  on a dynamic shape (BatchNorm `spatial rank == -2`) convert.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)

_CONST_ATTRS = ("value", "value_float", "value_floats", "value_int", "value_ints")


def _tensor_of_constant(node: onnx.NodeProto, name: str) -> onnx.TensorProto | None:
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            t = onnx.TensorProto()
            t.CopyFrom(attr.t)
            t.name = name
            return t
        if attr.name in ("value_float", "value_int"):
            v = attr.f if attr.name == "value_float" else attr.i
            return numpy_helper.from_array(np.array(v, np.float32 if attr.name == "value_float" else np.int64), name)
        if attr.name in ("value_floats", "value_ints"):
            v = list(attr.floats) if attr.name == "value_floats" else list(attr.ints)
            return numpy_helper.from_array(np.array(v, np.float32 if attr.name == "value_floats" else np.int64), name)
    return None


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Move `Constant` nodes of the main graph into initializers; returns how many moved."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    keep, moved = [], 0
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output[0] not in outputs:
            t = _tensor_of_constant(node, node.output[0])
            if t is not None:
                graph.initializer.append(t)
                moved += 1
                continue
        keep.append(node)
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
    return moved


def constant_cast_likes(model: onnx.ModelProto) -> int:
    """`CastLike(constant, x)` becomes the constant in x's element type (torch.onnx's default exporter without its
    optimiser writes one for every constant it combines with the input, zero conv biases included), so constant
    folding can make the weights it feeds initializers again; returns how many were rewritten."""
    inits = {t.name: t for t in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.value_info,
                                                            *model.graph.output) if v.type.tensor_type.elem_type}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    keep, done = [], 0
    for node in model.graph.node:
        if (node.op_type == "CastLike" and node.input[0] in inits and types.get(node.input[1])
                and node.output[0] not in inits):
            value = numpy_helper.to_array(inits[node.input[0]])
            dtype = onnx.helper.tensor_dtype_to_np_dtype(types[node.input[1]])
            model.graph.initializer.append(numpy_helper.from_array(value.astype(dtype), node.output[0]))
            types[node.output[0]] = types[node.input[1]]
            done += 1
        else:
            keep.append(node)
    if done:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return done


def drop_weight_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """`Identity(initializer)` nodes: torch.onnx without constant folding writes one per weight, and the legacy
    exporter merges equal initializers (every zero bias of a fresh network, tied weights) into one read through
    Identity nodes. onnx2torch reads weights from initializers only: consumers read the initializer directly."""
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


# ----------------------------------------------------------------------------- quantized -> float
def _arrays(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _dequantized(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int) -> np.ndarray:
    q = q.astype(np.float32)
    zp = np.zeros_like(scale, dtype=np.float32) if zp is None else zp.astype(np.float32)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q - zp) * scale.astype(np.float32)).astype(np.float32)


def dequantize(model: onnx.ModelProto) -> list[str]:
    """Replace quantized parts by their float equivalent; returns what was done (empty: nothing)."""
    graph = model.graph
    inits = _arrays(model)
    notes: list[str] = []
    renames: dict[str, str] = {}  # tensor -> the tensor that replaces it
    new_inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    dq_weights = qdq_pairs = dyn = 0
    producers = {o: n for n in graph.node for o in n.output}

    def arr(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def opt(node, k):
        return node.input[k] if len(node.input) > k and node.input[k] else None

    for node in graph.node:
        op = node.op_type
        if op == "DequantizeLinear" and node.input[0] in inits and node.input[1] in inits:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            zp = arr(opt(node, 2)) if opt(node, 2) else None
            new_inits.append(numpy_helper.from_array(_dequantized(arr(node.input[0]), arr(node.input[1]), zp, axis),
                                                     node.output[0]))
            dq_weights += 1
            continue
        if op == "DequantizeLinear" and node.input[0] in producers and producers[node.input[0]].op_type == "QuantizeLinear":
            ql = producers[node.input[0]]
            scale, zp = arr(ql.input[1]), arr(opt(ql, 2)) if opt(ql, 2) else None
            if scale is not None and scale.size == 1:
                # the pair saturates at the integer range (it absorbs a Relu): a Clip, without the rounding
                info = np.iinfo(zp.dtype if zp is not None else np.uint8)
                z = float(zp.reshape(-1)[0]) if zp is not None else 0.0
                lo, hi = node.output[0] + "_min", node.output[0] + "_max"
                new_inits += [numpy_helper.from_array(np.array((info.min - z) * float(scale.reshape(-1)[0]), np.float32), lo),
                              numpy_helper.from_array(np.array((info.max - z) * float(scale.reshape(-1)[0]), np.float32), hi)]
                nodes.append(helper.make_node("Clip", [ql.input[0], lo, hi], [node.output[0]], name=node.name))
            else:
                renames[node.output[0]] = ql.input[0]
            qdq_pairs += 1
            continue
        if op == "DynamicQuantizeLinear":
            y, scale, zp = (list(node.output) + ["", "", ""])[:3]
            renames[y] = node.input[0]
            if scale:
                new_inits.append(numpy_helper.from_array(np.array(1.0, np.float32), scale))
            if zp:
                new_inits.append(numpy_helper.from_array(np.array(0.0, np.float32), zp))
            dyn += 1
            continue
        if op in ("ConvInteger", "MatMulInteger") and node.input[1] in inits:
            wzp = arr(opt(node, 3)) if opt(node, 3) else None
            w = arr(node.input[1]).astype(np.float32)
            if wzp is not None:
                wzp = wzp.astype(np.float32)
                if op == "ConvInteger" and wzp.ndim == 1 and wzp.size > 1:
                    wzp = wzp.reshape(-1, *([1] * (w.ndim - 1)))
                w = w - wzp
            wname = node.input[1] + "_float"
            new_inits.append(numpy_helper.from_array(w.astype(np.float32), wname))
            float_op = "Conv" if op == "ConvInteger" else "MatMul"
            nodes.append(helper.make_node(float_op, [node.input[0], wname], list(node.output), name=node.name,
                                          **{a.name: helper.get_attribute_value(a) for a in node.attribute}))
            continue
        nodes.append(node)
    if not (dq_weights or qdq_pairs or dyn):
        return notes
    # the integer ops' outputs were int32: their Cast to float stays (float -> float is the identity);
    # an int32 bias added to them (onnxruntime's `quantizedbias_add`) is made float as well
    int_outs = {o for n in nodes if n.op_type in ("Conv", "MatMul") and n.input[1].endswith("_float")
                for o in n.output}
    made = {n.output[0]: n for n in nodes}
    for n in nodes:
        if n.op_type == "Add" and any(i in int_outs for i in n.input):
            for i in n.input:
                src = made.get(i)
                if src is not None and src.op_type == "Cast":
                    for a in src.attribute:
                        if a.name == "to":
                            a.i = onnx.TensorProto.FLOAT
                elif i in inits and inits[i].data_type != onnx.TensorProto.FLOAT:
                    new_inits.append(numpy_helper.from_array(arr(i).astype(np.float32), i))
            int_outs.update(n.output)
    for n in nodes:
        for k, name in enumerate(n.input):
            while name in renames:
                name = renames[name]
            n.input[k] = name
    for o in graph.output:
        while o.name in renames:
            o.name = renames[o.name]
    consumed = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    nodes = [n for n in nodes if n.op_type != "QuantizeLinear" or any(o in consumed for o in n.output)]
    used = {t.name for t in new_inits}
    kept_inits = [t for t in graph.initializer if t.name not in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + new_inits)
    _drop_unused_initializers(model)
    # value_info may still type the old integer tensors: drop it, shape inference redoes it
    del graph.value_info[:]
    if dq_weights:
        notes.append(f"{dq_weights} quantized weight tensor(s) dequantized into float initializers")
    if qdq_pairs:
        notes.append(f"{qdq_pairs} QuantizeLinear/DequantizeLinear pair(s) on activations replaced by the Clip to their range")
    if dyn:
        notes.append(f"dynamic quantisation ({dyn} DynamicQuantizeLinear) replaced by float Conv/MatMul")
    return notes


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def is_quantized(model: onnx.ModelProto) -> bool:
    ops = {"DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
           "QLinearConv", "QLinearMatMul"}
    return any(n.op_type in ops for n in model.graph.node)


# ----------------------------------------------------------------------------- static shapes
def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def fix_input_shape(model: onnx.ModelProto, name: str, shape: tuple[int, ...]) -> bool:
    """Set the dims of graph input `name` to `shape`, all but the batch axis (a dynamic batch stays
    dynamic, so batched inversions and parity checks keep working); True when something changed."""
    for vi in model.graph.input:
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) != len(shape):
                return False
            changed = False
            for axis, (d, s) in enumerate(zip(dims, shape)):
                if axis == 0 and not d.HasField("dim_value"):
                    continue
                if not (d.HasField("dim_value") and d.dim_value == s):
                    d.Clear()
                    d.dim_value = int(s)
                    changed = True
            return changed
    return False


def has_dynamic_shapes(model: onnx.ModelProto) -> bool:
    """Dynamic axes past the batch axis, or shape computations to fold."""
    return any(None in _dims(vi)[1:] for vi in model.graph.input) or any(
        n.op_type == "Shape" for n in model.graph.node)


def fold_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """`_fold_shapes`, keeping each surviving node's metadata (the module path torch.onnx records on it), which
    the folding tools drop."""
    metadata = {n.name: list(n.metadata_props) for n in model.graph.node if n.name and n.metadata_props}
    folded = _fold_shapes(model)
    if metadata:
        for node in folded.graph.node:
            if node.name in metadata and not node.metadata_props:
                node.metadata_props.extend(metadata[node.name])
    return folded


def _fold_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant-fold shape computations at the fixed input shapes.

    onnxslim without its fusions (node names and ops stay; measured on the corpus it is the one
    tool that makes every file convert, e.g. the PP-OCRv4 recogniser's BatchNorm after a
    Reshape); fallback onnxsim without optimisations, then onnx shape inference alone."""
    try:
        import onnxslim
        from onnxslim.core.pattern.registry import DEFAULT_FUSION_PATTERNS

        return onnxslim.slim(onnx.ModelProto.FromString(model.SerializeToString()),
                             skip_fusion_patterns=list(DEFAULT_FUSION_PATTERNS), model_check=False)
    except Exception as exc:
        log.info("onnxslim could not fold the model (%s); trying onnxsim", exc)
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model, check_n=0, perform_optimization=False, skip_fuse_bn=True)
        if ok:
            return simplified
    except Exception as exc:  # onnxsim not installed, or an op it cannot run
        log.info("onnxsim could not simplify the model (%s); using shape inference only", exc)
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        return model


def float_biases(model: onnx.ModelProto) -> int:
    """After folding: an integer initializer (a quantized bias folded to a constant) added to the
    output of a Conv/MatMul becomes float, as the integer op it was added to now is."""
    inits = {t.name: t for t in model.graph.initializer}
    made = {o: n for n in model.graph.node for o in n.output}
    changed = 0
    for n in model.graph.node:
        if n.op_type != "Add" or not any(made.get(i) is not None and made[i].op_type in ("Conv", "MatMul", "Add")
                                         for i in n.input):
            continue
        for i in n.input:
            t = inits.get(i)
            if t is not None and t.data_type in (onnx.TensorProto.INT32, onnx.TensorProto.INT64):
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), i))
                changed += 1
    return changed
