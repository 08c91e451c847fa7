"""Reading an ONNX file safely and making it ready for onnx2torch.

`read_onnx` checks the file (external data may not point outside the model's folder);
`prepare` gives every node a stable unique name and moves a newer model to the opset
onnx2torch converts, naming the ops it cannot convert.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import external_data_helper

from converters.errors import ModelError, first_line, unsupported_ops
from converters.network.memory import check_external_data

OPSET = 17  # the opset every front-end writes; onnx2torch registers converters reliably up to here (DESIGN.md)


def _tensors(model: onnx.ModelProto):
    """Every TensorProto of the model: initializers and Constant attributes, in sub-graphs too."""
    def graph_tensors(graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.GRAPH:
                    yield from graph_tensors(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for g in attr.graphs:
                        yield from graph_tensors(g)
    yield from graph_tensors(model.graph)


def read_onnx(path: str | Path, max_memory: float | None = None) -> onnx.ModelProto:
    """Read and check an ONNX file; external data may not point outside the model's folder, and its
    lengths are checked against the tensors' shapes and `max_memory` (bytes; None: half the physical
    memory) before it is read."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and others for junk bytes
        raise ModelError(f"{path} is not a readable ONNX model ({type(exc).__name__}); "
                         "export it again or check the file is complete") from None
    if not model.graph.node:
        raise ModelError(f"{path} holds no ONNX graph (empty or not an ONNX file)")
    folder = path.resolve().parent
    external, inline = [], 0
    for tensor in _tensors(model):
        if external_data_helper.uses_external_data(tensor):
            entry = {e.key: e.value for e in tensor.external_data}
            location = entry.get("location", "")
            target = (folder / location).resolve()
            if folder not in target.parents:
                raise ModelError(f"{path}: tensor {tensor.name!r} points to external data outside "
                                 f"the model's folder ({location}); refusing to read it")
            if not target.is_file():
                raise ModelError(f"{path}: external data file {location} is missing")
            try:
                offset = int(entry.get("offset") or 0)
                held = int(entry["length"]) if entry.get("length") else target.stat().st_size - offset
            except ValueError:
                raise ModelError(f"{path}: tensor {tensor.name!r} has a malformed external-data entry") from None
            external.append((tensor, min(held, max(target.stat().st_size - offset, 0))))
        else:
            inline += len(tensor.raw_data)
    if external:  # sizes checked before a byte is read: a sparse file may claim gigabytes
        check_external_data(external, inline, path, max_memory)
    try:
        if external:  # the checker reads the file itself: an in-memory proto over 2 GB cannot be serialised
            onnx.checker.check_model(str(path))
        external_data_helper.load_external_data_for_model(model, str(folder))
        if not external:
            onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{path} fails the ONNX checker: {first_line(exc)}") from None
    return model


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes stable names (`Conv_3`: op type and position) and make names unique."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def _default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _unsupported(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    from onnx2torch.node_converters import get_converter

    from converters.network import ops  # noqa: F401  (registers the ops this project adds)

    opsets = {o.domain: o.version for o in model.opset_import}
    bad = []
    for node in model.graph.node:
        try:
            get_converter(domain=node.domain, operation_type=node.op_type, version=opsets.get(node.domain, 1))
        except NotImplementedError:
            bad.append(node)
    return bad


def _convertible(model: onnx.ModelProto, strict: bool = True) -> onnx.ModelProto:
    """The model, moved to opset 17 when newer ops would have no onnx2torch converter.
    strict: raise for ops left without a converter (else `extract` cuts the model before them)."""
    bad = _unsupported(model)
    if bad and _default_opset(model) > OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:
            raise ModelError(f"opset {_default_opset(model)} model could not be moved to opset "
                             f"{OPSET} for conversion ({exc}); export at opset {OPSET}") from None
        bad = _unsupported(model)
    if bad and strict:
        raise ModelError(unsupported_ops(bad, f"op (opset {_default_opset(model)})",
                                         "onnx2torch has no converter for it: cut the model before it or replace the op"))
    return model


def prepare(model: onnx.ModelProto, strict: bool = True) -> onnx.ModelProto:
    """A copy of `model` ready for onnx2torch: nodes named, opset onnx2torch converts.
    strict=False leaves unsupported ops in (Network converts the sub-graph before them)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())  # never edit the caller's proto
    _name_nodes(model)
    return _convertible(model, strict)


def unsupported_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """{node name: why} for the nodes whose op onnx2torch (with converters.network.ops) has no converter for."""
    return {n.name: f"onnx2torch has no converter for {n.op_type}" for n in _unsupported(model)}


def refused_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """{node name: why} for the nodes whose converter exists but refuses them (an attribute it does not implement:
    onnx2torch's Pad with mode=wrap, Resize with antialias ...). Every converter is built once: run it only where
    `onnx2torch.convert` failed."""
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    from converters.network.safe_names import printable, safe_copy

    safe, names = safe_copy(model)
    graph = OnnxGraph(safe.graph)
    opsets = {o.domain or "": o.version for o in safe.opset_import}
    original = {n: node.name for n, node in zip(names.nodes, model.graph.node)}
    refused: dict[str, str] = {}
    for name, node in graph.nodes.items():
        try:
            get_converter(domain=node.domain, operation_type=node.operation_type,
                          version=opsets.get(node.domain, 1))(node, graph)
        except Exception as exc:  # NotImplementedError, or a converter that fails on this node
            refused[original[name]] = f"onnx2torch cannot convert this {node.operation_type}: {printable(first_line(exc))}"
    return refused
