"""Every name a user may type for a node, and the one function that resolves them.

Names come from: the exact ONNX node name; its output tensor names; the onnx2torch module
name; the PyTorch module path recovered from the legacy exporter's scopes (`layer2.1`,
`features.10`); scope names of other exporters (Keras layer names kept by tf2onnx,
`block3_conv1`); and canonical VGG/AlexNet names (`conv3_1`, `relu3_1`, `pool3`, `fc6`)
found by walking the graph, so they mean the same on a Caffe, Keras or PyTorch export.
`conv3_1` is the block output a user of that framework sees: after BN and ReLU; its parts
are `conv3_1.conv`, `conv3_1.bn`, `conv3_1.relu`.
"""
from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass, field

from converters.errors import NodeError
from converters.network.edges import consumers


@dataclass
class NodeInfo:
    """One addressable point of a network: an ONNX node and what it produces."""

    index: int
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    module_name: str  # the onnx2torch submodule: a generated identifier (converters.network.safe_names)
    shape: tuple[int, ...] | None = None  # first output, at the network's input size
    aliases: list[str] = field(default_factory=list)
    receptive_field: int | None = None  # pixels along one side; None: the whole image
    on_data_path: bool = True  # False for shape computations (Shape, Gather, Constant ...)
    unsupported: str | None = None  # why this node cannot be inverted (not converted), or None

    def describe(self) -> dict:
        return {"name": self.name, "op": self.op_type, "outputs": self.outputs,
                "shape": list(self.shape) if self.shape else None, "aliases": self.aliases,
                "receptive_field": self.receptive_field,
                **({"unsupported": self.unsupported} if self.unsupported else {})}


_SCOPE_SUFFIX = re.compile(r"_\d+$")
CHAIN_OPS = ("BatchNormalization", "Relu", "LeakyRelu", "PRelu", "Clip", "LRN")
POOL_OPS = ("MaxPool", "AveragePool")
FC_OPS = ("Gemm", "MatMul")
MERGE_OPS = ("Add", "Sum", "Concat", "Mul", "Sub", "Max")
AFFINE_OPS = ("Mul", "Add", "Sub", "Div")  # by a constant, they stay in a conv/fc chain


def torch_module_path(node_name: str) -> str | None:
    """`/layer2/layer2.1/conv1/Conv` (torch.onnx legacy scopes) -> `layer2.1.conv1`."""
    if not node_name.startswith("/"):
        return None
    parts = node_name.strip("/").split("/")[:-1]
    path = ""
    for part in parts:
        if path and part.startswith(path + "."):
            path = part
        else:
            path = f"{path}.{part}" if path else part
    return path or None


def scope_names(node_name: str) -> list[tuple[str, str]]:
    """`vgg16_1/block3_conv1_1/Relu` (tf2onnx keeps Keras name scopes) -> (`block3_conv1_1`, its path
    `vgg16_1/block3_conv1_1`), (`block3_conv1`, the same path), ...: each scope name with the scope it names."""
    if node_name.startswith("/") or "/" not in node_name:
        return []
    out = []
    for path in node_name.split(";"):  # TFLite joins the names of the ops it fused with ';'
        parts = path.split("/")[:-1]
        for k, part in enumerate(parts):
            prefix = "/".join(parts[: k + 1])
            out.append((part, prefix))
            base = _SCOPE_SUFFIX.sub("", part)
            if base != part:
                out.append((base, prefix))
    return list(dict.fromkeys(out))


def _follow_chain(start: NodeInfo, consumers, stop_ops=("LRN",), constants: set[str] = frozenset()) -> list[NodeInfo]:
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


def canonical_aliases(nodes: list[NodeInfo], initializers: set[str]) -> dict[str, str]:
    """conv3_1 / relu3_1 / pool3 / fc6 style names for plain-chain nets (VGG, AlexNet)."""
    trunk_end = next((i for i, n in enumerate(nodes) if n.op_type in FC_OPS + ("Flatten",)), len(nodes))
    for node in nodes[:trunk_end]:
        live = [t for t in node.inputs if t and t not in initializers]
        if node.op_type in MERGE_OPS and len(live) > 1:
            return {}  # branches: ResNet, Inception ... those use module paths / layer names
    readers = consumers(nodes)
    constants = set(initializers) | {t for n in nodes if n.op_type == "Constant" for t in n.outputs}
    blocks: list[list[list[NodeInfo]]] = [[]]  # block -> convs -> chain
    pools: list[NodeInfo | None] = []
    norms: dict[int, NodeInfo] = {}
    fcs: list[list[NodeInfo]] = []
    for node in nodes:
        if node.op_type == "Conv" and len(node.outputs) == 1:
            blocks[-1].append(_follow_chain(node, readers, constants=constants))
        elif node.op_type == "LRN" and blocks[-1]:
            norms[sum(len(b) for b in blocks)] = node
        elif node.op_type in POOL_OPS and blocks[-1]:
            pools.append(node)
            blocks.append([])
        elif node.op_type in FC_OPS and any(t in initializers for t in node.inputs):
            fcs.append(_follow_chain(node, readers, constants=constants))
    blocks = [b for b in blocks if b]
    if not blocks:
        return {}
    vgg_style = len(blocks[0]) >= 2 or any(len(b) >= 3 for b in blocks)
    names: dict[str, str] = {}

    def name_chain(base: str, chain: list[NodeInfo], first_part: str, act_name: str) -> None:
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
                names.setdefault(act_name, part.name)

    count = 0
    for b, convs in enumerate(blocks, 1):
        for i, chain in enumerate(convs, 1):
            count += 1
            suffix = f"{b}_{i}" if vgg_style else f"{count}"
            name_chain(f"conv{suffix}", chain, "conv", f"relu{suffix}")
            if count in norms:
                names[f"norm{count}"] = norms[count].name
        if b <= len(pools):
            names[f"pool{b if vgg_style else count}"] = pools[b - 1].name
    start = (len(blocks) if vgg_style else count) + 1
    for k, chain in enumerate(fcs):
        name_chain(f"fc{start + k}", chain, "fc", f"relu{start + k}")
    return names


def assign_aliases(nodes: list[NodeInfo], initializers: set[str]) -> None:
    """Fill each node's `aliases`, most specific first."""
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        node.aliases = []  # module names are generated identifiers (safe_names), not user names
    for alias, target in canonical_aliases(nodes, initializers).items():
        by_name[target].aliases.append(alias)
    # A module path or scope names its last node: `layer2.1` -> the block's final ReLU. A scope name that
    # several scopes share (`batchnorm` inside every Keras BatchNormalization, `dense_1` as a layer and as
    # the renamed `dense_1_1`) names the last node of each: resolving it lists them (NameTable).
    last: dict[str, dict[str, NodeInfo]] = defaultdict(dict)
    for node in nodes:
        path = torch_module_path(node.name)
        if path:
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                last[".".join(parts[:k])]["." + ".".join(parts[:k])] = node
        for scope, prefix in scope_names(node.name):
            last[scope][prefix] = node
    taken = {n.name for n in nodes} | {a for n in nodes for a in n.aliases}
    for alias, scopes in last.items():
        if alias not in taken:
            for node in {n.name: n for n in scopes.values()}.values():
                node.aliases.append(alias)


class NameTable:
    """Resolves any accepted name to exactly one node, or says what the user may have meant."""

    def __init__(self, nodes: list[NodeInfo]):
        self.nodes = nodes
        self._index: dict[str, list[NodeInfo]] = defaultdict(list)
        for node in nodes:
            keys = [node.name, *node.outputs, *node.aliases]
            for key in dict.fromkeys(keys):
                self._index[key].append(node)

    def resolve(self, name: str) -> NodeInfo:
        hits = self._index.get(name)
        if hits and len(hits) == 1:
            return hits[0]
        if hits:
            # A name that is one node's output tensor and another node's name (a Caffe layer
            # `conv3_1` whose blob, updated in place, ends after its ReLU) means the tensor, as
            # it does for `Network.forward`; a block name (`conv3_1`) beats the node name of
            # one of its own parts (`conv3_1.conv`).
            for prefer in (lambda n: name in n.outputs,
                           lambda n: name in n.aliases and all(
                               o is n or any(a.startswith(name + ".") for a in o.aliases) for o in hits)):
                chosen = [n for n in hits if prefer(n)]
                if len(chosen) == 1:
                    return chosen[0]
            listed = ", ".join(n.name for n in hits[:8]) + (f" and {len(hits) - 8} more" if len(hits) > 8 else "")
            raise NodeError(f"node name {name!r} is ambiguous: it matches {listed}; use one of those names")
        close = difflib.get_close_matches(name, list(self._index), n=6, cutoff=0.5)
        hint = f"closest names: {', '.join(close)}" if close else "run `invert-onnx nodes MODEL` to list them"
        raise NodeError(f"no node named {name!r} in this model; {hint}")
