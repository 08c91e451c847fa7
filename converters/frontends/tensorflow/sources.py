"""TensorFlow sources read from files: a .keras/.h5 file, a SavedModel folder, a frozen
GraphDef .pb and a .tflite flatbuffer, each turned into an ONNX graph through tf2onnx."""
from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import onnx

from converters.errors import ConversionError, ModelError, first_line
from converters.frontends.tensorflow.conversion import (
    image_signature,
    run_tf2onnx,
    with_batch,
)

_NOT_DATA_OPS = {"NoOp", "Const", "Assert", "SaveV2", "RestoreV2", "VarHandleOp", "VariableV2",
                 "Identity_n", "PrintV2", "Placeholder"}


log = logging.getLogger(__name__)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: Path) -> bool:
    """The HDF5 signature at offset 0 (or 512, 1024, 2048: a user block before it)."""
    try:
        with open(path, "rb") as f:
            for offset in (0, 512, 1024, 2048):
                f.seek(offset)
                if f.read(8) == HDF5_SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def _cause(exc: BaseException) -> str:
    """One line with the error and its root cause: Keras nests causes as 'Exception encountered: ...' (the
    last is the root), Python chains them."""
    text = str(exc)
    head = first_line(exc, limit=160)
    for marker in ("Exception encountered:", "Error encountered:"):
        if marker in text:
            tail = text.rsplit(marker, 1)[1].strip()
            cause = tail.splitlines()[0][:300] if tail else ""
            return f"{head} ... caused by: {cause}" if cause and cause not in head else head
    inner = exc.__cause__ or exc.__context__
    if inner is not None and str(inner).strip() and first_line(inner) not in head:
        return f"{head} (caused by {type(inner).__name__}: {first_line(inner, limit=300)})"
    return head


def _clean_config(node):
    """A tf.keras 2 config made readable by Keras 3: initializers lose the `dtype` argument Keras 3 refuses."""
    if isinstance(node, dict):
        out = {k: _clean_config(v) for k, v in node.items()}
        for key, value in out.items():
            if (key.endswith("_initializer") or key == "initializer") and isinstance(value, dict) \
                    and isinstance(value.get("config"), dict):
                value["config"].pop("dtype", None)
        return out
    if isinstance(node, list):
        return [_clean_config(v) for v in node]
    return node


def _cleaned_h5(path: Path, folder: Path) -> Path | None:
    """A copy of a legacy .h5 whose model_config was cleaned (data only: JSON in, JSON out); None if nothing changed."""
    import json
    import shutil

    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            return None
        raw = raw.decode() if isinstance(raw, bytes) else str(raw)
        cleaned = json.dumps(_clean_config(json.loads(raw)))
    except (OSError, ValueError):  # a corrupt file: the first error stands
        return None
    if cleaned == json.dumps(json.loads(raw)):
        return None
    copy = folder / "model.h5"
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r+") as f:
        f.attrs["model_config"] = cleaned
    return copy


def load_keras_file(path: Path):
    """keras.models.load_model in safe mode, without compiling; every failure is one clear line with its cause.

    The format is read from the content: an HDF5 file under any name (`.model`) loads as legacy .h5; a
    tf.keras 2 .h5 whose config Keras 3 refuses (initializer `dtype`) loads from a cleaned copy of its config."""
    import tempfile

    import keras

    if path.is_file() and path.stat().st_size == 0:
        raise ModelError(f"{path} is empty")
    hdf5 = path.is_file() and is_hdf5(path)
    if path.is_file() and path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path) and not hdf5:
        raise ModelError(f"{path} is not a .keras archive (not a zip file: corrupt or incomplete); "
                          "save it again with model.save")
    with tempfile.TemporaryDirectory() as tmp:
        target = path
        if path.is_file() and (hdf5 and path.suffix.lower() not in (".h5", ".hdf5")
                               or zipfile.is_zipfile(path) and path.suffix.lower() != ".keras"):
            target = Path(tmp) / ("model.h5" if hdf5 else "model.keras")  # Keras 3 goes by the name
            target.symlink_to(path.resolve())
        try:
            return keras.models.load_model(str(target), safe_mode=True, compile=False)
        except Exception as first:
            cleaned = _cleaned_h5(path, Path(tmp)) if hdf5 else None
            if cleaned is None:
                exc = first
            else:
                try:
                    model = keras.models.load_model(str(cleaned), safe_mode=True, compile=False)
                    log.warning("%s: a tf.keras 2 config; loaded after dropping initializer dtype arguments", path)
                    return model
                except Exception as second:
                    exc = second
    raise _keras_error(path, exc) from None


def _keras_error(path: Path, exc: BaseException) -> ModelError:
    """The one-line ModelError for a Keras load failure, its cause included."""
    text = str(exc)
    if "Lambda" in text or ("lambda" in text and "safe_mode" in text):
        return ModelError(f"{path} holds a Lambda layer with Python code, which safe loading never runs; "
                          "if you trust its code, rebuild the model in Python and pass the keras.Model")
    if "No model config found" in text or "model_config" in text:
        return ModelError(f"{path} holds weights only, no architecture: build the model in Python, "
                          "load these weights into it and pass the keras.Model")
    if "Could not locate" in text or "Unknown layer" in text or "Could not deserialize" in text:
        return ModelError(f"{path} uses a custom Keras class that is not registered: import the code that "
                          f"defines it and pass the keras.Model instead ({_cause(exc)})")
    if isinstance(exc, (OSError, ValueError)) and ("signature" in text or "truncated" in text
                                                  or "zip" in text.lower() or "Unable to" in text):
        return ModelError(f"{path} is not a readable Keras model file (corrupt or incomplete: "
                          f"{first_line(exc)}); save it again with model.save")
    return ModelError(f"{path} could not be loaded as a Keras model ({_cause(exc)})")


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

    import tempfile

    from converters.frontends.tensorflow.tflite_custom import CUSTOM_DOMAIN, densified, handlers

    custom = handlers(path)
    with tempfile.TemporaryDirectory() as tmp:
        dense = densified(path, Path(tmp))
        if dense is not None:
            log.info("%s: sparse weights made dense by the TFLite interpreter before tf2onnx", path.name)

        def convert(batch: None):
            return tf2onnx.convert.from_tflite(str(dense or path), input_names=inputs or None,
                                               output_names=outputs or None, opset=opset,
                                               custom_op_handlers=custom or None,
                                               extra_opset=[onnx.helper.make_opsetid(CUSTOM_DOMAIN, 1)] if custom else None)

        return run_tf2onnx(convert, name=str(path), batch_retry=False)
