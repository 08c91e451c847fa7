"""The sub-graph onnx2torch can convert: every node whose op, and every op upstream of it, has a
converter. One unsupported op (an LSTM, a decoder's post-processing) then blocks only the nodes
that depend on it; a backbone Conv before it converts and inverts whatever follows.
"""
from __future__ import annotations

import onnx
from onnx import helper


def convertible_subgraph(model: onnx.ModelProto, unsupported: dict[str, str]) -> tuple[onnx.ModelProto, dict[str, str]]:
    """(the model cut to the convertible nodes, {node name: why it cannot be inverted}).

    unsupported: {node name: why onnx2torch cannot convert it}. A node downstream of one
    cannot be inverted either: its reason names the blocking node. The cut's outputs are the
    model's outputs it still computes plus every tensor a removed node reads from it.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    reasons: dict[str, str] = {}
    for node in graph.node:  # graph order is topological
        if node.name in unsupported:
            reasons[node.name] = unsupported[node.name]
            continue
        for t in node.input:
            up = producer.get(t)
            if up is not None and up.name in reasons:
                root = reasons[up.name]
                reasons[node.name] = root if root.startswith("after ") else f"after {up.op_type} {up.name!r} ({root})"
                break
    if not reasons:
        return model, reasons
    keep = [n for n in graph.node if n.name not in reasons]
    kept_outputs = {o for n in keep for o in n.output}
    wanted: list[str] = [o.name for o in graph.output if o.name in kept_outputs]
    for n in graph.node:
        if n.name in reasons:
            wanted += [t for t in n.input if t in kept_outputs and t not in wanted]
    if not wanted:  # nothing convertible reaches anything: keep the last kept node's outputs
        wanted = [o for o in keep[-1].output] if keep else []
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[:]
    cut.graph.node.extend(keep)
    del cut.graph.output[:]
    typed = {v.name: v for v in list(graph.value_info) + list(graph.output)}
    for name in wanted:
        cut.graph.output.append(typed[name] if name in typed else helper.make_empty_tensor_value_info(name))
    used = {i for n in keep for i in n.input}
    inits = [t for t in cut.graph.initializer if t.name in used]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(inits)
    return cut, reasons
