"""TensorFlow sources read from files: a .keras/.h5 file, a SavedModel folder, a frozen
GraphDef .pb and a .tflite flatbuffer, each turned into an ONNX graph through tf2onnx."""
from __future__ import annotations

import zipfile
from pathlib import Path

import onnx

from converters.errors import ConversionError, ModelError, first_line
from converters.frontends.tensorflow.conversion import image_signature, run_tf2onnx, with_batch

_NOT_DATA_OPS = {"NoOp", "Const", "Assert", "SaveV2", "RestoreV2", "VarHandleOp", "VariableV2",
                 "Identity_n", "PrintV2", "Placeholder"}


def load_keras_file(path: Path):
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


def saved_model_dir(path: Path) -> Path:
    return path.parent if path.name == "saved_model.pb" else path


def saved_model_proto(folder: Path, size, opset: int) -> onnx.ModelProto:
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
    spec = image_signature(tf, given.shape, size, f"signature {key!r} of {folder}",
                            name=arg_name or given.name or "input", dtype=given.dtype)

    def convert(batch: int | None):
        signature = with_batch(tf, spec, batch)

        @tf.function(input_signature=(signature,))
        def model(x):
            return serve(**{arg_name: x}) if arg_name else serve(x)

        return tf2onnx.convert.from_function(model, input_signature=(signature,), opset=opset)

    proto = run_tf2onnx(convert, name=f"SavedModel {folder}")
    del loaded
    return proto


def frozen_graph_proto(path: Path, inputs, outputs, size, opset: int) -> onnx.ModelProto:
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
        spec = image_signature(tf, dims, size, f"input {input_names[0]!r} of {path}")
        if None in dims[1:]:  # an open image size, fixed by `size`; the batch stays as the graph has it
            wanted = [-1 if dims[0] is None else dims[0], *(int(d) for d in spec.shape[1:])]
            shape_override = {f"{input_names[0]}:0": wanted}

    def convert(batch: None):
        return tf2onnx.convert.from_graph_def(graph_def, name=path.stem, input_names=[f"{input_names[0]}:0"],
                                              output_names=[f"{n}:0" for n in output_names], opset=opset,
                                              shape_override=shape_override)

    return run_tf2onnx(convert, name=str(path), batch_retry=False)


def _op_name(tensor: str) -> str:
    """`x:0` or `^x` -> `x`."""
    return tensor.lstrip("^").split(":")[0]


def tflite_proto(path: Path, inputs, outputs, opset: int) -> onnx.ModelProto:
    import tf2onnx

    head = path.read_bytes()[:8] if path.is_file() else b""
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(f"{path} is not a TensorFlow Lite flatbuffer (no TFL3 identifier)")

    from converters.frontends.tensorflow.tflite_custom import CUSTOM_DOMAIN, handlers

    custom = handlers(path)

    def convert(batch: None):
        return tf2onnx.convert.from_tflite(str(path), input_names=inputs or None, output_names=outputs or None,
                                           opset=opset, custom_op_handlers=custom or None,
                                           extra_opset=[onnx.helper.make_opsetid(CUSTOM_DOMAIN, 1)] if custom else None)

    return run_tf2onnx(convert, name=str(path), batch_retry=False)
