"""Caffe nets written by invert-onnx: prototxt + caffemodel pairs for tests and demos.

`write_caffe("vgg16_bn", folder, state_dict=...)` writes a Caffe VGG16-BN with Caffe's layer
names (conv1_1, bn1_1, scale1_1, relu1_1, pool1, ..., fc6, relu6, drop6, fc7, fc8, prob)
and the weights of a torchvision state_dict, or seeded random weights. The prototxt is the
text form of the NetParameter built here; the caffemodel is the same net with its blobs.

Weights from torchvision are copied as they are: the written net computes what the torchvision
module computes on the same input tensor (RGB, ImageNet-standardised). Convert it with that
preprocessing: `caffe_to_onnx(..., input_spec=models.zoo.TORCHVISION_SPEC)`. Seeded random
nets have no preprocessing of their own; Caffe's default (BGR, [0, 255], mean subtracted) is fine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from google.protobuf import text_format

from converters.frontends.caffe.proto import BlobProto, LayerParameter, NetParameter
from converters.errors import ModelError

ARCHITECTURES = ("caffenet", "alexnet", "vgg16", "vgg16_bn")
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
FC_UNITS = (4096, 4096, 1000)
# Caffe's BatchNorm stores running sums and their total weight (the third blob); trained nets
# carry weights like this one, so readers must divide by it.
BN_FACTOR = 999.98


class _Net:
    """Layers and their blobs, in order."""

    def __init__(self, name: str, size: int):
        self.net = NetParameter(name=name)
        self.blobs: dict[str, list[np.ndarray]] = {}
        data = self.layer("data", "Input", [], ["data"])
        data.input_param.shape.add().dim.extend([1, 3, size, size])
        self.shape = (3, size, size)  # of the last blob, without the batch

    def layer(self, name: str, kind: str, bottom: list[str], top: list[str]) -> LayerParameter:
        layer = self.net.layer.add(name=name, type=kind)
        layer.bottom.extend(bottom)
        layer.top.extend(top)
        return layer

    def conv(self, name, bottom, out, kernel, weights, *, stride=1, pad=0, group=1):
        layer = self.layer(name, "Convolution", [bottom], [name])
        p = layer.convolution_param
        p.num_output, p.group = out, group
        p.kernel_size.append(kernel)
        if stride != 1:
            p.stride.append(stride)
        if pad:
            p.pad.append(pad)
        c, h, w = self.shape
        self.shape = (out, (h + 2 * pad - kernel) // stride + 1, (w + 2 * pad - kernel) // stride + 1)
        self.blobs[name] = list(weights)
        return name

    def relu(self, name, blob):
        self.layer(name, "ReLU", [blob], [blob])

    def batch_norm(self, bn_name, scale_name, blob, mean, var, gamma, beta):
        self.layer(bn_name, "BatchNorm", [blob], [blob])
        self.blobs[bn_name] = [mean * BN_FACTOR, var * BN_FACTOR, np.array([BN_FACTOR], np.float32)]
        self.layer(scale_name, "Scale", [blob], [blob]).scale_param.bias_term = True
        self.blobs[scale_name] = [gamma, beta]

    def lrn(self, name, bottom):
        p = self.layer(name, "LRN", [bottom], [name]).lrn_param
        p.local_size, p.alpha, p.beta = 5, 1e-4, 0.75
        return name

    def pool(self, name, bottom, kernel, stride):
        p = self.layer(name, "Pooling", [bottom], [name]).pooling_param
        p.pool, p.kernel_size, p.stride = p.MAX, kernel, stride
        c, h, w = self.shape
        up = lambda n: -(-(n - kernel) // stride) + 1  # Caffe rounds up (no padding here)
        self.shape = (c, up(h), up(w))
        return name

    def fc(self, name, bottom, out, weights):
        self.layer(name, "InnerProduct", [bottom], [name]).inner_product_param.num_output = out
        self.shape = (out,)
        self.blobs[name] = list(weights)
        return name

    def dropout(self, name, blob):
        self.layer(name, "Dropout", [blob], [blob]).dropout_param.dropout_ratio = 0.5

    def write(self, out_dir: Path, stem: str, header: str) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        prototxt, caffemodel = out_dir / f"{stem}.prototxt", out_dir / f"{stem}.caffemodel"
        prototxt.write_text(f"# {header}\n" + to_text(self.net))
        trained = NetParameter()
        trained.CopyFrom(self.net)
        for layer in trained.layer:
            layer.blobs.extend(make_blob(a) for a in self.blobs.get(layer.name, []))
        caffemodel.write_bytes(trained.SerializeToString())
        return prototxt, caffemodel


class _Weights:
    """Blobs from a torchvision state_dict, or seeded He-normal random ones."""

    def __init__(self, state_dict: dict[str, torch.Tensor] | None, seed: int, arch: str):
        self.state = state_dict
        self.rng = np.random.default_rng(seed)
        self.arch = arch

    def get(self, key: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
        if self.state is not None:
            if key not in self.state:
                raise ModelError(f"the state_dict has no {key!r}: it does not fit {self.arch}")
            array = self.state[key].detach().cpu().numpy().astype(np.float32)
            if array.shape != shape:
                raise ModelError(f"{key} has shape {array.shape}, {self.arch} at this size needs {shape}")
            return array
        n = shape[0]
        if kind == "weight":
            fan_in = int(np.prod(shape[1:]))
            return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if kind == "bias":
            return (self.rng.standard_normal(n) * 0.01).astype(np.float32)
        if kind == "running_mean":
            return (self.rng.standard_normal(n) * 0.1).astype(np.float32)
        if kind == "running_var":
            return (self.rng.random(n) + 0.5).astype(np.float32)
        if kind == "gamma":
            return (self.rng.random(n) + 0.5).astype(np.float32)
        return (self.rng.standard_normal(n) * 0.1).astype(np.float32)  # beta


def _classifier(net: _Net, weights: _Weights, bottom: str, first: int, keys: list[str],
                fc_units: tuple[int, int, int]) -> None:
    """fc6 -> relu6 -> drop6 -> fc7 -> relu7 -> drop7 -> fc8 -> prob (AlexNet and VGG alike)."""
    for k, units in enumerate(fc_units):
        name = f"fc{first + k}"
        inputs = int(np.prod(net.shape))
        bottom = net.fc(name, bottom, units, [weights.get(f"{keys[k]}.weight", (units, inputs), "weight"),
                                              weights.get(f"{keys[k]}.bias", (units,), "bias")])
        if k < 2:
            net.relu(f"relu{first + k}", name)
            net.dropout(f"drop{first + k}", name)
    net.layer("prob", "Softmax", [bottom], ["prob"])


def _alexnet(arch: str, weights: _Weights, size: int, features_only: bool, fc_units) -> _Net:
    """Caffe's AlexNet (norm before pool) or CaffeNet (pool before norm), group-2 convolutions."""
    net = _Net(arch, size)
    norm_first = arch == "alexnet"
    blob = "data"
    for i, (out, kernel, stride, pad, group) in enumerate(
            [(96, 11, 4, 0, 1), (256, 5, 1, 2, 2), (384, 3, 1, 1, 1), (384, 3, 1, 1, 2), (256, 3, 1, 1, 2)], 1):
        c = net.shape[0]
        blob = net.conv(f"conv{i}", blob, out, kernel,
                        [weights.get(f"conv{i}.weight", (out, c // group, kernel, kernel), "weight"),
                         weights.get(f"conv{i}.bias", (out,), "bias")], stride=stride, pad=pad, group=group)
        net.relu(f"relu{i}", blob)
        if i in (1, 2):
            if norm_first:
                blob = net.pool(f"pool{i}", net.lrn(f"norm{i}", blob), 3, 2)
            else:
                blob = net.lrn(f"norm{i}", net.pool(f"pool{i}", blob, 3, 2))
    blob = net.pool("pool5", blob, 3, 2)
    if not features_only:
        _classifier(net, weights, blob, 6, ["fc6", "fc7", "fc8"], fc_units)
    return net


def _vgg16(arch: str, weights: _Weights, size: int, features_only: bool, fc_units) -> _Net:
    """Caffe's VGG16 layer names over torchvision's `features.N` / `classifier.N` tensors."""
    net = _Net(arch, size)
    bn = arch == "vgg16_bn"
    blob, index, block, conv = "data", 0, 1, 1
    for item in VGG16:
        if item == "M":
            blob = net.pool(f"pool{block}", blob, 2, 2)
            block, conv, index = block + 1, 1, index + 1
            continue
        c, key = net.shape[0], f"features.{index}"
        name = f"conv{block}_{conv}"
        blob = net.conv(name, blob, item, 3, [weights.get(f"{key}.weight", (item, c, 3, 3), "weight"),
                                              weights.get(f"{key}.bias", (item,), "bias")], pad=1)
        if bn:
            key = f"features.{index + 1}"
            net.batch_norm(f"bn{block}_{conv}", f"scale{block}_{conv}", blob,
                           weights.get(f"{key}.running_mean", (item,), "running_mean"),
                           weights.get(f"{key}.running_var", (item,), "running_var"),
                           weights.get(f"{key}.weight", (item,), "gamma"),
                           weights.get(f"{key}.bias", (item,), "beta"))
        net.relu(f"relu{block}_{conv}", blob)
        index += 3 if bn else 2
        conv += 1
    if not features_only:
        _classifier(net, weights, blob, 6, ["classifier.0", "classifier.3", "classifier.6"], fc_units)
    return net


def write_caffe(arch: str, out_dir: str | Path, *, state_dict: dict[str, torch.Tensor] | None = None,
                seed: int = 0, features_only: bool = False, size: int | None = None,
                fc_units: tuple[int, int, int] = FC_UNITS) -> tuple[Path, Path]:
    """Write `{arch}.prototxt` and `{arch}.caffemodel` into out_dir; return their paths.

    arch: caffenet | alexnet | vgg16 | vgg16_bn. state_dict: torchvision tensors for the VGGs
    (`features.N.*`, `classifier.N.*`), AlexNet-style names (`conv1.weight`, `fc6.weight`) for
    caffenet/alexnet; None for seeded random weights. features_only stops at pool5. size: the
    input side (default 227 for AlexNet/CaffeNet, 224 for VGG); fc_units: fc6, fc7, fc8 widths.
    """
    if arch not in ARCHITECTURES:
        raise ModelError(f"unknown Caffe architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    weights = _Weights(state_dict, seed, arch)
    if arch in ("caffenet", "alexnet"):
        net = _alexnet(arch, weights, size or 227, features_only, tuple(fc_units))
    else:
        net = _vgg16(arch, weights, size or 224, features_only, tuple(fc_units))
    source = "torchvision state_dict" if state_dict is not None else f"seeded random weights (seed {seed})"
    header = f"{arch} written by invert-onnx (models/caffe_zoo.py) with {source}"
    return net.write(Path(out_dir), arch, header)


# ----------------------------------------------------------------------------- writing Caffe files
def make_blob(array: np.ndarray) -> BlobProto:
    """A float blob with `shape.dim` (what current Caffe writes)."""
    array = np.asarray(array, dtype=np.float32)
    blob = BlobProto()
    blob.shape.dim.extend(int(d) for d in array.shape)
    # `data` (field 5) as one packed run of little-endian floats: far faster than extend()
    payload = array.astype("<f4").tobytes()
    blob.MergeFromString(bytes([5 << 3 | 2]) + _varint(len(payload)) + payload)
    return blob


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def to_text(net: NetParameter) -> str:
    """A NetParameter in prototxt form."""
    return text_format.MessageToString(net)
