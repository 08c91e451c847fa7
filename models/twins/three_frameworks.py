"""One set of weights in three frameworks: VGG16-BN as a PyTorch module, a Caffe
prototxt + caffemodel and a Keras model, each exported to ONNX by its own front-end.

The three ONNX files differ in everything a converter touches (Caffe's BatchNorm + Scale,
Keras' NHWC layout and layer names, torch.onnx's module scopes) and in nothing a network
computes, so inversions at `conv3_1` from the same seed agree.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from converters.frontends.caffe.convert import caffe_to_onnx
from converters.frontends.pytorch import export_module
from models.twins.caffe import write_caffe
from models.zoo import TORCHVISION_SPEC, build

FRAMEWORKS = ("pytorch", "caffe", "keras")


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None and importlib.util.find_spec("tf2onnx") is not None


def vgg16_bn_three_frameworks(out_dir: str | Path, *, seed: int = 0, size: int = 64,
                              frameworks: tuple[str, ...] = FRAMEWORKS) -> dict[str, Path]:
    """{framework: ONNX path} of torchvision's VGG16-BN convolutional part with seeded weights."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    module = build("vgg16_bn_features", seed=seed)
    state = module.state_dict()
    spec = TORCHVISION_SPEC.with_size(size, size)
    paths: dict[str, Path] = {}
    if "pytorch" in frameworks:
        paths["pytorch"] = export_module(module, out_dir / "vgg16_bn_pytorch.onnx", size=(size, size), input_spec=spec)
    if "caffe" in frameworks:
        prototxt, caffemodel = write_caffe("vgg16_bn", out_dir / "caffe", state_dict=state, features_only=True,
                                           size=size)
        paths["caffe"] = caffe_to_onnx(prototxt, caffemodel, out_dir / "vgg16_bn_caffe.onnx", input_spec=spec)
    if "keras" in frameworks:
        from converters.frontends.tensorflow import tensorflow_to_onnx
        from models.twins.keras import keras_input_spec, keras_vgg16_bn

        model = keras_vgg16_bn(state, size=size, features_only=True)
        paths["keras"] = tensorflow_to_onnx(model, out_dir / "vgg16_bn_keras.onnx", input_spec=keras_input_spec(spec))
    return paths
