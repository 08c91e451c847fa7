"""Names inside a model file are untrusted data: they never reach generated code.

onnx2torch names its submodules after ONNX nodes and torch.fx writes those names into the
Python source it generates and runs (`getattr(self, "NAME")`, unescaped). `safe_copy` gives
a copy of the model in which every node and every value (graph inputs and outputs,
initializers, value_info, node inputs and outputs, in sub-graphs too) has a generated
identifier (`n12`, `t34`); onnx2torch only ever sees that copy. The mapping back to the
original names is kept, so users keep seeing and typing the original names (DESIGN.md).

`printable` escapes a name for a terminal or a one-line message (control characters,
escape sequences and line breaks become visible `\\x1b`-style escapes).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class SafeNames:
    """original -> generated identifiers for nodes (in graph order) and values."""

    nodes: list[str] = field(default_factory=list)  # the safe name of model.graph.node[i]
    values: dict[str, str] = field(default_factory=dict)  # original value name -> safe

    def original_values(self) -> dict[str, str]:
        return {safe: original for original, safe in self.values.items()}


def _graphs(graph: onnx.GraphProto):
    """The graph and every sub-graph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _graphs(g)


def safe_copy(model: onnx.ModelProto) -> tuple[onnx.ModelProto, SafeNames]:
    """A copy of `model` whose node and value names are all generated identifiers."""
    safe = onnx.ModelProto.FromString(model.SerializeToString())
    names = SafeNames()

    def value(name: str) -> str:
        if not name:  # an omitted optional input stays omitted
            return name
        if name not in names.values:
            names.values[name] = f"t{len(names.values)}"
        return names.values[name]

    node_count = 0
    for depth, graph in enumerate(_graphs(safe.graph)):
        graph.name = f"g{depth}"
        for info in (*graph.input, *graph.output, *graph.value_info):
            info.name = value(info.name)
        for tensor in graph.initializer:
            tensor.name = value(tensor.name)
        for sparse in graph.sparse_initializer:
            sparse.values.name = value(sparse.values.name)
            sparse.indices.name = value(sparse.indices.name)
        for node in graph.node:
            name = f"n{node_count}"
            node_count += 1
            if graph is safe.graph:
                names.nodes.append(name)
            node.name = name
            if node.domain in DEFAULT_DOMAINS:
                node.domain = ""  # onnx2torch puts the domain into module names too
            node.input[:] = [value(v) for v in node.input]
            node.output[:] = [value(v) for v in node.output]
            node.doc_string = ""
        graph.doc_string = ""
    for info in (*safe.graph.input, *safe.graph.output):
        info.doc_string = ""
    return safe, names


def printable(name: object, limit: int | None = None) -> str:
    """`name` with control characters and other non-printables escaped (`\\x1b]0;...`)."""
    text = str(name)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
