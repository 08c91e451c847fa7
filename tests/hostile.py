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
    """A PNG of the given size and mode; RGB is noise tinted by `value`, 16-bit gray (`I;16`) a left-to-right
    ramp by default."""
    from PIL import Image

    if mode == "I;16":
        ramp = np.linspace(0, 65535 if value is None else value, width, dtype=np.float64)
        array = np.tile(ramp, (height, 1)).astype(np.uint16)
        image = Image.fromarray(array)
        assert image.mode.startswith("I;16"), image.mode
        image.save(path)
    elif mode == "RGB" and min(width, height) >= 2:  # textured around `value`: a flat photo is refused (issue 19)
        noise = np.random.default_rng(width * 7919 + height).integers(0, 256, (height, width, 3))
        tint = np.asarray((0, 0, 0) if value is None else value, np.float64)
        Image.fromarray((0.4 * noise + 0.6 * tint).astype(np.uint8)).save(path)
    else:
        Image.new(mode, (width, height), color=0 if value is None else value).save(path)
    return path


# ---------------------------------------------------------------- issue 29: hostile models built on the fly
def _save(path: Path, nodes, inputs, outputs, inits=(), opset: int = 17, ir: int = 8) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir
    onnx.save(model, str(path))
    return path


def _float_input(name: str = "x", dims=(1, 3, SIZE, SIZE)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def string_input_model(path: Path) -> Path:
    """The image arrives as a string tensor, Cast to float."""
    nodes = [helper.make_node("Cast", ["s"], ["x"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return _save(path, nodes, [helper.make_tensor_value_info("s", TensorProto.STRING, [1, 3, SIZE, SIZE])],
                 [_float_input("y")])


def sequence_input_model(path: Path) -> Path:
    """The image arrives as a sequence of tensors."""
    nodes = [helper.make_node("SequenceAt", ["seq", "i"], ["x"], name="at"), helper.make_node("Relu", ["x"], ["y"], name="relu")]
    return _save(path, nodes, [helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
                 [_float_input("y")], [numpy_helper.from_array(np.array(0, dtype=np.int64), "i")])


def poisoned_model(path: Path, value: float, index=(1, 2, 0, 1), dtype=np.float32) -> Path:
    """`onnx_model` with `value` written into weight w2 at `index` (in `dtype`)."""
    onnx_model(path, "", "node")
    proto = onnx.load(str(path))
    for k, tensor in enumerate(proto.graph.initializer):
        array = numpy_helper.to_array(tensor).astype(dtype)
        if tensor.name == "w2":
            array[index] = value
        proto.graph.initializer[k].CopyFrom(numpy_helper.from_array(array, tensor.name))
    if dtype != np.float32:  # a float16 model: the input casts up front, the output back
        proto.graph.node[0].input[0] = "x16"
        proto.graph.node.insert(0, helper.make_node("Cast", ["x"], ["x16"], name="cast_in", to=TensorProto.FLOAT16))
        proto.graph.node[-1].output[0] = "y16"
        proto.graph.node.append(helper.make_node("Cast", ["y16"], ["y"], name="cast_out", to=TensorProto.FLOAT))
    onnx.save(proto, str(path))
    return path


def with_metadata(path: Path, text: str) -> Path:
    """`onnx_model` recording `text` as its invert_onnx.input_spec metadata."""
    onnx_model(path, "", "node")
    proto = onnx.load(str(path))
    helper.set_model_props(proto, {"invert_onnx.input_spec": text})
    onnx.save(proto, str(path))
    return path


def strided_model(path: Path) -> Path:
    """A dynamic-size model: Conv 3x3 stride 2 pad 1, MaxPool 2/2, MaxPool 3/2 (the smallest size that
    works is 11: torch's own layers agree, see the test)."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxPool", ["p"], ["y"], name="pool2", kernel_shape=[3, 3], strides=[2, 2])]
    return _save(path, nodes, [_float_input("x", (1, 3, "h", "w"))],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, None, None])], [w])


def growing_model(path: Path, op: str, factor: int) -> tuple[Path, tuple[int, ...]]:
    """A 16x16 model whose one `op` node ("grow") enlarges the image by `factor` per side (Resize,
    Upsample, Tile, Expand, ConstantOfShape, Pad, ConvTranspose); returns the file and the shape it makes."""
    f = factor
    const = lambda values, name, dtype=np.int64: numpy_helper.from_array(np.array(values, dtype=dtype), name)  # noqa: E731
    side = SIZE * f
    opset, ir = 17, 8
    if op == "Resize":
        nodes, inits = [helper.make_node("Resize", ["x", "", "k"], ["big"], name="grow", mode="nearest")], \
            [const([1, 1, f, f], "k", np.float32)]
        shape = (1, 3, side, side)
    elif op == "Upsample":
        nodes, inits, opset, ir = [helper.make_node("Upsample", ["x", "k"], ["big"], name="grow", mode="nearest")], \
            [const([1, 1, f, f], "k", np.float32)], 9, 4
        shape = (1, 3, side, side)
    elif op == "Tile":
        nodes, inits = [helper.make_node("Tile", ["x", "k"], ["big"], name="grow")], [const([1, 1, f, f], "k")]
        shape = (1, 3, side, side)
    elif op == "Expand":
        nodes, inits = [helper.make_node("Expand", ["x", "k"], ["big"], name="grow")], [const([f * f, 3, SIZE, SIZE], "k")]
        shape = (f * f, 3, SIZE, SIZE)
    elif op == "ConstantOfShape":  # the shape is computed from the input's: inference alone cannot follow it
        nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"), helper.make_node("Mul", ["s", "k"], ["s2"], name="mul"),
                 helper.make_node("ConstantOfShape", ["s2"], ["big"], name="grow",
                                  value=numpy_helper.from_array(np.array([1.0], np.float32)))]
        inits = [const([1, 1, f, f], "k")]
        shape = (1, 3, side, side)
    elif op == "Pad":
        pad = side - SIZE
        nodes, inits = [helper.make_node("Pad", ["x", "k"], ["big"], name="grow")], [const([0, 0, 0, 0, 0, 0, pad, pad], "k")]
        shape = (1, 3, side, side)
    elif op == "ConvTranspose":
        nodes = [helper.make_node("ConvTranspose", ["x", "k"], ["big"], name="grow", strides=[f, f], kernel_shape=[f, f])]
        inits = [const(np.ones((3, 1, f, f)), "k", np.float32)]
        shape = (1, 1, side, side)
    else:
        raise ValueError(op)
    nodes.append(helper.make_node("ReduceMean", ["big"], ["m"], name="mean", keepdims=1))
    nodes.append(helper.make_node("Add", ["x", "m"] if op != "Expand" else ["m", "x"], ["y"], name="add"))
    out = [1, 3, SIZE, SIZE]
    return _save(path, nodes, [_float_input()], [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits,
                 opset, ir), shape


def sparse_external_model(folder: Path, claimed: int, dims=(4, 4, 3, 3)) -> Path:
    """`onnx_model` whose weight w2 (of shape `dims`) lives in external data: a sparse file of `claimed`
    bytes (no disk used), its entry claiming them all."""
    folder.mkdir(parents=True, exist_ok=True)
    path = onnx_model(folder / "m.onnx", "", "node")
    proto = onnx.load(str(path))
    tensor = next(t for t in proto.graph.initializer if t.name == "w2")
    del tensor.dims[:]
    tensor.dims.extend(dims)
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w2.bin"), ("offset", "0"), ("length", str(claimed))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    with open(folder / "w2.bin", "wb") as f:
        f.truncate(claimed)
    path.write_bytes(proto.SerializeToString())
    return path


def optimising_cli(*args, cwd: Path | None = None):
    """`invert-onnx ARGS` in a real subprocess, returned once its progress bar shows it is optimising:
    (the process, the stderr chunks read so far and still being read)."""
    import subprocess
    import sys
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "inverter.cli.main", *map(str, args)],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd)
    seen, chunks = threading.Event(), []

    def watch():
        while chunk := proc.stderr.read(64):
            chunks.append(chunk)
            if b"optimising" in b"".join(chunks[-3:]):
                seen.set()

    threading.Thread(target=watch, daemon=True).start()
    assert seen.wait(300), b"".join(chunks)
    return proc, chunks
