"""Every op in the project's converter registry (converters/network/ops) against onnxruntime, at the opset
torch.onnx's default exporter writes, and a converter's refusal cutting the model before the refused node."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from converters import load
from converters.network import ops  # noqa: F401
from converters.network.ops import successors


def model(nodes, inits, shape, out_shape, opset=20):
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, shape)],
                         [h.make_tensor_value_info("y", T.FLOAT, out_shape)],
                         [nh.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    onnx.checker.check_model(m, full_check=True)
    return m


def parity(m, tmp_path, shape=(1, 3, 8, 8), tol=1e-5):
    """The converted graph's output against onnxruntime's on a random input: max error relative to the peak."""
    path = tmp_path / "m.onnx"
    onnx.save(m, str(path))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = sess.run(None, {"x": x})
    with torch.no_grad():
        (got,) = load(path, size=shape[2:])(torch.from_numpy(x))
    assert tuple(got.shape) == expected.shape
    err = float(np.abs(got.numpy() - expected).max() / (np.abs(expected).max() + 1e-12))
    assert err < tol, err


W = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)


def conv(out="c"):
    return h.make_node("Conv", ["x", "w"], [out], pads=[1, 1, 1, 1])


@pytest.mark.parametrize("allowzero,shape,out", [(1, [1, -1], [1, 256]), (0, [0, 4, -1], [1, 4, 64]),
                                                 (1, [1, 4, 8, 8], [1, 4, 8, 8])])
def test_reshape_allowzero(tmp_path, allowzero, shape, out):
    m = model([conv(), h.make_node("Reshape", ["c", "s"], ["r"], allowzero=allowzero),
               h.make_node("Relu", ["r"], ["y"])], {"w": W, "s": np.array(shape, np.int64)}, [1, 3, 8, 8], out)
    parity(m, tmp_path)


def test_reshape_allowzero_keeps_a_literal_zero():
    from converters.network.ops.reshape import Reshape

    x = torch.zeros(0, 3)
    assert Reshape(True)(x, torch.tensor([3, 0])).shape == (3, 0)
    assert Reshape(False)(torch.zeros(2, 3), torch.tensor([0, 3])).shape == (2, 3)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(tmp_path, approximate):
    parity(model([conv(), h.make_node("Gelu", ["c"], ["y"], approximate=approximate)], {"w": W},
                 [1, 3, 8, 8], [1, 4, 8, 8]), tmp_path)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ReduceL2", "ReduceLogSumExp"])
@pytest.mark.parametrize("axes,keepdims", [([2, 3], 1), ([1], 0), ([-1], 1)])
def test_reduce_axes_as_input(tmp_path, op, axes, keepdims):
    shape = [1, 4, 8, 8]
    out = [1 if (a % 4) in [x % 4 for x in axes] else d for a, d in enumerate(shape)]
    if not keepdims:
        out = [d for a, d in enumerate(shape) if (a % 4) not in [x % 4 for x in axes]]
    parity(model([conv(), h.make_node(op, ["c", "axes"], ["y"], keepdims=keepdims)],
                 {"w": W, "axes": np.array(axes, np.int64)}, [1, 3, 8, 8], out, opset=18), tmp_path)


def test_reduce_noop_with_empty_axes(tmp_path):
    parity(model([conv(), h.make_node("ReduceMean", ["c"], ["y"], noop_with_empty_axes=1)], {"w": W},
                 [1, 3, 8, 8], [1, 4, 8, 8], opset=18), tmp_path)


def test_split_num_outputs_uneven(tmp_path):
    w = np.random.default_rng(2).standard_normal((7, 3, 3, 3)).astype(np.float32)
    nodes = [conv(), h.make_node("Split", ["c"], ["a", "b", "d"], axis=1, num_outputs=3),
             h.make_node("Concat", ["d", "a"], ["y"], axis=1)]  # 3 + 3 + 1 channels: the last part is smaller
    parity(model(nodes, {"w": w}, [1, 3, 8, 8], [1, 4, 8, 8], opset=18), tmp_path)


def test_cast_like(tmp_path):
    nodes = [conv(), h.make_node("CastLike", ["k", "c"], ["kf"]), h.make_node("Mul", ["c", "kf"], ["y"])]
    parity(model(nodes, {"w": W, "k": np.array(2.5, np.float32)}, [1, 3, 8, 8], [1, 4, 8, 8]), tmp_path)


def test_newer_versions_of_older_converters(tmp_path):
    """Pad-19 (constant), AveragePool-19, Resize-19 and the types-only versions (Cast, Flatten, Transpose ...)
    at opset 21: what onnx2torch converts at opset 17 gives onnxruntime's numbers at the newer version."""
    nodes = [conv(), h.make_node("Pad", ["c", "pads"], ["p"], mode="reflect"),
             h.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("Resize", ["a", "", "scales"], ["r"], mode="nearest"),
             h.make_node("Cast", ["r"], ["k"], to=T.FLOAT),
             h.make_node("Transpose", ["k"], ["t"], perm=[0, 1, 3, 2]), h.make_node("Identity", ["t"], ["y"])]
    inits = {"w": W, "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "scales": np.array([1, 1, 2, 2], np.float32)}
    parity(model(nodes, inits, [1, 3, 8, 8], [1, 4, 10, 10], opset=21), tmp_path)
    assert set(successors.TYPES_ONLY) >= {"Cast", "Transpose", "Identity"}


def test_a_refused_attribute_cuts_before_its_node(tmp_path):
    """Pad mode=wrap (opset 19) has no converter: the node is named with the attribute, the deepest node above
    it still inverts, and asking for a node after it says why."""
    from converters.errors import NodeError

    nodes = [conv(), h.make_node("Relu", ["c"], ["r"], name="relu"),
             h.make_node("Pad", ["r", "pads"], ["p"], name="wrap_pad", mode="wrap"),
             h.make_node("Relu", ["p"], ["y"], name="after")]
    path = tmp_path / "wrap.onnx"
    onnx.save(model(nodes, {"w": W, "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, [1, 3, 8, 8],
                    [1, 4, 10, 10], opset=19), str(path))
    net = load(path)
    note = next(n for n in net.notes if "not converted" in n)
    assert "Pad 'wrap_pad'" in note and "mode='wrap'" in note and "'relu'" in note
    x = torch.randn(1, 3, 8, 8)
    (got,) = net(x, outputs=["relu"])
    assert torch.allclose(got, torch.relu(torch.nn.functional.conv2d(x, torch.from_numpy(W), padding=1)), atol=1e-5)
    with pytest.raises(NodeError, match="mode='wrap'"):
        net(x, outputs=["after"])


def _auto_pad_model(op, auto_pad, size, stride, k=3, opset=13, **attrs):
    """One op with auto_pad on a 1x3xHxW input (H odd or even), ORT infers the output shape."""
    rng = np.random.default_rng(1)
    inits, inputs = {}, ["x"]
    if op in ("Conv", "ConvTranspose"):
        inits = {"w": rng.standard_normal((3, 4, k, k) if op == "ConvTranspose" else (4, 3, k, k)).astype(np.float32),
                 "b": rng.standard_normal(4).astype(np.float32)}
        inputs += ["w", "b"]
    else:
        attrs["kernel_shape"] = [k, k]
    if auto_pad.startswith("["):
        attrs["pads"] = eval(auto_pad)  # explicit asymmetric pads
    else:
        attrs["auto_pad"] = auto_pad
    node = h.make_node(op, inputs, ["y"], name=f"the_{op}", strides=[stride, stride], **attrs)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, size, size + 1])],
                         [h.make_tensor_value_info("y", T.FLOAT, [None] * 4)],
                         [nh.from_array(v, n) for n, v in inits.items()])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


@pytest.mark.parametrize("op,attrs", [("Conv", {}), ("Conv", {"k": 4}), ("ConvTranspose", {}),
                                      ("MaxPool", {}), ("AveragePool", {"count_include_pad": 0}),
                                      ("AveragePool", {"count_include_pad": 1})])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("size,stride", [(8, 1), (9, 2), (10, 3)])
def test_auto_pad(tmp_path, op, attrs, auto_pad, size, stride):
    """keras2onnx writes SAME_UPPER: every op with every auto_pad, odd and even sizes (H, W = size, size + 1) and an
    even kernel (odd total padding). onnxruntime refuses SAME with dilations, so that case follows the spec untested."""
    parity(_auto_pad_model(op, auto_pad, size, stride, **attrs), tmp_path, shape=(1, 3, size, size + 1))


@pytest.mark.parametrize("op,attrs", [("AveragePool", {"count_include_pad": 0}), ("AveragePool", {"count_include_pad": 1}),
                                      ("MaxPool", {}), ("ConvTranspose", {})])
def test_asymmetric_pads(tmp_path, op, attrs):
    """Explicit asymmetric pads onnx2torch refuses for AveragePool and ConvTranspose."""
    parity(_auto_pad_model(op, "[0, 1, 2, 1]", 9, 2, **attrs), tmp_path, shape=(1, 3, 9, 10))


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(tmp_path, mode):
    w = np.random.default_rng(2).standard_normal((8, 3, 1, 1)).astype(np.float32)
    m = model([h.make_node("Conv", ["x", "w"], ["c"]), h.make_node("DepthToSpace", ["c"], ["y"], blocksize=2, mode=mode)],
              {"w": w}, [1, 3, 3, 5], [1, 2, 6, 10], opset=13)
    parity(m, tmp_path, shape=(1, 3, 3, 5))
