"""PyTorch files beyond the zoo: torch.export archives (.pt2), TorchScript, and a state_dict of the user's own
module named by --arch package.module:Class (imported by name, never read from the file); each against the module."""
from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

from converters import ConversionError, to_onnx
from converters.frontends import detect_format
from converters.frontends.pytorch import architecture_from_name

USER_MODULE = '''
import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(5)
    def forward(self, x):
        return torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
'''


@pytest.fixture
def user_net(tmp_path, monkeypatch):
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]


def onnxruntime_output(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_state_dict_of_the_users_own_class(tmp_path, user_net):
    from userpkg.nets import Net

    torch.manual_seed(0)
    net = Net().eval()
    net.bn.running_mean.uniform_(-1, 1)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    path = to_onnx(tmp_path / "net.pth", tmp_path / "net.onnx", architecture=architecture_from_name("userpkg.nets:Net"),
                   size=(16, 16))
    x = torch.randn(1, 3, 16, 16)
    assert rel(onnxruntime_output(path, x), net(x).detach().numpy()) < 1e-5
    for bad, message in [("userpkg.nets:Nope", "has no Nope"), ("no_such_pkg:Net", "cannot import"),
                         ("userpkg.nets", "package.module:Class")]:
        with pytest.raises(ConversionError, match=message):
            architecture_from_name(bad)


def test_torch_export_archive_and_torchscript(tmp_path, user_net):
    from userpkg.nets import Net

    torch.manual_seed(1)
    net = Net().eval()
    x = torch.randn(1, 3, 20, 20)
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "net.pt2")
    torch.jit.save(torch.jit.trace(net, x), tmp_path / "net.ts")
    assert detect_format(tmp_path / "net.pt2") == "torch_export"
    (tmp_path / "net.pt2").rename(tmp_path / "renamed.bin2")  # by content, whatever its name
    assert detect_format(tmp_path / "renamed.bin2") == "torch_export"
    ref = net(x).detach().numpy()
    path = to_onnx(tmp_path / "renamed.bin2", tmp_path / "pt2.onnx")  # the size it was exported at
    assert rel(onnxruntime_output(path, x), ref) < 1e-5
    path = to_onnx(tmp_path / "net.ts", tmp_path / "ts.onnx", size=(20, 20))
    assert rel(onnxruntime_output(path, x), ref) < 1e-5
