"""Running tf2onnx (layers kept as nodes, retries), Keras models and tf.functions, and the
clean-up of what tf2onnx returns (names, dynamic batch, layout, checker)."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import onnx

from converters.errors import ConversionError, first_line, unsupported_ops
from converters.frontends.cleanup import set_input_spec
from converters.network.normalise import drop_weight_identities
from converters.frontends.atomic_output import save_onnx
from converters.frontends.tensorflow.dense_head import append_dense_tail, dense_tail
from converters.frontends.tensorflow.runtime import layers_kept, quiet
from converters.input_spec import InputSpec, guess_layout
from converters.network.edges import consumers

log = logging.getLogger(__name__)

_FAILED_NODE = re.compile(r"Failed to convert node '([^']*)' \(fct=<bound method (\w+)\.")
# (grappler's constant folding off, batch): layers kept and dynamic batch first
ATTEMPTS = ((True, None), (False, None), (False, 1))


def run_tf2onnx(convert, *, name: str, batch_retry: bool = True) -> onnx.ModelProto:
    """Run a tf2onnx conversion `convert(batch)`: first keeping every layer a node, then as
    tf2onnx does by default, then (batch_retry) with the batch fixed at 1, for op handlers that
    need static shapes."""
    failure = ""
    attempts = ATTEMPTS if batch_retry else [a for a in ATTEMPTS if a[1] is None]
    for keep, batch in attempts:
        try:
            with quiet() as failures, layers_kept(keep):
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


def image_signature(tf, shape, size, what: str, name: str = "input", dtype=None):
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


def keras_proto(model, size, opset: int, split: bool = True) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx

    what = f"Keras model {model.name!r}"
    model_inputs = getattr(model, "inputs", None) or []
    if len(model_inputs) > 1:
        raise ConversionError(f"{what} has {len(model_inputs)} inputs; invert-onnx needs one image input")
    if model_inputs:
        shape, name = tuple(model_inputs[0].shape), tensor_name(model_inputs[0])
    else:
        shape, name = None, "input"
    spec = image_signature(tf, shape, size, what, name=name)
    if not model.built:
        model(tf.zeros([1, *spec.shape[1:]]))
    tail = dense_tail(model) if split else []
    if tail:
        import keras

        log.info("%s: converting up to %s with tf2onnx, its dense head (%s) by hand", what, tail[0].name,
                 ", ".join(layer.name for layer in tail))
        head = keras.Model(model_inputs, tail[0].input, name=model.name)
        return append_dense_tail(keras_proto(head, size, opset, split=False), tail, model.name)

    def convert(batch: int | None):
        return tf2onnx.convert.from_keras(model, input_signature=(with_batch(tf, spec, batch),), opset=opset)

    def traced(batch: int | None):
        # The model as a tf.function: what from_keras fails on (Keras 3 Sequential models, whose output
        # tensors tf2onnx cannot name: 'keras_tensor_2') traces the same ops, layer scopes included.
        function = tf.function(lambda x: model(x, training=False))
        return tf2onnx.convert.from_function(function, input_signature=(with_batch(tf, spec, batch),), opset=opset)

    try:
        return run_tf2onnx(convert, name=what)
    except ConversionError as exc:
        log.info("%s: %s; converting it as a traced function", what, exc)
        return run_tf2onnx(traced, name=what)


def with_batch(tf, spec, batch: int | None):
    return spec if batch is None else tf.TensorSpec([batch, *spec.shape[1:]], spec.dtype, name=spec.name)


def tensor_name(tensor) -> str:
    name = getattr(tensor, "name", None) or "input"
    return name.split(":")[0].replace("/", "_") or "input"


def function_proto(function, size, opset: int) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx

    signature = getattr(function, "input_signature", None)
    if signature and len(signature) != 1:
        raise ConversionError("the tf.function takes several inputs; invert-onnx needs one image input")
    spec = signature[0] if signature else None
    spec = image_signature(tf, spec.shape if spec is not None else None, size, "the tf.function",
                            name=(spec.name if spec is not None and spec.name else "input"))

    def convert(batch: int | None):
        return tf2onnx.convert.from_function(function, input_signature=(with_batch(tf, spec, batch),),
                                             opset=opset)

    return run_tf2onnx(convert, name="the tf.function")


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
    readers = consumers(model.graph.node)
    taken = {n.name for n in model.graph.node}
    for node in model.graph.node:
        if ";" not in node.name or not node.output:
            continue
        first, rest = node.name.split(";", 1)
        users = readers.get(node.output[0], [])
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


def finish(model: onnx.ModelProto, out_path: Path, input_spec: InputSpec | None, name: str) -> Path:
    from converters.frontends.tensorflow.tflite_custom import CUSTOM_DOMAIN

    bad = _unconverted(model)
    kept = [n for n in bad if n.domain == CUSTOM_DOMAIN]  # TFLite custom ops: the layers below stay usable
    if kept:
        log.warning("%s: custom op(s) %s kept as %s nodes; the layers that need them are not converted",
                    name, ", ".join(sorted({f"{n.op_type.removeprefix('TFL_')} ({n.name!r})" for n in kept})),
                    CUSTOM_DOMAIN)
        bad = [n for n in bad if n.domain != CUSTOM_DOMAIN]
    if bad:
        raise ConversionError(unsupported_ops(bad, "TensorFlow op",
                                              "tf2onnx has no ONNX equivalent: cut the model before it or replace the op"))
    layout, hw = _layout(model)
    # nothing records the normalisation: write the ImageNet default marked as a guess, so a loader
    # calibrates it from the network (converters.network.calibrate) instead of trusting it
    spec = input_spec or InputSpec(source="default for a TensorFlow model (ImageNet mean/std, RGB, [0, 1]); "
                                          "give the model's preprocessing if it differs", confidence="guess")
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
