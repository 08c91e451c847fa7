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

import ast
import difflib
import re
from collections import defaultdict
from dataclasses import dataclass, field

from converters.errors import NodeError
from converters.network.chains import (
    FC_OPS,
    MERGE_OPS,
    POOL_OPS,
    follow_chain,
    name_chain,
)
from converters.network.edges import consumers
from converters.network.resnet_names import resnet_aliases


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
    scope: str | None = None  # the PyTorch module path the exporter recorded in the node's metadata, or None

    def describe(self) -> dict:
        return {"name": self.name, "op": self.op_type, "outputs": self.outputs,
                "shape": list(self.shape) if self.shape else None, "aliases": self.aliases,
                "receptive_field": self.receptive_field,
                **({"unsupported": self.unsupported} if self.unsupported else {})}


_SCOPE_SUFFIX = re.compile(r"_\d+$")
# a canonical layer name (not a part of one): conv3_1, relu3_1, pool3, norm1, fc6, fc; res3b, res3 (ResNets)
CANONICAL = re.compile(r"(conv\d+(_\d+)?|relu\d+(_\d+)?|pool\d|norm\d|fc\d*|res\d([a-z]\d*)?)")


def canonical_name(node: NodeInfo) -> str | None:
    """The node's canonical layer name (the first, the most specific), or None."""
    return next((a for a in node.aliases if CANONICAL.fullmatch(a)), None)



def torch_module_path(node_name: str) -> str | None:
    """`/layer2/layer2.1/conv1/Conv` (torch.onnx legacy scopes) -> `layer2.1.conv1`."""
    if not node_name.startswith("/"):
        return None
    parts = node_name.strip("/").split("/")[:-1]
    path = ""
    for part in parts:
        last = path.rsplit(".", 1)[-1]
        if path and part.startswith(path + "."):  # `layer2` then `layer2.1`
            path = part
        elif path and part.startswith(last + "."):  # `layer2.0.downsample` then `downsample.0`
            path = path[: len(path) - len(last)] + part
        else:
            path = f"{path}.{part}" if path else part
    return path or None


def recorded_module_path(metadata: dict[str, str]) -> str | None:
    """The module path torch.onnx's default (dynamo) exporter records on a node: `pkg.torch.onnx.name_scopes`
    `['', 'layer2', 'layer2.1', 'layer2.1.relu', 'relu_3']` beside `pkg.torch.onnx.class_hierarchy` (one class
    per scope; the last is the aten op's) -> `layer2.1.relu`. Metadata is untrusted data: parsed as a literal
    of bounded size, anything else gives None."""
    scopes, classes = (_literal_strings(metadata.get(k)) for k in (NAME_SCOPES, CLASS_HIERARCHY))
    if not scopes:
        return None
    if classes and len(classes) == len(scopes):
        modules = [s for s, c in zip(scopes, classes) if s and not c.startswith(("aten.", "<built-in"))]
    else:
        modules = [s for s in scopes[:-1] if s]  # the last scope is the op
    return modules[-1] if modules else None


NAME_SCOPES, CLASS_HIERARCHY = "pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy"


def _literal_strings(text: str | None) -> list[str] | None:
    if not text or len(text) > 4096:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


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


def canonical_aliases(nodes: list[NodeInfo], initializers: set[str]) -> dict[str, str]:
    """conv3_1 / relu3_1 / pool3 / fc6 style names for plain-chain nets: VGG's blocks (conv1_1 ... conv5_3, pool1 ...
    pool5, fc6 ... fc8) and AlexNet's numbered layers (conv1 ... conv5, norm1, norm2, pool1, pool2, pool5, fc6 ... fc8),
    as the papers and Caffe's model zoo name them."""
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
            blocks[-1].append(follow_chain(node, readers, constants=constants))
        elif node.op_type == "LRN" and any(blocks):
            norms[sum(len(b) for b in blocks)] = node
        elif node.op_type in POOL_OPS and blocks[-1]:
            pools.append(node)
            blocks.append([])
        elif node.op_type in FC_OPS and any(t in initializers for t in node.inputs):
            fcs.append(follow_chain(node, readers, constants=constants))
    blocks = [b for b in blocks if b]
    if not blocks:
        return {}
    # VGG (11 to 19, with or without BN) pools after each of its five blocks of 3x3 convs: conv3_1, pool3. AlexNet
    # and CaffeNet pool three times (after conv1, conv2, conv5) and number their layers: conv3, pool5, fc6.
    vgg_style = len(pools) >= 4
    names: dict[str, str] = {}

    count = 0
    for b, convs in enumerate(blocks, 1):
        for i, chain in enumerate(convs, 1):
            count += 1
            suffix = f"{b}_{i}" if vgg_style else f"{count}"
            name_chain(names, f"conv{suffix}", chain, "conv", f"relu{suffix}")
            if count in norms:
                names[f"norm{count}"] = norms[count].name
        if b <= len(pools):
            names[f"pool{b if vgg_style else count}"] = pools[b - 1].name
    start = (len(blocks) if vgg_style else count) + 1
    for k, chain in enumerate(fcs):
        name_chain(names, f"fc{start + k}", chain, "fc", f"relu{start + k}")
    return names


def assign_aliases(nodes: list[NodeInfo], initializers: set[str]) -> None:
    """Fill each node's `aliases`, most specific first."""
    by_name = {n.name: n for n in nodes}
    for node in nodes:
        node.aliases = []  # module names are generated identifiers (safe_names), not user names
    for alias, target in (canonical_aliases(nodes, initializers) or resnet_aliases(nodes, initializers)).items():
        by_name[target].aliases.append(alias)
    # A module path or scope names its last node: `layer2.1` -> the block's final ReLU. A scope name that
    # several scopes share (`batchnorm` inside every Keras BatchNormalization, `dense_1` as a layer and as
    # the renamed `dense_1_1`) names the last node of each: resolving it lists them (NameTable).
    last: dict[str, dict[str, NodeInfo]] = defaultdict(dict)
    scoped = _layer_scopes(nodes)
    for node in nodes:
        path = node.scope or torch_module_path(node.name)
        if path:
            parts = path.split(".")
            for k in range(1, len(parts) + 1):
                last[".".join(parts[:k])]["." + ".".join(parts[:k])] = node
        for scope, prefix in scope_names(scoped.get(node.name, node.name)):
            last[scope][prefix] = node
    taken = {n.name for n in nodes} | {a for n in nodes for a in n.aliases}
    for alias, scopes in last.items():
        if alias not in taken:
            for node in {n.name: n for n in scopes.values()}.values():
                node.aliases.append(alias)


LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _layer_scopes(nodes: list[NodeInfo]) -> dict[str, str]:
    """{node: the name whose scopes it carries}. tf2onnx names the layout Transpose it puts in front of a Keras
    layer after the layer (`model/Conv1/Conv2D__6`) and leaves the layer's Conv unscoped (`Conv__382`): the
    layer's name then means its Conv, not the identity before it. Other nodes keep their own name."""
    readers = consumers(nodes)
    moved: dict[str, str] = {}
    for node in nodes:
        if node.op_type != "Transpose" or not scope_names(node.name):
            continue
        after = readers.get(node.outputs[0], [])
        if (len(after) == 1 and after[0].op_type in LAYER_OPS and not scope_names(after[0].name)
                and not torch_module_path(after[0].name) and not after[0].scope):
            moved[after[0].name], moved[node.name] = node.name, ""
    return moved


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
