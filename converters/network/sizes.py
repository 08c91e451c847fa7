"""Input sizes a graph runs at: for a --size the model refuses, the nearest one it takes.

Checked by running the file itself with onnxruntime on zeros at each candidate size (batch 1): only after a
size has failed, so loading at a good size costs nothing. Candidates are multiples of 8, 16, 32 and 64
around the request (the strides CNNs constrain sizes by) and the size the file declares."""
from __future__ import annotations

import logging

import numpy as np
import onnx

from converters.errors import first_line

log = logging.getLogger(__name__)


def size_problem(model_bytes: bytes, input_name: str, shape: tuple[int, ...]) -> str | None:
    """Why the model cannot run on an input of `shape` (None: it runs)."""
    import onnxruntime as ort

    from converters.network.normalise import fix_input_shape

    model = onnx.ModelProto.FromString(model_bytes)
    fix_input_shape(model, input_name, shape)
    del model.graph.value_info[:]  # shapes inferred at another size
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        elem = model.graph.input[[i.name for i in model.graph.input].index(input_name)].type.tensor_type.elem_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.float32
        session.run(None, {input_name: np.zeros(shape, dtype)})
    except Exception as exc:  # onnxruntime raises its own types for shape mismatches
        return _ort_reason(str(exc))
    return None


def _ort_reason(text: str) -> str:
    """onnxruntime's message without its source path: the node and what it said."""
    import re

    node = re.search(r"Name:'([^']*)'", text)
    if "Status Message:" in text:
        said = text.split("Status Message:")[-1].strip()
        if said.startswith("/"):  # /onnxruntime_src/.../reshape_helper.h:47 ... the reason
            said = said.split(" ", 1)[-1]
        said = first_line(said, limit=200)
        return f"node {node.group(1)!r}: {said}" if node else said
    return first_line(text.split("] : ")[-1] if "] : " in text else text, limit=200)


def nearest_size(model_bytes: bytes, input_name: str, spec, requested: tuple[int, int],
                 declared: tuple[int, int] | None = None, tries: int = 8) -> tuple[int, int] | None:
    """The size closest to `requested` (summed distance of the sides) the model runs at, among multiples of 8..64 and `declared`."""
    h, w = requested
    candidates = {declared} if declared and all(declared) else set()
    for m in (8, 16, 32, 64):
        for ch in {max(m, round(h / m) * m), max(m, -(-h // m) * m)}:
            for cw in {max(m, round(w / m) * m), max(m, -(-w // m) * m)}:
                candidates.add((ch, cw))
    candidates.discard((h, w))
    for size in sorted(candidates, key=lambda s: (abs(s[0] - h) + abs(s[1] - w), s))[:tries]:
        if size_problem(model_bytes, input_name, spec.with_size(*size).tensor_shape(1)) is None:
            return size
    return None
