"""`to_onnx`: one entry point that sends a model from any framework to its front-end.

    nn.Module                      -> converters.frontends.pytorch.export_module
    TorchScript file (.pt)         -> converters.frontends.pytorch.torchscript_to_onnx
    state_dict file + architecture -> converters.frontends.pytorch.state_dict_to_onnx
    .prototxt + .caffemodel        -> converters.frontends.caffe.convert.caffe_to_onnx
    keras.Model, .keras, .h5, SavedModel folder, frozen .pb, .tflite
                                   -> converters.frontends.tensorflow.tensorflow_to_onnx (extra [tensorflow])
    .onnx                          -> checked, copied
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from torch import nn

from converters.errors import ConversionError, ModelError
from converters.frontends.atomic_output import atomic_output, check_output
from converters.input_spec import InputSpec

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".bin")
# The formats `detect_format` tells apart that TensorFlow reads (objects first, then files).
TENSORFLOW_FORMATS = ("keras", "function", "keras_file", "saved_model", "frozen_graph", "tflite")


def _from_library(source, *prefixes: str) -> bool:
    """Whether the object's class or one of its bases comes from one of these packages."""
    return any(cls.__module__.startswith(prefixes) for cls in type(source).__mro__)


def sniff_format(path: Path) -> str | None:
    """The format a file's content shows, whatever its name (a Keras HDF5 model saved as `.model`): the HDF5
    signature (offset 0 or a 512-byte multiple), TFLite's TFL3 identifier, a .keras zip (config.json with
    model.weights.h5), a torch zip (data.pkl)."""
    try:
        with open(path, "rb") as f:
            data = f.read(2056)
    except OSError:
        return None
    if any(data[o:o + 8] == b"\x89HDF\r\n\x1a\n" for o in (0, 512, 1024, 2048)):
        return "keras_file"
    if data[4:8] == b"TFL3":
        return "tflite"
    if zipfile.is_zipfile(path):
        try:
            names = zipfile.ZipFile(path).namelist()
        except (OSError, zipfile.BadZipFile):
            return None
        if "config.json" in names and any(n.endswith(".weights.h5") or n == "metadata.json" for n in names):
            return "keras_file"
        if any(n.endswith("archive_format") for n in names):
            return "torch_export"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            from converters.frontends.pytorch import is_torchscript

            return "torchscript" if is_torchscript(path) else "state_dict"
    return None


def detect_format(source) -> str:
    """The one format detector: 'pytorch' (an nn.Module), 'torchscript', 'state_dict', 'caffe',
    'onnx', or one of TENSORFLOW_FORMATS ('keras' a keras.Model, 'function' a tf.function,
    'keras_file', 'saved_model', 'frozen_graph', 'tflite')."""
    if isinstance(source, nn.Module):
        return "pytorch"
    if not isinstance(source, (str, Path)):
        if _from_library(source, "keras", "tf_keras"):
            return "keras"
        if _from_library(source, "tensorflow"):
            return "function"
        raise ConversionError(f"cannot convert a {type(source).__name__}: give an nn.Module, a keras.Model, "
                              "a tf.function or a file")
    path = Path(source)
    if not path.exists():
        raise ModelError(f"model not found: {path}")
    suffix = path.suffix.lower()
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            return "saved_model"
        if (path / "config.json").is_file():  # Keras' unzipped model folder
            return "keras_file"
        raise ModelError(f"{path} is a folder without saved_model.pb: give a model file or a SavedModel folder")
    if path.name == "saved_model.pb":
        return "saved_model"
    if suffix in (".prototxt", ".caffemodel"):
        return "caffe"
    if suffix in KERAS_SUFFIXES:
        return "keras_file"
    if suffix == ".pb":
        return "frozen_graph"
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        return "torch_export"
    if suffix in TORCH_SUFFIXES:
        from converters.frontends.pytorch import is_torchscript

        return "torchscript" if is_torchscript(path) else "state_dict"
    sniffed = sniff_format(path)
    if sniffed:
        return sniffed
    raise ModelError(f"unknown model format {suffix or '(no suffix)'} for {path}; give .onnx, .prototxt + "
                     ".caffemodel, .keras/.h5/.pb/.tflite/SavedModel, or .pt/.pth")


def detect_framework(source) -> str:
    """'pytorch' | 'torchscript' | 'state_dict' | 'caffe' | 'tensorflow' | 'onnx'."""
    kind = detect_format(source)
    return "tensorflow" if kind in TENSORFLOW_FORMATS else kind


def _caffe_pair(source: Path, weights: str | Path | None) -> tuple[Path, Path]:
    other = Path(weights) if weights else None
    if source.suffix.lower() == ".prototxt":
        prototxt, caffemodel = source, other
    else:
        prototxt, caffemodel = other, source
    if prototxt is None or caffemodel is None:
        raise ConversionError("a Caffe model needs both files: MODEL.prototxt --weights MODEL.caffemodel")
    return prototxt, caffemodel


def to_onnx(source, out_path: str | Path, *, weights: str | Path | None = None,
            architecture: nn.Module | None = None, size: tuple[int, int] | None = None,
            input_spec: InputSpec | None = None, inputs: list[str] | None = None,
            outputs: list[str] | None = None) -> Path:
    """Export `source` to ONNX at `out_path` (opset 17) and return the path.

    weights: the .caffemodel for a .prototxt (or the other way round).
    architecture: the nn.Module a state_dict file is loaded into.
    size: input size (H, W): for exporters that trace (PyTorch; default 224), for Caffe and for
    TensorFlow models that leave the image size open.
    inputs/outputs: tensor names for frozen TensorFlow graphs; outputs: layer names for Caffe (only what they need
    is converted).
    """
    framework = detect_framework(source)
    out_path = check_output(out_path, [source, weights])  # never a folder, never the source itself
    hw = tuple(size) if size else (224, 224)
    if framework == "pytorch":
        from converters.frontends.pytorch import export_module

        return export_module(source, out_path, size=hw, input_spec=input_spec)
    if framework == "torchscript":
        from converters.frontends.pytorch import torchscript_to_onnx

        return torchscript_to_onnx(source, out_path, size=hw, input_spec=input_spec)
    if framework == "torch_export":
        from converters.frontends.pytorch import torch_export_to_onnx

        return torch_export_to_onnx(source, out_path, size=tuple(size) if size else None, input_spec=input_spec)
    if framework == "state_dict":
        if architecture is None:
            raise ConversionError(f"{source} is a state_dict: name its architecture (--arch, e.g. vgg16_bn)")
        from converters.frontends.pytorch import state_dict_to_onnx

        return state_dict_to_onnx(source, architecture, out_path, size=hw, input_spec=input_spec)
    if framework == "caffe":
        from converters.frontends.caffe.convert import caffe_to_onnx

        prototxt, caffemodel = _caffe_pair(Path(source), weights)
        if size:
            from converters.frontends.caffe.convert import CAFFE_SPEC

            input_spec = (input_spec or CAFFE_SPEC).with_size(*size)
        return caffe_to_onnx(prototxt, caffemodel, out_path, input_spec=input_spec, outputs=outputs)
    if framework == "tensorflow":
        try:
            from converters.frontends.tensorflow import tensorflow_to_onnx
        except ImportError as exc:
            raise ConversionError(f"TensorFlow models need the extra: pip install 'invert-onnx[tensorflow]' ({exc})") from None
        return tensorflow_to_onnx(source, out_path, input_spec=input_spec, inputs=inputs, outputs=outputs,
                                  size=tuple(size) if size else None)
    from converters.network.network import read_onnx

    read_onnx(source)
    with atomic_output(out_path, [source], needed=Path(source).stat().st_size) as tmp:
        shutil.copyfile(source, tmp)
    return out_path
