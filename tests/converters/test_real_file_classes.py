"""Small generated reproductions of the classes of real files in issue 14 (the corpus has the
real ones): Constant weights, a dynamic-shape BatchNorm, an unsupported op downstream, QDQ and
dynamic quantisation made with onnxruntime's tools, 1- and 4-channel inputs, two inputs.
Each compares the torch graph with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from converters.errors import ModelError, NodeError
from converters.input_spec import InputSpec
from converters.network.network import Network

RNG = np.random.default_rng(0)


def _conv_bn_model(channels=3, dynamic=False, constants=False, tail=None, second_input=False) -> onnx.ModelProto:
    w = RNG.standard_normal((4, channels, 3, 3)).astype(np.float32) * 0.3
    b = RNG.standard_normal(4).astype(np.float32)
    bn = [np.abs(RNG.standard_normal(4)).astype(np.float32) + 0.5 for _ in range(4)]
    tensors = {"w": w, "b": b, "s": bn[0], "bias": bn[1], "m": bn[2], "v": bn[3]}
    nodes, inits = [], []
    for k, v in tensors.items():
        if constants:
            nodes.append(helper.make_node("Constant", [], [k], value=numpy_helper.from_array(v, k)))
        else:
            inits.append(numpy_helper.from_array(v, k))
    dims = ["n", channels, "h", "w"] if dynamic else [1, channels, 16, 16]
    nodes += [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c", "s", "bias", "m", "v"], ["bn"], name="bn"),
              helper.make_node("Relu", ["bn"], ["y"], name="relu")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
    out = "y"
    if second_input:
        inputs.append(helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 4, 16, 16]))
        nodes.append(helper.make_node("Add", ["y", "side"], ["y2"], name="add_side"))
        out = "y2"
    if tail:
        nodes.append(helper.make_node(tail, [out], ["z"], name="tail"))
        out = "z"
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _ort(model, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_constant_weights_become_initializers_and_match_onnxruntime():
    model = _conv_bn_model(constants=True)
    net = Network(model, input_spec=InputSpec(mean=(0, 0, 0), std=(1, 1, 1)))
    assert any("Constant" in n for n in net.notes)
    x = torch.randn(1, 3, 16, 16)
    ref = _ort(model, {"x": x.numpy()})
    got = net(x, ["relu"])[0].numpy()
    assert np.abs(got - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())


def test_dynamic_shape_batchnorm_is_fixed_at_the_chosen_size():
    model = _conv_bn_model(dynamic=True, constants=True)
    net = Network(model, size=(24, 20))
    assert net.node_shape("bn") == (1, 4, 24, 20) if hasattr(net, "node_shape") else net.resolve("bn").shape == (1, 4, 24, 20)
    assert net.check_parity(nodes=["bn"]).max_error <= 1e-5


def test_unsupported_op_downstream_blocks_only_what_follows_it():
    model = _conv_bn_model(tail="GlobalLpPool")  # no onnx2torch converter
    net = Network(model)
    tail = net.resolve("tail")
    assert tail.unsupported and "GlobalLpPool" in tail.unsupported
    assert net.resolve("relu").unsupported is None
    assert net.check_parity(nodes=["conv", "relu"]).max_error <= 1e-5
    with pytest.raises(NodeError, match="cannot be inverted"):
        net(torch.zeros(1, 3, 16, 16), ["tail"])


def _quantized(tmp_path, kind):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    src, dst = tmp_path / "f.onnx", tmp_path / f"{kind}.onnx"
    float_model = _conv_bn_model()
    onnx.save(float_model, src)
    if kind == "dynamic":
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
    else:
        class Reader(CalibrationDataReader):
            def __init__(self):
                self.data = iter([{"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)])

            def get_next(self):
                return next(self.data, None)

        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return float_model, onnx.load(dst)


@pytest.mark.parametrize("kind", ["qdq", "dynamic"])
def test_quantized_model_inverts_its_float_equivalent(tmp_path, kind):
    float_model, q = _quantized(tmp_path, kind)
    ops = {n.op_type for n in q.graph.node}
    assert ("ConvInteger" in ops) if kind == "dynamic" else ("DequantizeLinear" in ops)
    net = Network(q, input_spec=InputSpec(mean=(0, 0, 0), std=(1, 1, 1)))
    assert net.quantized and any("float equivalent" in n for n in net.notes)
    x = torch.randn(1, 3, 16, 16)
    out = net(x)[0].numpy()
    # exact against the float model it became
    assert net.check_parity(x).max_error <= 1e-5
    # within quantisation error of onnxruntime on the quantized file, and of the float original
    ref_q = _ort(q, {"x": x.numpy()})
    ref_f = _ort(float_model, {"x": x.numpy()})
    scale = np.abs(ref_f).max()
    assert np.abs(out - ref_q).max() <= 0.1 * scale
    assert np.abs(out - ref_f).max() <= 0.1 * scale


@pytest.mark.parametrize("channels", [1, 4])
def test_non_rgb_inputs_convert_and_adapt(channels):
    model = _conv_bn_model(channels=channels)
    net = Network(model)
    assert net.input_spec.channels == channels
    assert len(net.input_spec.mean) == channels
    v = torch.randn(1, 3, 16, 16)
    x = net.input_spec.adapt(v)
    assert x.shape == (1, channels, 16, 16)
    ref = _ort(model, {"x": x.numpy()})
    assert np.abs(net.from_standardised(v, ["relu"])[0].numpy() - ref).max() <= 1e-4


def test_grey_spec_sees_the_luma_of_the_image():
    from converters.input_spec import destandardise, standardise

    spec = InputSpec(channels=1, mean=(0.5,), std=(0.25,)).with_size(4, 4)
    rgb = torch.rand(1, 3, 4, 4)
    grey = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]).unsqueeze(1)
    assert torch.allclose(spec.adapt(standardise(rgb)), (grey - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ModelError, match="1 value"):
        InputSpec(channels=1, mean=(0.5, 0.5, 0.5), std=(1,))


def test_a_grey_model_is_inverted_and_written_grey(photo, tmp_path):
    """Item 5: a one-channel network's reconstruction and its PNG are grey, compared with the photo's luma
    (Pillow's "L" conversion is the independent reference)."""
    from PIL import Image

    from inverter import InversionConfig, invert
    from inverter.io.images import load_image
    from inverter.io.reports import write_result

    net = Network(_conv_bn_model(channels=1))
    image = load_image(photo, (16, 16))
    result = invert(net, image, "relu", InversionConfig(iterations=30), progress=False)
    assert torch.equal(result.image[:, 0], result.image[:, 1]) and torch.equal(result.image[:, 1], result.image[:, 2])
    files = write_result(result, tmp_path)
    saved = Image.open(files["reconstruction"])
    assert saved.mode == "L"
    rgb = Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
    pillow_grey = np.asarray(rgb.convert("L"), dtype=np.float32) / 255
    assert np.abs(result.original[0, 0].numpy() - pillow_grey).max() <= 1.5 / 255


def test_several_inputs_default_to_the_image_and_fix_the_others():
    model = _conv_bn_model(second_input=True)
    net = Network(model)
    assert net.input_name == "x" and any("2 inputs" in n for n in net.notes)
    side = np.zeros((1, 4, 16, 16), np.float32)
    x = torch.randn(1, 3, 16, 16)
    ref = _ort(model, {"x": net.input_spec.adapt(x).numpy(), "side": side})
    assert np.abs(net.from_standardised(x, ["add_side"])[0].numpy() - ref).max() <= 1e-4
    with pytest.raises(ModelError, match="no graph input"):
        Network(model, input_name="nope")


def test_a_scope_name_several_layers_share_lists_them():
    """tf2onnx keeps Keras scopes: `batchnorm` is inside every BatchNormalization layer, `dense_1` is a layer
    and also the base of the renamed `dense_1_1`. Such a name must list its candidates, not pick one (item 9)."""
    ch = 3
    inits, nodes, prev = [], [], "x"
    names = ["m/block1_bn/batchnorm/add_1", "m/block2_bn/batchnorm/add_1", "m/dense_1/BiasAdd", "m/dense_1_1/BiasAdd"]
    for k, name in enumerate(names):
        w = numpy_helper.from_array(RNG.standard_normal((ch, ch, 1, 1)).astype(np.float32), f"w{k}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [prev, f"w{k}"], [f"t{k}"], name=name))
        prev = f"t{k}"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ch, 8, 8])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    net = Network(model, input_spec=InputSpec(mean=(0, 0, 0), std=(1, 1, 1)))
    for generic, expected in [("batchnorm", names[:2]), ("dense_1", names[2:])]:
        with pytest.raises(NodeError, match="ambiguous") as err:
            net.resolve(generic)
        assert all(n in str(err.value) for n in expected), str(err.value)
    # names that say one scope still resolve: a layer, the model scope (its last node), a full name
    assert net.resolve("block2_bn").name == names[1]
    assert net.resolve("dense_1_1").name == names[3]
    assert net.resolve("m").name == names[3]


def test_receptive_field_after_a_focus_stem_matches_the_gradient():
    """Item 8: YOLOv5's Focus (four stride-2 Slices, concatenated) then 3x3 convs. The receptive field the
    tool reports equals the extent of the input gradient of one output pixel (the independent reference)."""
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in
             {"s00": [0, 0], "s10": [1, 0], "s01": [0, 1], "s11": [1, 1], "ends": [10**9, 10**9],
              "axes": [2, 3], "steps": [2, 2]}.items()]
    nodes = [helper.make_node("Slice", ["x", s, "ends", "axes", "steps"], [f"q{s}"], name=f"slice_{s}")
             for s in ("s00", "s10", "s01", "s11")]
    nodes.append(helper.make_node("Concat", [f"q{s}" for s in ("s00", "s10", "s01", "s11")], ["focus"], axis=1,
                                  name="focus"))
    prev = "focus"
    for k, c_in in enumerate((12, 8)):
        inits.append(numpy_helper.from_array(RNG.standard_normal((8, c_in, 3, 3)).astype(np.float32), f"w{k}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{k}"], [f"c{k}"], name=f"conv{k}", pads=[1, 1, 1, 1]))
        prev = f"c{k}"
    g = helper.make_graph(nodes, "focus", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    net = Network(model, input_spec=InputSpec(mean=(0, 0, 0), std=(1, 1, 1)))
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    for node in ("conv0", "conv1"):
        (out,) = net(x, [node])
        (grad,) = torch.autograd.grad(out[0, :, 8, 8].sum(), x)
        rows = torch.nonzero(grad.abs().sum((0, 1, 3)) > 0)
        extent = int(rows.max() - rows.min() + 1)
        assert net.resolve(node).receptive_field == extent, node  # 6 and 10; a plain walk said 3 and 5
