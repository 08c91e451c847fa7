"""Chains of a layer: a Conv or fully connected op with the BatchNorm, bias, scale and activation after it,
and the part names (`.conv`, `.bn`, `.relu`) every canonical naming scheme gives them (names.py, resnet_names.py)."""
from __future__ import annotations

CHAIN_OPS = ("BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "LRN")
POOL_OPS = ("MaxPool", "AveragePool")
FC_OPS = ("Gemm", "MatMul")
MERGE_OPS = ("Add", "Sum", "Concat", "Mul", "Sub", "Max")
AFFINE_OPS = ("Mul", "Add", "Sub", "Div")  # by a constant, they stay in a conv/fc chain


def follow_chain(start, consumers, stop_ops=("LRN",), constants: set[str] = frozenset()) -> list:
    """The node, then each single consumer that is BN/activation, or Mul/Add/Sub/Div by a constant
    (BatchNorm as tf2onnx writes Keras' tf.nn.batch_normalization, Caffe Scale, a separate bias)."""
    chain = [start]
    while True:
        nxt = consumers.get(chain[-1].outputs[0], [])
        if len(nxt) != 1:
            return chain
        node = nxt[0]
        affine = (node.op_type in AFFINE_OPS and len(node.inputs) == 2
                  and all(t == chain[-1].outputs[0] or t in constants for t in node.inputs))
        if (node.op_type in CHAIN_OPS and node.op_type not in stop_ops) or affine:
            chain.append(node)
        else:
            return chain


def name_chain(names: dict[str, str], base: str, chain: list, first_part: str, act_name: str | None = None) -> None:
    """names[base] = the chain's last node; base.conv (or .fc), .bn and .relu its parts; act_name (relu3_1) the ReLU."""
    names[base] = chain[-1].name
    names[f"{base}.{first_part}"] = chain[0].name
    for k, part in enumerate(chain[1:], 1):
        if part.op_type == "BatchNormalization":
            names[f"{base}.bn"] = part.name
        elif part.op_type in AFFINE_OPS:
            if k == 1 and part.op_type == "Add" and chain[0].op_type == "MatMul":
                names[f"{base}.{first_part}"] = part.name  # MatMul + bias Add: the layer's output
            else:
                names[f"{base}.bn"] = part.name  # BN as Mul + Add (Keras via tf2onnx), Caffe Scale
        elif part.op_type in ("Relu", "LeakyRelu", "PRelu", "Clip"):
            names[f"{base}.relu"] = part.name
            if act_name:
                names.setdefault(act_name, part.name)
