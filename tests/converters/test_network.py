"""Network: parity with onnxruntime, graph cutting, frozen weights, names, clear load errors."""
import onnx
import pytest
import torch

from converters import ModelError, NodeError, load
from converters.input_spec import InputSpec, standardise, destandardise


def test_parity_every_conv_relu_bn_node(vgg16_bn):
    report = vgg16_bn.check_parity(op_types=("Conv", "Relu", "BatchNormalization"))
    assert len(report.errors) == 13 * 3
    assert report.max_error < 1e-4, report.worst()


def test_cut_graph_runs_only_needed_modules(vgg16_bn):
    calls = []
    hooks = [m.register_forward_hook(lambda *a, n=name: calls.append(n))
             for name, m in vgg16_bn.graph_module.named_children() if name != "initializers"]
    try:
        x = vgg16_bn.example_input(seed=1)
        (out,) = vgg16_bn(x, outputs=["conv1_2"])
        assert len(calls) == 6  # conv, bn, relu twice; nothing past relu1_2
        calls.clear()
        vgg16_bn(x)
        assert len(calls) == 13 * 3 + 5  # the full feature extractor
    finally:
        for h in hooks:
            h.remove()
    full = vgg16_bn(x, outputs=["conv1_2", "conv5_3"])
    assert torch.equal(out, full[0])


def test_gradients_reach_image_never_weights(vgg16_bn):
    bn = [m for m in vgg16_bn.graph_module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn, "BatchNorm nodes must stay addressable"
    before = [m.running_mean.clone() for m in bn]
    v = torch.randn(2, 3, 64, 64, requires_grad=True)
    (f,) = vgg16_bn.from_standardised(v, ["conv3_1"])
    f.pow(2).sum().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in vgg16_bn.parameters())
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, bn))
    assert not vgg16_bn.graph_module.training


def test_names_resolve_to_the_same_node(vgg16_bn):
    relu = vgg16_bn.resolve("conv3_1")
    assert relu.op_type == "Relu"
    for name in ["relu3_1", "conv3_1.relu", "features.16", relu.outputs[0], relu.name]:
        assert vgg16_bn.resolve(name) is relu
    assert vgg16_bn.resolve("conv3_1.bn").op_type == "BatchNormalization"
    assert vgg16_bn.resolve("conv3_1.conv").op_type == "Conv"
    assert vgg16_bn.resolve("pool3").op_type == "MaxPool"
    assert vgg16_bn.resolve("conv3_1").shape == (1, 256, 16, 16)
    with pytest.raises(NodeError, match="conv3_1"):
        vgg16_bn.resolve("conv3_l")


def test_receptive_fields_by_hand(vgg16_bn):
    # 3x3 convs add 2 px (times the stride product so far); 2x2/2 pools add 1 and double the step
    assert vgg16_bn.resolve("conv1_1").receptive_field == 3
    assert vgg16_bn.resolve("conv1_2").receptive_field == 5
    assert vgg16_bn.resolve("pool1").receptive_field == 6
    assert vgg16_bn.resolve("conv2_1").receptive_field == 10
    assert vgg16_bn.resolve("conv3_1").receptive_field == 24


def test_input_spec_adapts_exactly():
    rgb = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    v = standardise(rgb)
    assert torch.allclose(destandardise(v), rgb, atol=1e-6)
    caffe = InputSpec(channel_order="BGR", scale=255.0, mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0),
                      layout="NHWC")
    expected = (rgb.flip(1) * 255 - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1)).permute(0, 2, 3, 1)
    assert torch.allclose(caffe.adapt(v), expected, atol=1e-4)
    assert torch.allclose(InputSpec().adapt(v), v, atol=1e-6)


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\x01\x02")
    with pytest.raises(ModelError):
        load(junk)


def test_unsupported_op_is_named(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    node = onnx.helper.make_node("Hardmax", ["x"], ["y"], name="the_hardmax", axis=1)
    graph = onnx.helper.make_graph([node], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    path = tmp_path / "hardmax.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="Hardmax.*the_hardmax"):
        load(path)


def test_external_data_cannot_escape(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    w = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [1], [1.0])
    w.data_location = onnx.TensorProto.EXTERNAL
    del w.float_data[:]
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    graph = onnx.helper.make_graph([onnx.helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = tmp_path / "escape.onnx"
    onnx.save(onnx.helper.make_model(graph), path)
    with pytest.raises(ModelError, match="outside"):
        load(path)


def test_dynamic_size_needs_size(tmp_path):
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "dyn.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError, match="--size"):
        load(path)
    net = load(path, size=(20, 30))
    assert net.input_spec.size == (20, 30)
    assert net.nodes[0].shape == (1, 3, 20, 30)
    assert net.nodes[0].name == "Relu_0"  # unnamed nodes get stable names
