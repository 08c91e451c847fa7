"""TensorFlow / Keras -> ONNX through tf2onnx (opset 17).

Sources: a keras.Model (functional, Sequential or subclassed) or a tf.function; a .keras or
.h5 file (loaded in Keras' safe mode: a Lambda layer's Python code is never run); a SavedModel
folder; a frozen GraphDef .pb; a .tflite file.

What comes out:
- The input stays NHWC (tf2onnx inserts one Transpose to NCHW after it); the recorded
  InputSpec says so, and `InputSpec.adapt` feeds the engine's NCHW images accordingly.
- Keras layer names survive as name scopes (`vgg16_bn_1/block3_conv1_1/BiasAdd`), which
  `converters.network.names` turns into aliases (`block3_conv1`).
- Every Keras layer stays a node of its own: grappler's constant folding would fold a
  BatchNormalization into the Conv before it (`block3_bn1_1/batchnorm/mul_1` as a Conv), so the
  conversion runs grappler without it; tf2onnx still folds constant subgraphs itself. The
  BatchNormalization of Keras 3 (tf.nn.batch_normalization) becomes Mul + Add by constants.
  If a graph does not convert that way, the ordinary pipeline is used.
- The batch dimension is dynamic (`batch`) wherever the source allows it.
- Big dense heads are written by hand. tf2onnx deep-copies the whole graph, weights included,
  before each of its optimizers, so the 138M-parameter VGG16 with its classifier needs > 12 GB
  (its large_model mode: 18 GB and 2 minutes, and it calls np.product, gone in NumPy 2). When
  a functional model ends in a chain of Flatten/Dense/Dropout/activation layers holding over
  DENSE_SPLIT_PARAMETERS parameters, tf2onnx converts the model up to that chain, and the
  chain is appended as Reshape/MatMul/Add/activation nodes named in tf2onnx's manner
  (`vgg16_1/fc1_1/MatMul`): about 3 GB and 15 s for VGG16.

TensorFlow is an optional extra (`pip install 'invert-onnx[tensorflow]'`): it is imported
inside the functions only, with its log noise turned down (TF_CPP_MIN_LOG_LEVEL=3,
TF_ENABLE_ONEDNN_OPTS=0 unless set; oneDNN off also keeps TF's numbers closest to the ONNX runtimes).

Modules: `runtime` (importing TensorFlow quietly), `conversion` (running tf2onnx; Keras models,
tf.functions; the clean-up of its result), `sources` (model files), `dense_head` (a big
classifier written by hand).
"""
from __future__ import annotations

import logging
from pathlib import Path

from converters.errors import ConversionError, ModelError
from converters.frontends import TENSORFLOW_FORMATS, detect_format
from converters.frontends.tensorflow.conversion import finish, function_proto, keras_proto
from converters.frontends.tensorflow.dense_head import DENSE_SPLIT_PARAMETERS
from converters.frontends.tensorflow.runtime import INSTALL, QUIET_ENV, import_tensorflow, prepare_tensorflow_import, quiet
from converters.frontends.tensorflow.sources import (frozen_graph_proto, load_keras_file, saved_model_dir,
                                                     saved_model_proto, tflite_proto)
from converters.input_spec import InputSpec
from converters.network.onnx_io import OPSET

__all__ = ["DENSE_SPLIT_PARAMETERS", "INSTALL", "QUIET_ENV", "import_tensorflow", "prepare_tensorflow_import",
           "tensorflow_to_onnx"]

log = logging.getLogger(__name__)


def tensorflow_to_onnx(source, out_path: str | Path, *, input_spec: InputSpec | None = None,
                       opset: int = OPSET, inputs: list[str] | None = None,
                       outputs: list[str] | None = None, size: tuple[int, int] | None = None) -> Path:
    """Convert a TensorFlow/Keras model to ONNX at `out_path` and return the path.

    source: a keras.Model or tf.function, or a path to a .keras/.h5 file, a SavedModel folder,
    a frozen GraphDef .pb or a .tflite file.
    input_spec: the model's preprocessing (mean/std/scale/channel order), recorded in the ONNX
    metadata; its layout is set from the graph (NHWC for Keras). Default: ImageNet mean/std, RGB.
    inputs/outputs: tensor names of a frozen .pb (default: its placeholders and its sinks).
    size: (H, W) when the model leaves the image size open (also taken from input_spec).
    """
    out_path = Path(out_path)
    size = tuple(size) if size else (input_spec.size if input_spec else None)
    tf, _ = import_tensorflow()
    kind = detect_format(source)
    if kind not in TENSORFLOW_FORMATS:
        raise ModelError(f"{source} is not a TensorFlow model ({kind}); give .keras, .h5, a SavedModel folder, "
                         "a frozen .pb or .tflite")
    if kind in ("keras", "function"):
        _check_object(source, kind, tf)
    with quiet():  # loading models warns too
        if kind in ("keras", "keras_file"):
            keras_model = source if kind == "keras" else load_keras_file(Path(source))
            input_spec = input_spec or keras_convention(keras_model)
            name = getattr(source, "name", "keras model") if kind == "keras" else Path(source).name
            model = keras_proto(keras_model, size, opset)
        elif kind == "function":
            model, name = function_proto(source, size, opset), getattr(source, "__name__", "tf.function")
        elif kind == "saved_model":
            model, name = saved_model_proto(saved_model_dir(Path(source)), size, opset), Path(source).name
        elif kind == "frozen_graph":
            model, name = frozen_graph_proto(Path(source), inputs, outputs, size, opset), Path(source).name
        else:
            model, name = tflite_proto(Path(source), inputs, outputs, opset), Path(source).name
    return finish(model, out_path, input_spec, name)


# Keras applications name their preprocessing (`keras.applications.*.preprocess_input` modes):
# caffe = BGR minus the ImageNet mean on 0-255, tf = [-1, 1], torch = ImageNet-standardised; the
# newer ones (EfficientNet, ConvNeXt, MobileNetV3, RegNet, ResNet-RS) normalise inside the model
# and take 0-255.
_KERAS_MODES = (  # (exact names, name prefixes, mode)
    (("vgg16", "vgg19", "resnet50", "resnet101", "resnet152"), (), "caffe"),
    (("resnet50v2", "resnet101v2", "resnet152v2", "inception_v3", "xception", "inception_resnet_v2"),
     ("mobilenet_", "mobilenetv2_", "nasnet"), "tf"),
    ((), ("densenet",), "torch"),
    ((), ("efficientnet", "convnext", "mobilenetv3", "regnet", "resnetrs"), "raw"),
)


def keras_convention(model) -> InputSpec | None:
    """The preprocessing a Keras application's name implies (the applications' own names only), or
    None: then nothing is known and the recorded spec is marked as a guess."""
    from converters.network.calibrate import candidate

    name = str(getattr(model, "name", "")).lower()
    mode = next((m for exact, prefixes, m in _KERAS_MODES if name in exact or name.startswith(prefixes)), None)
    if mode is None:
        return None
    which = {"caffe": "Caffe BGR mean", "tf": "[-1, 1]", "torch": "ImageNet-standardised", "raw": "[0, 255]"}[mode]
    spec = candidate(InputSpec(), which)
    return InputSpec(channel_order=spec.channel_order, scale=spec.scale, mean=spec.mean, std=spec.std,
                     source=f"Keras application {name!r}: preprocess_input mode {mode!r}")


def _check_object(source, kind: str, tf) -> None:
    """A Python object detected as Keras or TensorFlow must be a keras.Model or a tf.function."""
    import keras

    wanted = keras.Model if kind == "keras" else tf.types.experimental.GenericFunction
    if not isinstance(source, wanted):
        raise ConversionError(f"cannot convert a {type(source).__name__} with TensorFlow: give a keras.Model, "
                              "a tf.function or a model file")
