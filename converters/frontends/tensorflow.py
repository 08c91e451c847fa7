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
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx

from converters.frontends.atomic_output import save_onnx
from converters.frontends.cleanup import drop_weight_identities, set_input_spec
from converters.errors import ConversionError, ModelError, first_line, unsupported_ops
from converters.input_spec import InputSpec, guess_layout
from converters.network.onnx_io import OPSET

log = logging.getLogger(__name__)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
DENSE_SPLIT_PARAMETERS = 20_000_000  # a dense head bigger than this is written by hand (module doc)
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
INSTALL = "pip install 'invert-onnx[tensorflow]' (tensorflow-cpu and tf2onnx)"
_NOT_DATA_OPS = {"NoOp", "Const", "Assert", "SaveV2", "RestoreV2", "VarHandleOp", "VariableV2",
                 "Identity_n", "PrintV2", "Placeholder"}


# ----------------------------------------------------------------------------- importing
def prepare_tensorflow_import() -> None:
    """Call before the first `import tensorflow`: quiet logs, and torchvision loaded first.

    torchvision imports triton (through torch._dynamo), and loading triton's library after
    TensorFlow's crashes the process (segmentation fault, measured with tensorflow-cpu 2.21 and
    the registry's torch); the other order is fine. onnx2torch needs torchvision anyway.
    """
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules:
        with contextlib.suppress(ImportError), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchvision  # noqa: F401


def import_tensorflow():
    """`tensorflow` and `tf2onnx`, imported quietly; a clear error when the extra is missing."""
    prepare_tensorflow_import()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tensorflow as tf
            import tf2onnx
    except ImportError as exc:
        raise ConversionError(f"TensorFlow models need the TensorFlow extra: {INSTALL} ({exc})") from None
    tf.get_logger().setLevel(logging.ERROR)
    return tf, tf2onnx


class _Failures(logging.Handler):
    """Collects the node conversions tf2onnx reports as failed (it logs them and carries on,
    sometimes leaving a half-rewritten graph behind)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Failed to convert node"):
            self.messages.append(message.splitlines()[0])


@contextlib.contextmanager
def _quiet():
    """tf2onnx logs every step and TF warns about deprecations: nothing of it reaches the user;
    the failures tf2onnx reports are collected and yielded."""
    failures = _Failures()
    tf2onnx_log = logging.getLogger("tf2onnx")
    tf_log = logging.getLogger("tensorflow")
    saved = (tf2onnx_log.level, tf2onnx_log.propagate, tf_log.level)
    tf2onnx_log.setLevel(logging.ERROR)
    tf2onnx_log.propagate = False
    tf2onnx_log.addHandler(failures)
    tf_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield failures
    finally:
        tf2onnx_log.removeHandler(failures)
        tf2onnx_log.setLevel(saved[0])
        tf2onnx_log.propagate = saved[1]
        tf_log.setLevel(saved[2])


@contextlib.contextmanager
def _layers_kept(enabled: bool = True):
    """Run grappler without constant folding while tf2onnx freezes the graph.

    Grappler's constant folding multiplies a following BatchNormalization into the Conv
    kernel, so neither the Conv output nor the BN node is left to address. tf2onnx calls
    `tensorflow.python.grappler.tf_optimizer.OptimizeGraph(config, meta_graph)`; the wrapper
    drops "constfold" from the optimizers listed in that config and changes nothing else.
    """
    if not enabled:
        yield
        return
    from tensorflow.python.grappler import tf_optimizer

    original = tf_optimizer.OptimizeGraph

    def optimize_graph(config_proto, metagraph, *args, **kwargs):
        rewrite = config_proto.graph_options.rewrite_options
        kept = [o for o in rewrite.optimizers if o != "constfold"]
        del rewrite.optimizers[:]
        rewrite.optimizers.extend(kept)
        return original(config_proto, metagraph, *args, **kwargs)

    tf_optimizer.OptimizeGraph = optimize_graph
    try:
        yield
    finally:
        tf_optimizer.OptimizeGraph = original




# ----------------------------------------------------------------------------- the entry point
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
    kind = _kind(source, tf)
    with _quiet():  # loading models warns too
        if kind == "keras":
            model, name = _keras_proto(source, size, opset), getattr(source, "name", "keras model")
        elif kind == "function":
            model, name = _function_proto(source, size, opset), getattr(source, "__name__", "tf.function")
        elif kind == "keras_file":
            model, name = _keras_proto(_load_keras_file(Path(source)), size, opset), Path(source).name
        elif kind == "saved_model":
            model, name = _saved_model_proto(_saved_model_dir(Path(source)), size, opset), Path(source).name
        elif kind == "frozen_graph":
            model, name = _frozen_graph_proto(Path(source), inputs, outputs, size, opset), Path(source).name
        else:
            model, name = _tflite_proto(Path(source), inputs, outputs, opset), Path(source).name
    return _finish(model, out_path, input_spec, name)


def _kind(source, tf) -> str:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ModelError(f"model not found: {path}")
        suffix = path.suffix.lower()
        if path.is_dir():
            if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
                return "saved_model"
            if (path / "config.json").is_file():  # Keras' unzipped model folder
                return "keras_file"
            raise ModelError(f"{path} is a folder without saved_model.pb: give a SavedModel folder, "
                             "a .keras/.h5/.pb/.tflite file, or a keras.Model")
        if path.name == "saved_model.pb":
            return "saved_model"
        if suffix in KERAS_SUFFIXES:
            return "keras_file"
        if suffix == ".pb":
            return "frozen_graph"
        if suffix == ".tflite":
            return "tflite"
        raise ModelError(f"unknown TensorFlow model format {suffix or '(no suffix)'} for {path}; "
                         "give .keras, .h5, a SavedModel folder, a frozen .pb or .tflite")
    import keras

    if isinstance(source, keras.Model):
        return "keras"
    if isinstance(source, tf.types.experimental.GenericFunction):
        return "function"
    raise ConversionError(f"cannot convert a {type(source).__name__} with TensorFlow: give a keras.Model, "
                          "a tf.function or a model file")


# ----------------------------------------------------------------------------- conversions
_FAILED_NODE = re.compile(r"Failed to convert node '([^']*)' \(fct=<bound method (\w+)\.")
# (grappler's constant folding off, batch): layers kept and dynamic batch first
ATTEMPTS = ((True, None), (False, None), (False, 1))


def _convert(convert, *, name: str, batch_retry: bool = True) -> onnx.ModelProto:
    """Run a tf2onnx conversion `convert(batch)`: first keeping every layer a node, then as
    tf2onnx does by default, then (batch_retry) with the batch fixed at 1, for op handlers that
    need static shapes."""
    failure = ""
    attempts = ATTEMPTS if batch_retry else [a for a in ATTEMPTS if a[1] is None]
    for keep, batch in attempts:
        try:
            with _quiet() as failures, _layers_kept(keep):
                proto, _ = convert(batch)
            if failures.messages:
                raise ConversionError(failures.messages[0])
            if batch is not None:
                log.warning("%s converts only with a fixed batch of %d", name, batch)
            return proto
        except MemoryError:
            raise ConversionError(f"tf2onnx ran out of memory converting {name}; convert the model in "
                                  "parts (for example its convolutional part only)") from None
        except Exception as exc:  # tf2onnx raises anything from ValueError to KeyError
            match = _FAILED_NODE.search(str(exc))
            failure = (f"tf2onnx failed on node {match.group(1)!r} ({match.group(2)})" if match
                       else first_line(exc))
            log.info("conversion attempt (constant folding %s, batch %s) failed: %s",
                     "off" if keep else "on", batch or "dynamic", failure)
    raise ConversionError(f"tf2onnx could not convert {name}: {failure}") from None


def _image_signature(tf, shape, size, what: str, name: str = "input", dtype=None):
    """A TensorSpec (None, H, W, C) for an image input, H and W from the model or `size`."""
    shape = list(shape) if shape is not None else [None, None, None, 3]
    if len(shape) != 4:
        raise ConversionError(f"{what} takes a rank-{len(shape)} input; invert-onnx needs images (N, H, W, C)")
    channels_last = guess_layout(shape, default="NHWC") == "NHWC"
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    if size:
        for axis, value in zip((h_axis, w_axis), size):
            if shape[axis] not in (None, value):
                raise ConversionError(f"{what} has a fixed input size {shape[h_axis]}x{shape[w_axis]}, "
                                      f"not {size[0]}x{size[1]}")
            shape[axis] = int(value)
    if shape[h_axis] is None or shape[w_axis] is None:
        raise ConversionError(f"{what} does not fix its input size: give one (--size H,W, or "
                              "an input_spec with height and width)")
    shape[0] = None  # dynamic batch
    if shape[3 if channels_last else 1] is None:
        shape[3 if channels_last else 1] = 3
    return tf.TensorSpec(shape, dtype or tf.float32, name=name)


def _keras_proto(model, size, opset: int, split: bool = True) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx

    what = f"Keras model {model.name!r}"
    model_inputs = getattr(model, "inputs", None) or []
    if len(model_inputs) > 1:
        raise ConversionError(f"{what} has {len(model_inputs)} inputs; invert-onnx needs one image input")
    if model_inputs:
        shape, name = tuple(model_inputs[0].shape), _tensor_name(model_inputs[0])
    else:
        shape, name = None, "input"
    spec = _image_signature(tf, shape, size, what, name=name)
    if not model.built:
        model(tf.zeros([1, *spec.shape[1:]]))
    tail = _dense_tail(model) if split else []
    if tail:
        import keras

        log.info("%s: converting up to %s with tf2onnx, its dense head (%s) by hand", what, tail[0].name,
                 ", ".join(layer.name for layer in tail))
        head = keras.Model(model_inputs, tail[0].input, name=model.name)
        return _append_dense_tail(_keras_proto(head, size, opset, split=False), tail, model.name)

    def convert(batch: int | None):
        return tf2onnx.convert.from_keras(model, input_signature=(_with_batch(tf, spec, batch),), opset=opset)

    return _convert(convert, name=what)


_TAIL_LAYERS = ("Flatten", "Dense", "Dropout", "Activation", "ReLU", "Softmax")
_ACTIVATIONS = {"linear": None, "relu": "Relu", "softmax": "Softmax", "sigmoid": "Sigmoid", "tanh": "Tanh"}


def _activation(layer) -> str | None:
    """The ONNX op of a Dense/Activation layer's activation (None: linear); KeyError if another."""
    function = layer.activation
    return _ACTIVATIONS[getattr(function, "__name__", str(function))]


def _tail_layer_supported(layer) -> bool:
    kind = type(layer).__name__
    try:
        if kind in ("Dense", "Activation"):
            _activation(layer)
        if kind == "Flatten":
            return getattr(layer, "data_format", "channels_last") == "channels_last"
        if kind == "ReLU":
            return not layer.max_value and not layer.negative_slope and not layer.threshold
        if kind == "Softmax":
            return layer.axis in (-1, [-1], (-1,))
    except (KeyError, AttributeError):
        return False
    return kind in _TAIL_LAYERS


def _dense_tail(model) -> list:
    """The chain of Flatten/Dense/Dropout/activation layers ending a functional model, when its
    dense layers hold more than DENSE_SPLIT_PARAMETERS parameters; else []."""
    try:
        expected = model.output
        layers = list(model.layers)
    except (AttributeError, ValueError):  # subclassed models have no symbolic output
        return []
    tail = []
    for layer in reversed(layers):
        if type(layer).__name__ not in _TAIL_LAYERS or not _tail_layer_supported(layer):
            break
        try:
            output, inputs = layer.output, layer.input
        except (AttributeError, ValueError):  # a layer called more than once
            break
        if output is not expected or isinstance(inputs, (list, tuple, dict)):
            break
        tail.append(layer)
        expected = inputs
    tail.reverse()
    while tail and type(tail[0]).__name__ != "Flatten" and not tail[0].count_params():
        tail.pop(0)  # start at the first layer worth cutting at
    if sum(layer.count_params() for layer in tail) <= DENSE_SPLIT_PARAMETERS:
        return []
    return tail


def _append_dense_tail(model: onnx.ModelProto, tail: list, scope: str) -> onnx.ModelProto:
    """Append Keras Flatten/Dense/activation layers to the (single) output of an ONNX graph.

    Flatten on the NHWC output is a Reshape to (batch, -1): the same element order as Keras.
    A Dense layer is MatMul by its kernel (in, out), Add of its bias, then its activation.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    if len(graph.output) != 1:
        raise ConversionError("the convolutional part has several outputs; cannot append the dense head")
    x = graph.output[0].name
    nodes, initializers = [], []

    def add(op: str, prefix: str, inputs: list[str], **attrs) -> str:
        name = f"{prefix}/{op}"
        nodes.append(helper.make_node(op, inputs, [f"{name}:0"], name=name, **attrs))
        return f"{name}:0"

    def constant(array: np.ndarray, name: str) -> str:
        initializers.append(numpy_helper.from_array(array, name))
        return name

    units = None
    for layer in tail:
        prefix = f"{scope}_1/{layer.name}_1"  # the scopes tf2onnx gives Keras layers
        kind = type(layer).__name__
        if kind == "Flatten":
            x = add("Reshape", prefix, [x, constant(np.array([0, -1], np.int64), f"{prefix}/shape")])
        elif kind == "Dense":
            kernel, *bias = layer.get_weights()
            units = kernel.shape[1]
            x = add("MatMul", prefix, [x, constant(kernel.astype(np.float32), f"{prefix}/kernel")])
            if bias:
                x = add("Add", prefix, [x, constant(bias[0].astype(np.float32), f"{prefix}/bias")])
            op = _activation(layer)
            if op:
                x = add(op, prefix, [x], **({"axis": -1} if op == "Softmax" else {}))
        elif kind in ("Activation", "ReLU", "Softmax"):
            op = _activation(layer) if kind == "Activation" else ("Relu" if kind == "ReLU" else "Softmax")
            if op:
                x = add(op, prefix, [x], **({"axis": -1} if op == "Softmax" else {}))
        # Dropout: the identity at inference
    final = tail[-1].name
    nodes[-1].output[0] = final  # the graph output is named after the last layer, as tf2onnx does
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(
        final, onnx.TensorProto.FLOAT, [batch.dim_param or batch.dim_value or "batch", units]))
    return model


def _with_batch(tf, spec, batch: int | None):
    return spec if batch is None else tf.TensorSpec([batch, *spec.shape[1:]], spec.dtype, name=spec.name)


def _tensor_name(tensor) -> str:
    name = getattr(tensor, "name", None) or "input"
    return name.split(":")[0].replace("/", "_") or "input"


def _function_proto(function, size, opset: int) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx

    signature = getattr(function, "input_signature", None)
    if signature and len(signature) != 1:
        raise ConversionError("the tf.function takes several inputs; invert-onnx needs one image input")
    spec = signature[0] if signature else None
    spec = _image_signature(tf, spec.shape if spec is not None else None, size, "the tf.function",
                            name=(spec.name if spec is not None and spec.name else "input"))

    def convert(batch: int | None):
        return tf2onnx.convert.from_function(function, input_signature=(_with_batch(tf, spec, batch),),
                                             opset=opset)

    return _convert(convert, name="the tf.function")


def _load_keras_file(path: Path):
    """keras.models.load_model in safe mode, without compiling; every failure is one clear line."""
    import keras

    if path.is_file() and path.stat().st_size == 0:
        raise ModelError(f"{path} is empty")
    if path.is_file() and path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a .keras archive (not a zip file: corrupt or incomplete); "
                         "save it again with model.save")
    try:
        return keras.models.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:
        text = str(exc)
        if "Lambda" in text or ("lambda" in text and "safe_mode" in text):
            raise ModelError(f"{path} holds a Lambda layer with Python code, which safe loading never runs; "
                             "if you trust its code, rebuild the model in Python and pass the keras.Model") from None
        if "No model config found" in text or "model_config" in text:
            raise ModelError(f"{path} holds weights only, no architecture: build the model in Python, "
                             "load these weights into it and pass the keras.Model") from None
        if "Could not locate" in text or "Unknown layer" in text or "Could not deserialize" in text:
            raise ModelError(f"{path} uses a custom Keras class that is not registered: import the code that "
                             "defines it and pass the keras.Model instead") from None
        if isinstance(exc, (OSError, ValueError)) and ("signature" in text or "truncated" in text
                                                      or "zip" in text.lower() or "Unable to" in text):
            raise ModelError(f"{path} is not a readable Keras model file (corrupt or incomplete: "
                             f"{first_line(exc)}); save it again with model.save") from None
        raise ModelError(f"{path} could not be loaded as a Keras model ({first_line(exc)})") from None


def _saved_model_dir(path: Path) -> Path:
    return path.parent if path.name == "saved_model.pb" else path


def _saved_model_proto(folder: Path, size, opset: int) -> onnx.ModelProto:
    """The serving signature of a SavedModel, wrapped in a tf.function with one image input."""
    import tensorflow as tf
    import tf2onnx

    try:
        loaded = tf.saved_model.load(str(folder))
    except Exception as exc:
        raise ModelError(f"{folder} is not a loadable SavedModel ({first_line(exc)})") from None
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise ConversionError(f"the SavedModel {folder} has no serving signature; save it with "
                              "model.export(...) or tf.saved_model.save(model, path, signatures=...)")
    key = "serving_default" if "serving_default" in signatures else sorted(signatures)[0]
    serve = signatures[key]
    args, kwargs = serve.structured_input_signature
    specs = [*args, *kwargs.values()]
    if len(specs) != 1:
        raise ConversionError(f"signature {key!r} of {folder} takes {len(specs)} inputs; invert-onnx needs one image")
    arg_name = next(iter(kwargs), None)
    given = specs[0]
    spec = _image_signature(tf, given.shape, size, f"signature {key!r} of {folder}",
                            name=arg_name or given.name or "input", dtype=given.dtype)

    def convert(batch: int | None):
        signature = _with_batch(tf, spec, batch)

        @tf.function(input_signature=(signature,))
        def model(x):
            return serve(**{arg_name: x}) if arg_name else serve(x)

        return tf2onnx.convert.from_function(model, input_signature=(signature,), opset=opset)

    proto = _convert(convert, name=f"SavedModel {folder}")
    del loaded
    return proto


def _frozen_graph_proto(path: Path, inputs, outputs, size, opset: int) -> onnx.ModelProto:
    """A frozen GraphDef; inputs default to its float placeholders, outputs to its sinks."""
    import tensorflow as tf
    import tf2onnx

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise ModelError(f"{path} is not a frozen TensorFlow GraphDef ({first_line(exc)})") from None
    if not graph_def.node:
        raise ModelError(f"{path} holds no TensorFlow graph")
    nodes = {n.name: n for n in graph_def.node}
    if any(n.op in ("VarHandleOp", "VariableV2", "Variable") for n in graph_def.node):
        raise ConversionError(f"{path} still holds variables: freeze it first "
                              "(convert_variables_to_constants_v2), or give the SavedModel folder")
    placeholders = [n.name for n in graph_def.node if n.op == "Placeholder"]
    input_names = [_op_name(t) for t in inputs] if inputs else placeholders
    if len(input_names) != 1:
        listed = ", ".join(input_names) or "none"
        raise ConversionError(f"{path} has {len(input_names)} candidate inputs ({listed}); "
                              "invert-onnx needs one image input: name it (--inputs NAME)")
    if outputs:
        output_names = [_op_name(t) for t in outputs]
    else:
        consumed = {_op_name(i) for n in graph_def.node for i in n.input}
        output_names = [n.name for n in graph_def.node if n.name not in consumed
                        and n.op not in _NOT_DATA_OPS and n.name not in input_names]
        if not output_names:
            raise ConversionError(f"{path}: no output found; name the output tensors (--outputs NAME)")
    for name in input_names + output_names:
        if name not in nodes:
            raise ConversionError(f"{path} has no tensor {name!r}; graph inputs: {', '.join(placeholders) or 'none'}")
    placeholder = nodes[input_names[0]]
    shape_override = None
    if "shape" in placeholder.attr and not placeholder.attr["shape"].shape.unknown_rank:
        dims = [d.size if d.size >= 0 else None for d in placeholder.attr["shape"].shape.dim]
        spec = _image_signature(tf, dims, size, f"input {input_names[0]!r} of {path}")
        if None in dims[1:]:  # an open image size, fixed by `size`; the batch stays as the graph has it
            wanted = [-1 if dims[0] is None else dims[0], *(int(d) for d in spec.shape[1:])]
            shape_override = {f"{input_names[0]}:0": wanted}

    def convert(batch: None):
        return tf2onnx.convert.from_graph_def(graph_def, name=path.stem, input_names=[f"{input_names[0]}:0"],
                                              output_names=[f"{n}:0" for n in output_names], opset=opset,
                                              shape_override=shape_override)

    return _convert(convert, name=str(path), batch_retry=False)


def _op_name(tensor: str) -> str:
    """`x:0` or `^x` -> `x`."""
    return tensor.lstrip("^").split(":")[0]


def _tflite_proto(path: Path, inputs, outputs, opset: int) -> onnx.ModelProto:
    import tf2onnx

    head = path.read_bytes()[:8] if path.is_file() else b""
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(f"{path} is not a TensorFlow Lite flatbuffer (no TFL3 identifier)")

    def convert(batch: None):
        return tf2onnx.convert.from_tflite(str(path), input_names=inputs or None, output_names=outputs or None,
                                           opset=opset)

    return _convert(convert, name=str(path), batch_retry=False)


# ----------------------------------------------------------------------------- the result
def _unconverted(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes tf2onnx left as TensorFlow ops (it continues past ops it cannot convert)."""
    bad = []
    for node in model.graph.node:
        domain = node.domain or ""
        if domain not in ("", "ai.onnx") or not onnx.defs.has(node.op_type, domain):
            bad.append(node)
    return bad


_ACTIVATION_OPS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "Elu")


def _name_fused_activations(model: onnx.ModelProto) -> None:
    """TFLite fuses an activation into the op before it and names the result after every op it
    fused (`m/block3_relu1/Relu;m/block3_bn1/add_1;m/block3_conv1/convolution`); tf2onnx splits
    the activation out again under a made-up name (`Relu__12`). Give the activation the first
    name back and the op before it the others, so the Keras layer names point at the right node."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node)
    taken = {n.name for n in model.graph.node}
    for node in model.graph.node:
        if ";" not in node.name or not node.output:
            continue
        first, rest = node.name.split(";", 1)
        users = consumers.get(node.output[0], [])
        if (len(users) == 1 and users[0].op_type in _ACTIVATION_OPS and "/" not in users[0].name
                and first not in taken and rest not in taken):
            users[0].name, node.name = first, rest
            taken.update((first, rest))


def _dynamic_batch(model: onnx.ModelProto) -> None:
    """Name the batch dimension `batch` (tf2onnx calls it `unk__N`) wherever it is symbolic."""
    graph = model.graph
    symbols = set()
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param"):
            symbols.add(dims[0].dim_param)
    if not symbols:
        return
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.dim_param = "batch"


def _layout(model: onnx.ModelProto) -> tuple[str, tuple[int, int] | None]:
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    if len(graph_inputs) != 1:
        raise ConversionError(f"the converted model has {len(graph_inputs)} inputs "
                              f"({', '.join(i.name for i in graph_inputs)}); invert-onnx needs one image input")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in graph_inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ConversionError(f"the converted model's input has rank {len(dims)}; invert-onnx needs images")
    if guess_layout(dims, default="NHWC") == "NHWC":
        return "NHWC", ((dims[1], dims[2]) if dims[1] and dims[2] else None)
    return "NCHW", ((dims[2], dims[3]) if dims[2] and dims[3] else None)


def _finish(model: onnx.ModelProto, out_path: Path, input_spec: InputSpec | None, name: str) -> Path:
    bad = _unconverted(model)
    if bad:
        raise ConversionError(unsupported_ops(bad, "TensorFlow op",
                                              "tf2onnx has no ONNX equivalent: cut the model before it or replace the op"))
    layout, hw = _layout(model)
    spec = input_spec or InputSpec(source="default for a TensorFlow model (ImageNet mean/std, RGB, [0, 1]); "
                                          "give the model's preprocessing if it differs")
    if spec.layout != layout:
        log.info("the ONNX input of %s is %s: recording layout %s", name, layout, layout)
    spec = spec.replace(layout=layout)
    if hw:
        spec = spec.with_size(*hw)
    _dynamic_batch(model)
    _name_fused_activations(model)
    model = drop_weight_identities(model)
    model = set_input_spec(model, spec)
    import tf2onnx

    model.producer_name = f"invert-onnx (tf2onnx {tf2onnx.__version__})"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    big = model.ByteSize() > 2_000_000_000  # protobuf's limit: weights go to a file next to the model
    try:
        if big:
            onnx.save(model, str(out_path), save_as_external_data=True, location=out_path.name + ".data")
        onnx.checker.check_model(str(out_path) if big else model)
    except Exception as exc:
        raise ConversionError(f"the ONNX graph tf2onnx made from {name} fails the checker: {first_line(exc)}") from None
    if not big:
        save_onnx(model, out_path)
    log.info("converted %s to %s (%d nodes, input %s)", name, out_path, len(model.graph.node), layout)
    return out_path
