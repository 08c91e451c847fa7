"""The Network's speed options change speed only: same nodes, same values, same input gradients."""
import pytest
import torch

from converters import load

OPTIONS = [{"channels_last": True}, {"fold_batchnorm": True}, {"inplace_relu": True},
           {"channels_last": True, "fold_batchnorm": True, "inplace_relu": True}]


def _values_and_grad(network, v, nodes):
    v = v.clone().requires_grad_(True)
    feats = network.from_standardised(v, nodes)
    sum(f.pow(2).sum() for f in feats).backward()
    return [f.detach() for f in feats], v.grad


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(o))
@pytest.mark.parametrize("nodes", [["conv3_1"], ["conv2_2.conv", "conv2_2.bn", "conv2_2", "pool2", "conv3_1"]],
                         ids=["one", "chain"])
def test_same_values_and_input_gradients(vgg16_bn, vgg16_bn_path, options, nodes):
    fast = load(vgg16_bn_path, **options)
    v = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    want, want_grad = _values_and_grad(vgg16_bn, v, nodes)
    got, got_grad = _values_and_grad(fast, v, nodes)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert (got_grad - want_grad).abs().max() <= 1e-5 * want_grad.abs().max()
    assert all(not p.requires_grad for p in fast.parameters())


def test_cut_folds_batchnorm_and_runs_relu_in_place(vgg16_bn_path):
    net = load(vgg16_bn_path, fold_batchnorm=True, inplace_relu=True)
    code = net.cut((net.resolve("conv3_1").outputs[0],)).code
    assert code.count("+folded") == 5 and "BatchNormalization" not in code  # 5 Conv+BN pairs up to conv3_1
    assert code.count("torch.relu_") == 5
    # asking for a Conv's own output keeps its BN (and the ReLU reading the BN output is not in place
    # when the BN output is asked for too)
    code = net.cut(tuple(net.resolve(n).outputs[0] for n in ("conv1_1.conv", "conv1_1.bn", "conv1_1"))).code
    bn, conv = net.resolve("conv1_1.bn").module_name, net.resolve("conv1_1.conv").module_name  # generated names
    assert f"self.{bn}(" in code and f"self.{conv}(" in code
    assert f"self.{net.resolve('conv1_1.relu').module_name}(" in code


def test_dtype_change_rebuilds_folded_cuts(vgg16_bn_path, vgg16_bn):
    net = load(vgg16_bn_path, fold_batchnorm=True)
    x = vgg16_bn.example_input(seed=4)
    (before,) = net(x, outputs=["conv3_1"])
    net.to(torch.float64)
    try:
        (after,) = net(x.double(), outputs=["conv3_1"])
        assert after.dtype == torch.float64
        assert torch.allclose(after.float(), before, rtol=1e-4, atol=1e-5 * float(before.abs().max()))
    finally:
        net.to(torch.float32)


def test_channels_last_toggles_weight_layout(vgg16_bn_path):
    net = load(vgg16_bn_path, channels_last=True)
    conv = next(m for m in net.graph_module.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    net.set_channels_last(False)
    assert conv.weight.is_contiguous() and not net.channels_last
