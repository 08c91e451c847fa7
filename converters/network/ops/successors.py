"""Newer versions of ops onnx2torch converts at an older version, where what changed cannot matter here.

onnx2torch 1.5 registers converters up to opset 17; torch.onnx's default exporter writes opset 20.
Moving a whole graph down with ONNX's version converter fails on ops that are new (Gelu), so each
op is taken at the file's own version instead: a version whose schema only widened the types
(bfloat16, float8, int4) reuses onnx2torch's converter as it is; a version that added an input or
an attribute reuses it only where that addition is unused, and refuses otherwise (the refusal is
named with its node by the unsupported-op check)."""
from __future__ import annotations

from onnx2torch.node_converters import registry

from converters.network.ops import register

# op type -> (onnx2torch's version, newer versions that only widened the types)
TYPES_ONLY = {
    "Cast": (13, (19, 21)), "Constant": (13, (19, 21)), "Identity": (16, (19, 21)), "Shape": (15, (19, 21)),
    "Flatten": (13, (21,)), "Transpose": (13, (21,)), "Unsqueeze": (13, (21,)), "ConstantOfShape": (9, (20, 21)),
    "Equal": (13, (19,)),
}


def _unused(node, inputs_from: int | None = None, **defaults) -> str | None:
    """Why the node uses a later addition (an input at position >= inputs_from, an attribute away from
    its default), or None."""
    if inputs_from is not None and any(node.input_values[inputs_from:]):
        return f"input {inputs_from + 1}"
    for attr, default in defaults.items():
        value = node.attributes.get(attr, default)
        if value != default:
            return f"{attr}={value!r}"
    return None


# op type -> (onnx2torch's version, newer versions, what those versions added that must be unused)
ADDED = {
    "Pad": (13, (18, 19, 21), lambda n: _unused(n, 3) or ("mode='wrap'" if n.attributes.get("mode") == "wrap" else None)),
    "AveragePool": (11, (19,), lambda n: None if all(d == 1 for d in n.attributes.get("dilations", [1])) else "dilations"),
    "Resize": (13, (18, 19), lambda n: _unused(n, antialias=0, keep_aspect_ratio_policy="stretch")
               or ("axes" if "axes" in n.attributes else None)
               or ("half_pixel_symmetric" if n.attributes.get("coordinate_transformation_mode") == "half_pixel_symmetric"
                   else None)),
}


def _onnx2torch(op_type: str, version: int):
    return registry._CONVERTER_REGISTRY[registry.OperationDescription("", op_type, version)]


def _guarded(op_type: str, old, check):
    def convert(node, graph):
        reason = check(node)
        if reason:
            raise NotImplementedError(f"{op_type} with {reason} is not implemented")
        return old(node, graph)
    return convert


for _op, (_old, _new) in TYPES_ONLY.items():
    register(_op, *_new)(_onnx2torch(_op, _old))
for _op, (_old, _new, _check) in ADDED.items():
    register(_op, *_new)(_guarded(_op, _onnx2torch(_op, _old), _check))
