"""The files users make: torchvision's classifiers x torch.onnx's exporters, built here at test time.

A user's first file is `torch.onnx.export(torchvision.models.X(...), x, "x.onnx")`, by torch's
default exporter (dynamo, external data, `node_Conv_291` names, module paths in node metadata,
opset 20, `Reshape(allowzero=1)`) or the legacy one (`/layer2/layer2.1/...` scopes, equal weights
merged behind Identity nodes). Each file must load, match onnxruntime at its outputs, list its nodes
with the names the papers use, and invert a few steps at an early node. Weights are torchvision's
random init, perturbed so that no two tensors are equal (one run keeps the merge). Inputs are small
where the architecture allows; AlexNet and VGG go through an adaptive pool that the legacy exporter
takes only at 224 px, so those files are full size (`full_size`).
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision

from converters import load
from inverter import InversionConfig, invert

FULL = pytest.mark.full_size
# network -> (input size, builder kwargs, early node to invert, marks)
NETS = {
    "alexnet": (224, {}, "conv1", [FULL]),
    "vgg11": (224, {}, "conv1_1", [FULL]),
    "vgg16": (224, {}, "conv1_2", [FULL]),
    "vgg16_bn": (224, {}, "conv1_2", [FULL]),
    "resnet18": (64, {}, "layer1.0", []),
    "resnet50": (64, {}, "layer1.0", []),
    "googlenet": (64, {"aux_logits": False, "init_weights": True}, "conv1", []),
    "densenet121": (64, {}, "features.denseblock1", []),
    "squeezenet1_0": (64, {}, "features.3", []),
    "mobilenet_v2": (64, {}, "features.1", []),
    "mobilenet_v3_small": (64, {}, "features.1", []),
    "efficientnet_b0": (64, {}, "features.1", []),
    "convnext_tiny": (64, {}, "features.1", []),
    "shufflenet_v2_x0_5": (64, {}, "stage2", []),
    "vit_b_16": (32, {"image_size": 32}, "conv_proj", []),
}
EXPORTERS = {
    "dynamo": dict(dynamo=True),
    "legacy": dict(dynamo=False),
}
# the other ways users call the exporters, on two networks
VARIANTS = {
    "dynamo-no-optimize": dict(dynamo=True, optimize=False),
    "legacy-opset13": dict(dynamo=False, opset_version=13),
    "legacy-opset17": dict(dynamo=False, opset_version=17),
    "legacy-no-folding": dict(dynamo=False, do_constant_folding=False),
    "legacy-dynamic-batch": dict(dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}}),
}
CASES = ([pytest.param(n, e, marks=NETS[n][3], id=f"{n}-{e}") for n in NETS for e in EXPORTERS]
         + [pytest.param(n, v, id=f"{n}-{v}") for n in ("resnet18", "mobilenet_v3_small") for v in VARIANTS])


def build(name: str, perturb: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None, **NETS[name][1]).eval()
    if perturb:  # no two tensors equal: the legacy exporter would merge them
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for t in list(net.parameters()) + [b for b in net.buffers() if b.is_floating_point()]:
                t.add_(torch.rand(t.shape, generator=g) * 1e-2 * (t.abs().mean() + 1e-2))
    return net


def export(net: torch.nn.Module, path, size: int, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, size, size),), str(path), **kwargs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(network, exporter) -> the exported file, made once per module run."""
    folder = tmp_path_factory.mktemp("torchvision")
    made: dict[tuple[str, str], object] = {}

    def get(name: str, exporter: str):
        if (name, exporter) not in made:
            path = folder / f"{name}-{exporter}.onnx"
            export(build(name), path, NETS[name][0], **{**EXPORTERS, **VARIANTS}[exporter])
            made[name, exporter] = path
        return made[name, exporter]
    return get


@pytest.fixture(scope="module")
def nets(files):
    """(network, exporter) -> the loaded Network, once per module run (AlexNet's and VGG's take seconds)."""
    loaded: dict[tuple[str, str], object] = {}

    def get(name: str, exporter: str):
        if (name, exporter) not in loaded:
            loaded[name, exporter] = load(files(name, exporter), channels_last=True)  # as the CLI loads
        return loaded[name, exporter]
    return get


def onnxruntime_outputs(path, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


@pytest.mark.parametrize("name,exporter", CASES)
def test_user_export_loads_matches_onnxruntime_and_inverts(files, nets, name, exporter):
    size, _, early, _ = NETS[name]
    path = files(name, exporter)
    net = nets(name, exporter)
    batch = 2 if exporter == "legacy-dynamic-batch" else 1
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    expected = onnxruntime_outputs(path, x.numpy())
    with torch.no_grad():
        got = net(x)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert rel(g, e) < 1e-4, f"{name} {exporter}: torch graph differs from onnxruntime by {rel(g, e):.2e}"
    # the node table: every converted node listed with its shape, the early node found by its name
    assert all(n.shape is not None for n in net.nodes if n.module_name), "a converted node has no shape"
    node = net.resolve(early)
    assert node.op_type not in ("Identity", "Transpose"), f"{early} resolves to {node.op_type}"
    result = invert(net, torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3)), early,
                    InversionConfig(iterations=4, seed=0), progress=False)
    assert torch.isfinite(result.image).all()
    loss = result.history["total"][:, 0]
    assert np.isfinite(loss).all() and loss[-1] < loss[0], f"the loss did not fall: {loss}"


# the names the papers use, against torchvision's module paths (the block or layer output)
PAPER_NAMES = {
    "alexnet": {"conv1": "features.1", "pool1": "features.2", "conv2": "features.4", "pool2": "features.5",
                "conv3": "features.7", "conv4": "features.9", "conv5": "features.11", "pool5": "features.12",
                "conv3.conv": "features.6", "fc6": "classifier.2", "fc6.fc": "classifier.1", "fc7": "classifier.5",
                "fc8": "classifier.6"},
    "vgg11": {"conv1_1": "features.1", "pool1": "features.2", "conv2_1": "features.4", "pool2": "features.5",
              "conv3_1": "features.7", "conv3_2": "features.9", "pool3": "features.10", "conv5_2": "features.19",
              "pool5": "features.20", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"},
    "vgg16": {"conv1_2": "features.3", "pool1": "features.4", "conv3_1": "features.11", "conv3_3": "features.15",
              "pool3": "features.16", "conv5_3": "features.29", "pool5": "features.30", "fc6": "classifier.1",
              "fc8": "classifier.6"},
    "vgg16_bn": {"conv1_1": "features.2", "conv1_2": "features.5", "pool1": "features.6", "conv3_1": "features.16",
                 "pool3": "features.23", "conv5_3": "features.42", "pool5": "features.43", "fc6": "classifier.1"},
    "resnet18": {"conv1": "relu", "pool1": "maxpool", "res2a": "layer1.0", "res2": "layer1", "res3b": "layer2.1",
                 "res4a": "layer3.0", "res5": "layer4", "pool5": "avgpool", "fc": "fc"},
    "resnet50": {"res2c": "layer1.2", "res3d": "layer2.3", "res3": "layer2", "res4f": "layer3.5", "res5c": "layer4.2",
                 "pool1": "maxpool", "fc": "fc"},
}
# module paths that name the same block in both exporters' files
MODULE_PATHS = {
    "resnet18": ["layer1", "layer2.1", "layer3.0", "layer4"],
    "densenet121": ["features.denseblock1", "features.transition2", "features.denseblock3"],
    "googlenet": ["inception3a", "inception4e", "maxpool3"],
    "mobilenet_v2": ["features.3", "features.10"],
    "efficientnet_b0": ["features.2", "features.5"],
}


CANONICAL = re.compile(r"^(conv\d+(_\d+)?|relu\d+(_\d+)?|pool\d|norm\d|fc\d*|res\d[a-z0-9]*)(\.|$)")


def _marks(name):
    return NETS[name][3]


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in PAPER_NAMES])
def test_paper_names_are_torchvision_layers_in_both_exporters(nets, name):
    for exporter in EXPORTERS:
        net = nets(name, exporter)
        got = {paper: net.resolve(paper).name for paper in PAPER_NAMES[name]}
        want = {paper: net.resolve(module).name for paper, module in PAPER_NAMES[name].items()}
        assert got == want, f"{name} ({exporter})"


@pytest.mark.parametrize("name", [pytest.param(n, marks=_marks(n)) for n in dict.fromkeys([*PAPER_NAMES, *MODULE_PATHS])])
def test_same_name_same_tensor_in_both_exporters(nets, name):
    """Every canonical name of one file is in the other and holds the same tensor on one input."""
    pair = [nets(name, e) for e in EXPORTERS]
    canonical = [sorted(a for n in net.nodes for a in n.aliases if CANONICAL.match(a)) for net in pair]
    if name in PAPER_NAMES:  # (GoogLeNet's modules are named conv1 ... too: module paths, not canonical)
        assert canonical[0] == canonical[1]
        names = canonical[0] + MODULE_PATHS.get(name, [])
    else:
        names = MODULE_PATHS[name]
    assert names
    size = NETS[name][0]
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        a, b = (net(x, outputs=names) for net in pair)
    for n, ta, tb in zip(names, a, b):
        assert ta.shape == tb.shape and rel(ta, tb) < 1e-4, f"{name}: {n} differs between the exporters"


def test_equal_weights_merged_by_the_legacy_exporter(tmp_path):
    """A fresh ResNet-18: BN folded into its convs gives equal zero biases, which the legacy exporter merges into
    one initializer read through Identity nodes (onnx2torch alone fails on them with a bare KeyError)."""
    import onnx

    net = build("resnet18", perturb=False)
    path = tmp_path / "fresh.onnx"
    export(net, path, 64, dynamo=False)
    identities = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Identity"]
    assert identities, "the exporter no longer merges equal initializers: this test needs another file"
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        (got,) = load(path)(x)
    assert rel(got, onnxruntime_outputs(path, x.numpy())[0]) < 1e-4


def test_module_paths_survive_shape_folding(files):
    """The default exporter without its optimiser leaves Shape/Expand/CastLike computations that are folded at
    load; the module paths recorded in node metadata outlive the folding, and the computed zero biases become
    initializers the Conv converter reads."""
    net = load(files("resnet18", "dynamo-no-optimize"))
    assert any("CastLike" in n for n in net.notes)
    assert net.resolve("layer2.1").op_type == "Relu" and net.resolve("res3b").name == net.resolve("layer2.1").name


def test_resnet_layer_sweep_runs_the_seeds_layers(nets):
    """A layer sweep of a ResNet goes conv1, pool1, then block by block through res2-res5, then pool5, and its
    labels are those names (a VGG keeps every conv/relu/pool node)."""
    from inverter.studies.sweep import default_nodes

    net = nets("resnet18", "dynamo")
    want = ["conv1", "pool1"] + [f"res{s}{b}" for s in range(2, 6) for b in "ab"] + ["pool5"]
    assert default_nodes(net, "layer") == want
    assert [net.resolve(n).name for n in want[2:10:2]] == [net.resolve(f"layer{k}.0").name for k in range(1, 5)]
