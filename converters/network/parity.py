"""Parity of a converted `Network` against onnxruntime, at any of its nodes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch

if TYPE_CHECKING:
    from converters.network.network import Network


@dataclass
class ParityReport:
    """Relative error max|torch - onnxruntime| / max|onnxruntime| per compared node."""

    errors: dict[str, float]

    @property
    def max_error(self) -> float:
        return max(self.errors.values()) if self.errors else 0.0

    def worst(self) -> tuple[str, float]:
        return max(self.errors.items(), key=lambda kv: kv[1])


def check_parity(network: "Network", x: torch.Tensor | None = None, nodes: list[str] | None = None,
                 op_types: tuple[str, ...] | None = None) -> ParityReport:
    """Compare a Network's torch graph with onnxruntime at the given nodes (default: all outputs)."""
    import onnxruntime as ort

    if nodes is None and op_types is None:
        chosen = []
    elif nodes is None:
        chosen = [n for n in network.nodes if n.op_type in op_types]
    else:
        chosen = [network.resolve(n) for n in nodes]
    x = network.example_input(seed=0) if x is None else x
    # a model cut before an op nothing converts (a custom op onnxruntime cannot load either): its convertible part
    cut = any(n.unsupported for n in network.nodes)
    chosen = [n for n in chosen if not n.unsupported]
    probe = onnx.ModelProto.FromString((network.converted_model if cut else network.onnx_model).SerializeToString())
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    except Exception:
        types = {}
    floating = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    tensors = tuple(n.outputs[0] for n in chosen if types.get(n.outputs[0], onnx.TensorProto.FLOAT) in floating)
    tensors = tensors or tuple(network.output_names)
    present = {o.name for o in probe.graph.output}
    for t in tensors:
        if t not in present:
            elem = types.get(t, onnx.TensorProto.FLOAT)
            probe.graph.output.append(onnx.helper.make_tensor_value_info(t, elem, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ref = session.run(list(tensors), {network.input_name: x.numpy().astype(np.float32)})
    with torch.no_grad():
        got = network.cut(tensors)(x.to(network.dtype))
    errors = {}
    for tensor, a, b in zip(tensors, got, ref):
        name = network._producer[tensor][0].name if tensor in network._producer else tensor
        scale = max(float(np.abs(b).max()), 1e-12)
        errors[name] = float(np.abs(a.double().numpy() - b).max()) / scale
    return ParityReport(errors)
