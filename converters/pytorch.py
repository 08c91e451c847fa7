"""PyTorch -> ONNX with module paths in node names and BatchNorm nodes kept addressable."""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from converters.cleanup import drop_weight_identities, set_input_spec
from converters.errors import ConversionError
from converters.spec import InputSpec

log = logging.getLogger(__name__)
OPSET = 17


def export_module(module: nn.Module, path: str | Path, *, size: tuple[int, int] = (224, 224),
                  input_spec: InputSpec | None = None, opset: int = OPSET) -> Path:
    """Export an eval-mode module to ONNX (legacy exporter: node names keep module paths,
    `/layer2/layer2.1/conv1/Conv`; TrainingMode.PRESERVE without constant folding: BN stays
    a BatchNormalization node instead of being folded into the Conv before it)."""
    path = Path(path)
    module = module.eval()
    spec = (input_spec or InputSpec()).with_size(*size)
    x = torch.zeros(1, 3, *size) if spec.layout == "NCHW" else torch.zeros(1, *size, 3)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buffer, dynamo=False, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    except Exception as exc:
        raise ConversionError(f"torch.onnx could not export {type(module).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    model = onnx.load_from_string(buffer.getvalue())
    model = drop_weight_identities(model)
    model = set_input_spec(model, spec)
    model.producer_name = "invert-onnx (torch.onnx)"
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    log.info("exported %s to %s (%d nodes)", type(module).__name__, path, len(model.graph.node))
    return path
