"""The benchmark harness on a tiny model: it times the computation it claims to (no timing thresholds)."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from benchmarks import run
from benchmarks.speed import FORWARD, STEP, bench_model, native_cut, onnx_cut, variants
from converters import UserError, load
from converters.frontends.pytorch import export_module


class Tiny(nn.Module):
    """torchvision's shape in miniature: a `features` Sequential first, then a classifier."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


def tiny_module(seed: int) -> Tiny:
    torch.manual_seed(seed)
    module = Tiny().eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    module = tiny_module(0)
    path = export_module(module, tmp_path_factory.mktemp("bench") / "tiny.onnx", size=(32, 32))
    return module, path


def test_native_cut_matches_the_network(tiny):
    module, path = tiny
    network = load(path)
    cut, where = native_cut(module, network, "features.6")
    assert where == "features.6"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(cut(x), network(x, outputs=["features.6"])[0], atol=1e-5)


def test_native_cut_of_a_resnet_stops_inside_a_layer(tmp_path):
    import torchvision

    torch.manual_seed(0)
    module = torchvision.models.resnet18().eval()
    network = load(export_module(module, tmp_path / "resnet18.onnx", size=(32, 32)))
    cut, where = native_cut(module, network, "layer2.1")
    assert where == "layer2.1" and not hasattr(cut, "layer3") and not hasattr(cut, "fc")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = network(x, outputs=["layer2.1"])[0]
        assert torch.allclose(cut(x), expected, atol=1e-4 * float(expected.abs().max()))


def test_onnx_cut_computes_the_node_and_nothing_after_it(tiny):
    _, path = tiny
    network = load(path)
    cut = onnx_cut(network, "features.2")
    assert {n.op_type for n in cut.graph.node} == {"Conv", "BatchNormalization", "Relu"}
    x = torch.randn(2, 3, 32, 32)
    session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {network.input_name: x.numpy()})
    np.testing.assert_allclose(out, network(x, outputs=["features.2"])[0].detach().numpy(), atol=1e-5)


def test_every_step_computes_the_gradient_of_the_inversion_loss(tiny):
    module, path = tiny
    network = load(path)
    fast_net = load(path, channels_last=True, fold_batchnorm=True, inplace_relu=True)
    found = variants(network, "features.6", batch=2, seed=3, fast_net=fast_net, native_module=module, onnxruntime=True)
    differences = found.differences
    assert set(differences) == {"converted", "speed options", "native", "native channels_last", "onnxruntime"}
    assert all(d < 1e-4 for d in differences.values())
    # the same loss written out by hand on the torch module: the images come from the seeded generator
    gen = torch.Generator().manual_seed(3)
    image, original = torch.randn(2, 3, 32, 32, generator=gen), torch.randn(2, 3, 32, 32, generator=gen)
    features = module.features[:7]
    with torch.no_grad():
        target = features(original.clone())
    v = image.clone().requires_grad_(True)
    diff = (features(v) - target).flatten(1)
    ((diff ** 2).sum(1) / (target.flatten(1) ** 2).sum(1)).sum().backward()
    expected = v.grad
    for row in ("converted", "speed options", "native", "native channels_last"):
        found.functions[(row, STEP)]()
        grad = found.image.grad
        assert torch.allclose(grad, expected, atol=1e-5 * float(expected.abs().max())), row


def test_a_native_module_with_other_weights_is_refused(tiny):
    _, path = tiny
    with pytest.raises(UserError, match="do not compute the converted tensor"):
        bench_model(path, "features.6", native_module=tiny_module(1), min_run_time=0.01)


def test_report_is_the_measurements(tiny):
    module, path = tiny
    result = bench_model(path, "features.6", native_module=module, min_run_time=0.05)
    report, measurements = result["report"], result["measurements"]
    medians = {(m.task_spec.sub_label, m.task_spec.description): m.median * 1e3 for m in measurements}
    assert medians == {(row, column): ms for column, rows in report["ms"].items() for row, ms in rows.items()}
    assert set(report["ms"][FORWARD]) == {"converted", "speed options", "native", "native channels_last", "onnxruntime"}
    assert "onnxruntime" not in report["ms"][STEP]
    ms = report["ms"]
    assert report["ratios"]["converted_over_native"] == pytest.approx(ms[STEP]["converted"] / ms[STEP]["native"])
    assert ms[STEP]["converted"] > ms[FORWARD]["converted"]  # the backward pass is not free
    json.dumps(report)


def test_run_prints_the_table_and_writes_the_report(tiny, tmp_path, capsys):
    _, path = tiny
    out = tmp_path / "bench.json"
    assert run.main(["--model", str(path), "--node", "features.6", "--min-run-time", "0.05",
                     "--json", str(out), "--workdir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    (report,) = json.loads(out.read_text())
    assert "native" not in report["ms"][STEP]  # an ONNX file has no native twin
    for row in ("converted", "speed options", "onnxruntime"):
        assert row in printed
    assert "tiny.onnx @ features.6 (32x32, batch 1)" in printed
    assert f"converted_over_onnxruntime_forward {report['ratios']['converted_over_onnxruntime_forward']:.2f}" in printed
