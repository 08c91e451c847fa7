"""--size on constrained graphs: a size a graph does not take is refused in one line with the nearest size it runs
at (checked with onnxruntime); a fully convolutional file that declares 32x32 runs at 64x64 (against onnxruntime)."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from converters import ModelError, load

rng = np.random.default_rng(0)


def fpn(path, dims):
    """conv s2 -> conv s2 -> upsample x2 -> add the first: runs where H and W are multiples of 4."""
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Conv", ["c1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1], name="conv2"),
             h.make_node("Resize", ["c2", "", "scales"], ["u"], mode="nearest", name="up"),
             h.make_node("Add", ["u", "c1"], ["y"], name="add")]
    inits = [nh.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1"),
             nh.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2"),
             nh.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, *dims])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 8, None, None])], inits)
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))
    return path


def test_a_size_off_the_stride_names_the_nearest_that_runs(tmp_path):
    path = fpn(tmp_path / "dyn.onnx", ["H", "W"])
    with pytest.raises(ModelError, match=r"does not run on a 50x50 input .*--size 48,48 runs") as info:
        load(path, size=(50, 50))
    assert "\n" not in str(info.value) and "KeyError" not in str(info.value)
    with pytest.raises(ModelError, match=r"--size 64,40 runs"):
        load(path, size=(63, 42))


def test_a_declared_size_is_refixed_when_the_graph_runs_there(tmp_path):
    path = fpn(tmp_path / "fcn32.onnx", [32, 32])
    net = load(path, size=(64, 48))
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 48)).astype(np.float32)
    model = onnx.load(str(path))
    for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (64, 48)):
        d.dim_value = v
    (ref,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with torch.no_grad():
        (got,) = net(torch.from_numpy(x))
    assert float(np.abs(got.numpy() - ref).max() / np.abs(ref).max()) < 1e-5
    with pytest.raises(ModelError, match=r"fixed at 32x32 and its graph does not run at 50x50 .*--size 32,32"):
        load(path, size=(50, 50))


def test_a_dynamic_model_takes_the_images_size_rounded_to_the_stride(tmp_path, capsys):
    from PIL import Image

    from inverter.cli.main import main

    path = fpn(tmp_path / "dyn.onnx", ["H", "W"])
    Image.fromarray((np.random.default_rng(2).random((50, 70, 3)) * 255).astype(np.uint8)).save(tmp_path / "im.png")
    code = main(["invert", str(path), "--node", "conv2", "--image", str(tmp_path / "im.png"), "--iterations", "2",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert "using the image's 50x70 rounded to a multiple of 32, 64x64" in capsys.readouterr().err
