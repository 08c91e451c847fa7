"""Hostile and careless inputs, generated on the fly (issue 12): nothing binary is committed.

`payload(marker)` is a name that, pasted unescaped into Python source, touches `marker`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 16


def payload(marker: Path, bare: bool = False) -> str:
    """The issue's name: code once torch.fx writes it into `getattr(self, "NAME")`.
    bare: the marker's file name only (no '/': Keras refuses it in layer names; run in its folder)."""
    target = marker.name if bare else marker
    return (f'training") if getattr(__import__("os"),"system")("touch {target}") '
            f'else getattr(__import__("torch"),"relu')


def escapes() -> str:
    """A name that sets the terminal's window title and clears the screen."""
    return "conv\x1b]0;pwned\x07\x1b[2J\x1b[H\r\nfake line"


WHERE = ("node", "tensor", "initializer", "input", "output", "all")


def onnx_model(path: Path, name: str, where: str = "all") -> Path:
    """Conv -> Relu -> Conv -> Relu, 1x3x16x16, seeded weights; `name` placed `where` (WHERE)."""
    rng = np.random.default_rng(0)

    def pick(kind: str, default: str) -> str:
        return f"{default}{name}" if where in (kind, "all") else default

    x, y = pick("input", "x"), pick("output", "y")
    w1, b1, w2 = pick("initializer", "w1"), pick("initializer", "b1"), pick("initializer", "w2")
    c1, r1, c2 = pick("tensor", "c1"), pick("tensor", "r1"), pick("tensor", "c2")
    nodes = [
        helper.make_node("Conv", [x, w1, b1], [c1], name=pick("node", "conv1"), pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [c1], [r1], name=pick("node", "relu1")),
        helper.make_node("Conv", [r1, w2], [c2], name=pick("node", "conv2"), pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [c2], [y], name=pick("node", "relu2")),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
             for n, s in ((w1, (4, 3, 3, 3)), (b1, (4,)), (w2, (4, 4, 3, 3)))]
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 4, SIZE, SIZE])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def constant_of_shape_model(path: Path, elements: int) -> Path:
    """A tiny model that builds a float tensor of `elements` values (ConstantOfShape) and adds it."""
    shape = numpy_helper.from_array(np.array([1, 1, 1, elements], dtype=np.int64), "shape")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"], name="big",
                              value=numpy_helper.from_array(np.array([1.0], dtype=np.float32))),
             helper.make_node("ReduceSum", ["big"], ["s"], name="sum", keepdims=1),
             helper.make_node("Add", ["x", "s"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, SIZE, SIZE])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def caffe_files(folder: Path, name: str, *, stride: int = 1, pool_stride: int = 2, group: int = 1) -> tuple[Path, Path]:
    """A two-conv Caffe net whose layer and blob names carry `name`; a matching caffemodel."""
    from converters.frontends.caffe.proto import read_prototxt
    from models.twins.caffe import make_blob

    folder.mkdir(parents=True, exist_ok=True)
    conv1, blob1, conv2, blob2 = f"{name}c1", f"{name}b1", f"{name}c2", f"{name}b2"
    q = lambda s: s.replace("\\", "\\\\").replace('"', '\\"')  # noqa: E731 (prototxt string)
    text = f"""
name: "hostile"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 1 dim: 3 dim: {SIZE} dim: {SIZE} }} }} }}
layer {{ name: "{q(conv1)}" type: "Convolution" bottom: "data" top: "{q(blob1)}"
        convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 stride: {stride} group: {group} }} }}
layer {{ name: "{q(name)}relu" type: "ReLU" bottom: "{q(blob1)}" top: "{q(blob1)}" }}
layer {{ name: "{q(name)}pool" type: "Pooling" bottom: "{q(blob1)}" top: "{q(name)}p"
        pooling_param {{ pool: MAX kernel_size: 2 stride: {pool_stride} }} }}
layer {{ name: "{q(conv2)}" type: "Convolution" bottom: "{q(name)}p" top: "{q(blob2)}"
        convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 }} }}
"""
    prototxt = folder / "hostile.prototxt"
    prototxt.write_text(text)
    net = read_prototxt(prototxt)
    rng = np.random.default_rng(0)
    shapes = {conv1: [(4, 3 // max(group, 1) if group else 3, 3, 3), (4,)], conv2: [(4, 4, 3, 3), (4,)]}
    for layer in net.layer:
        for shape in shapes.get(layer.name, []):
            layer.blobs.append(make_blob(rng.standard_normal(shape).astype(np.float32) * 0.3))
    caffemodel = folder / "hostile.caffemodel"
    caffemodel.write_bytes(net.SerializeToString())
    return prototxt, caffemodel


def nested_prototxt(path: Path, depth: int = 5000) -> Path:
    """A prototxt nested `depth` messages deep (protobuf's text parser recurses)."""
    path.write_text('name: "deep"\nlayer { name: "a" type: "Input" ' + "include { " * depth + "}" * depth + " }\n")
    return path


def png(path: Path, width: int, height: int, mode: str = "RGB", value: int | None = None) -> Path:
    """A PNG of the given size and mode; 16-bit gray (`I;16`) holds a left-to-right ramp by default."""
    from PIL import Image

    if mode == "I;16":
        ramp = np.linspace(0, 65535 if value is None else value, width, dtype=np.float64)
        array = np.tile(ramp, (height, 1)).astype(np.uint16)
        image = Image.fromarray(array)
        assert image.mode.startswith("I;16"), image.mode
        image.save(path)
    else:
        Image.new(mode, (width, height), color=0 if value is None else value).save(path)
    return path
