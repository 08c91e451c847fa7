"""Who writes and who reads each tensor of a graph: the one producer and consumer map.

Works on ONNX `NodeProto`s (`input`/`output`) and on the `NodeInfo` table (`inputs`/`outputs`).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, TypeVar

Node = TypeVar("Node")


def node_inputs(node) -> list[str]:
    return list(node.inputs if hasattr(node, "inputs") else node.input)


def node_outputs(node) -> list[str]:
    return list(node.outputs if hasattr(node, "outputs") else node.output)


def producers(nodes: Iterable[Node]) -> dict[str, tuple[Node, int]]:
    """Tensor -> (the node that writes it, the index of that output)."""
    return {t: (node, k) for node in nodes for k, t in enumerate(node_outputs(node))}


def consumers(nodes: Iterable[Node]) -> dict[str, list[Node]]:
    """Tensor -> the nodes that read it, in graph order (a node reading it twice is listed twice)."""
    readers: dict[str, list[Node]] = defaultdict(list)
    for node in nodes:
        for tensor in node_inputs(node):
            readers[tensor].append(node)
    return dict(readers)
