"""TFLite custom ops that tf2onnx does not know, converted through its `custom_op_handlers`.

- `Convolution2DTransposeBias` (MediaPipe's segmentation and face models): a transposed convolution
  with bias. Inputs (x NHWC, weights OHWI, bias); its custom options are not a flexbuffer but
  MediaPipe's raw `TfLiteTransposeConvParams` struct (int32 padding: 1 SAME, 2 VALID; stride_width;
  stride_height), so they are read here from the flatbuffer and keyed by the op's output tensor.
  It becomes Transpose -> ConvTranspose(auto_pad SAME_UPPER or VALID, as TensorFlow pads) -> Transpose.
- Any other custom op (`Landmarks2TransformMatrix`, ...) is kept as a node of the `ai.invert_onnx.custom`
  domain instead of failing the whole file: the graph converts, and `Network` cuts before that node and
  names it (the layers that do not need it stay usable).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
_PADDING = {1: "SAME_UPPER", 2: "VALID"}
CUSTOM_DOMAIN = "ai.invert_onnx.custom"


def custom_ops(path: Path) -> dict[str, list[tuple[str, bytes]]]:
    """custom op name -> [(its first output tensor's name, its raw custom options)] in the file's first subgraph."""
    from tf2onnx.tflite.Model import Model

    model = Model.GetRootAsModel(path.read_bytes(), 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    found: dict[str, list[tuple[str, bytes]]] = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = codes[op.OpcodeIndex()].CustomCode()
            if not code:
                continue
            out = graph.Tensors(op.Outputs(0)).Name().decode()
            raw = op.CustomOptionsAsNumpy().tobytes() if not op.CustomOptionsIsNone() else b""
            found.setdefault(code.decode(), []).append((out, raw))
    return found


def handlers(path: Path) -> dict:
    """tf2onnx's custom_op_handlers for the custom ops of this file that are converted here."""
    from tf2onnx.convert import make_default_custom_op_handler

    ops = custom_ops(path)
    unknown = {f"TFL_{code}": (make_default_custom_op_handler(CUSTOM_DOMAIN), [])
               for code in ops if code != TRANSPOSE_CONV_BIAS and not code.startswith("Flex")}
    if TRANSPOSE_CONV_BIAS not in ops:
        return unknown
    options = {out: struct.unpack("<iii", raw[:12]) for out, raw in ops[TRANSPOSE_CONV_BIAS] if len(raw) >= 12}

    def transpose_conv_bias(ctx, node, name, args):
        if node.output[0] not in options:
            raise ValueError(f"{TRANSPOSE_CONV_BIAS} {node.name}: no padding/stride options in the file")
        padding, stride_w, stride_h = options[node.output[0]]
        if padding not in _PADDING:
            raise ValueError(f"{TRANSPOSE_CONV_BIAS} {node.name}: unknown padding {padding}")
        weights = node.inputs[1]
        if not weights.is_const():
            raise ValueError(f"{TRANSPOSE_CONV_BIAS} {node.name}: weights computed at run time")
        w = weights.get_tensor_value(as_list=False)  # (out, kh, kw, in)
        kernel = ctx.make_const(f"{node.name}/kernel_iohw", np.ascontiguousarray(w.transpose(3, 0, 1, 2)))
        ctx.replace_input(node, node.input[1], kernel.output[0], 1)
        ctx.insert_new_node_on_input(node, "Transpose", node.input[0], perm=[0, 3, 1, 2])
        shape = ctx.get_shape(node.output[0])
        node.type = "ConvTranspose"
        node.set_attr("strides", [stride_h, stride_w])
        node.set_attr("kernel_shape", [int(w.shape[1]), int(w.shape[2])])
        node.set_attr("auto_pad", _PADDING[padding])
        out = ctx.insert_new_node_on_output("Transpose", node.output[0], name=f"{node.name}/to_nhwc", perm=[0, 2, 3, 1])
        if shape is not None and len(shape) == 4:
            ctx.set_shape(node.output[0], [shape[0], shape[3], shape[1], shape[2]])
            ctx.set_shape(out.output[0], shape)

    return {**unknown, f"TFL_{TRANSPOSE_CONV_BIAS}": (transpose_conv_bias, [])}


DENSIFY = 124  # BuiltinOperator.DENSIFY


def densified(path: Path, folder: Path) -> Path | None:
    """A copy of a TFLite file with sparse weights made dense, or None when it has none.

    tf2onnx reads a sparse tensor's buffer as if it were dense ("cannot reshape array of size 77 into shape
    (8,1,1,32)" on face_detection_full_range_sparse.tflite): TFLite stores those weights in its sparse format and a
    DENSIFY op expands them when the interpreter prepares the graph. The interpreter's own expansion is read
    back and written as the DENSIFY op's output constant, and the op removed."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    codes = model.operatorCodes
    graph = model.subgraphs[0]
    dense_ops = [op for op in graph.operators if max(codes[op.opcodeIndex].builtinCode,
                                                     codes[op.opcodeIndex].deprecatedBuiltinCode) == DENSIFY]
    if not dense_ops:
        return None
    # no XNNPACK delegate: it takes the DENSIFY op's consumers and their constants over
    interpreter = tf.lite.Interpreter(str(path), experimental_preserve_all_tensors=True,
                                      experimental_op_resolver_type=tf.lite.experimental.OpResolverType
                                      .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    for op in dense_ops:
        value = interpreter.get_tensor(int(op.outputs[0]))
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8)
        model.buffers.append(buffer)
        graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
        sparse = graph.tensors[op.inputs[0]]
        sparse.buffer, sparse.sparsity = 0, None  # nothing reads it now
    graph.operators = [op for op in graph.operators if op not in dense_ops]
    out = folder / path.name
    flatbuffer_utils.write_model(model, str(out))
    return out
