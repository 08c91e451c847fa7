"""FLOP counts from the ONNX graph against hand-computed values."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters import Network, NodeError
from converters.network.flops import flops_per_node, flops_to, total_flops


def _tiny_model() -> onnx.ModelProto:
    """input 1x3x8x8 -> Conv 4x3x3x3 (pad 1, bias) -> Relu -> MaxPool 2x2/2 -> Flatten -> Gemm 64->10."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((10, 64)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _grouped_model() -> onnx.ModelProto:
    """input 1x3x8x8 -> Conv 6x3 (1x1) -> BN -> grouped Conv 6->6, groups 3, 3x3, stride 2 (no bias)
    -> ConvTranspose 6->2, 2x2 stride 2 (bias) -> GlobalAveragePool."""
    rng = np.random.default_rng(1)
    arr = lambda shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w1", arr((6, 3, 1, 1))), ("s", np.abs(arr(6)) + 0.5), ("bb", arr(6)), ("m", arr(6)),
        ("v", np.abs(arr(6)) + 0.5), ("w2", arr((6, 2, 3, 3))), ("wt", arr((6, 2, 2, 2))), ("bt", arr(2))]]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="pointwise", kernel_shape=[1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn"),
        helper.make_node("Conv", ["n1", "w2"], ["c2"], name="grouped", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2], group=3),
        helper.make_node("ConvTranspose", ["c2", "wt", "bt"], ["t"], name="up", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["t"], ["y"], name="gap"),
    ]
    graph = helper.make_graph(nodes, "grouped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_tiny_graph_by_hand():
    net = Network(_tiny_model())
    conv = 2 * (4 * 8 * 8) * (3 * 3 * 3) + 4 * 8 * 8  # 2 x MACs + bias per output element
    relu = 4 * 8 * 8
    pool = (4 * 4 * 4) * (2 * 2)
    fc = 2 * 10 * 64 + 10
    assert flops_per_node(net) == {"conv": conv, "relu": relu, "pool": pool, "flatten": 0, "fc": fc}
    assert flops_to(net, "conv") == conv
    assert flops_to(net, ["relu"]) == conv + relu
    assert flops_to(net, "p") == conv + relu + pool  # a tensor name works too
    assert total_flops(net) == conv + relu + pool + fc == 15882


def test_groups_batchnorm_transposed_and_global_pool_by_hand():
    net = Network(_grouped_model())
    counts = flops_per_node(net)
    assert counts["pointwise"] == 2 * (6 * 8 * 8) * 3
    assert counts["bn"] == 2 * 6 * 8 * 8
    assert counts["grouped"] == 2 * (6 * 4 * 4) * (2 * 3 * 3)  # Cin/groups = 2 inputs per output
    assert counts["up"] == 2 * (6 * 4 * 4) * (2 * 2 * 2) + 2 * 8 * 8  # each input spreads to Cout/g * k outputs
    assert counts["gap"] == 2 * 8 * 8
    assert flops_to(net, "grouped") == counts["pointwise"] + counts["bn"] + counts["grouped"]


def test_vgg16_bn_convolutions_by_hand(vgg16_bn):
    """conv1_1 and the whole VGG16-BN trunk at 64 px against the layer-by-layer formula."""
    side = 64
    assert flops_to(vgg16_bn, "conv1_1.conv") == 2 * 64 * 3 * 9 * side * side + 64 * side * side
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    expected, cin, s = 0, 3, side
    for c in cfg:
        if c == "M":
            expected += cin * (s // 2) ** 2 * 4
            s //= 2
            continue
        out = c * s * s
        expected += 2 * out * cin * 9 + out  # conv + bias
        expected += 2 * out + out  # BN + ReLU
        cin = c
    assert total_flops(vgg16_bn) == expected
    assert 0 < flops_to(vgg16_bn, "conv3_1") < total_flops(vgg16_bn)


def test_224_px_conv1_1_formula():
    """The documented number: VGG16 conv1_1 at 224 px, a multiply-add = 2 FLOPs, bias counted."""
    from converters.network.flops import node_flops
    from converters.network.names import NodeInfo

    node = NodeInfo(index=0, name="conv1_1", op_type="Conv", inputs=["x", "w", "b"], outputs=["y"], module_name="c")
    proto = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    shapes = {"x": (1, 3, 224, 224), "w": (64, 3, 3, 3), "b": (64,), "y": (1, 64, 224, 224)}
    assert node_flops(node, proto, shapes) == 176_619_520


def test_unknown_node_is_a_node_error():
    with pytest.raises(NodeError):
        flops_to(Network(_tiny_model()), "nope")
