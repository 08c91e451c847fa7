"""The benchmark's logic on a tiny model: every field present, numbers sane (no timing thresholds)."""
import json
import math

import pytest
import torch
from torch import nn

from converters import load
from converters.frontends.pytorch import export_module
from benchmarks.speed import bench_model, format_table, native_cut, run_bench


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


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    module = Tiny().eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = export_module(module, tmp_path_factory.mktemp("bench") / "tiny.onnx", size=(32, 32))
    return module, path


def test_native_cut_matches_the_network(tiny):
    module, path = tiny
    network = load(path)
    cut, how = native_cut(module, network, "features.6")
    assert how == "features[:7]"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(cut(x), network(x, outputs=["features.6"])[0], atol=1e-5)


def test_native_cut_of_a_resnet_stacks_stem_and_layers(tmp_path):
    import torchvision

    torch.manual_seed(0)
    module = torchvision.models.resnet18().eval()
    network = load(export_module(module, tmp_path / "resnet18.onnx", size=(32, 32)))
    cut, how = native_cut(module, network, "layer2.1")
    assert how == "conv1+bn1+relu+maxpool+layer1+layer2[:2]"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = network(x, outputs=["layer2.1"])[0]
        assert torch.allclose(cut(x), expected, atol=1e-4 * float(expected.abs().max()))


def test_report_fields_and_sane_numbers(tiny):
    module, path = tiny
    report = bench_model(path, "features.6", batches=(1, 2), repeats=2, warmup=1, gemm_n=128,
                         native_module=module)
    assert report["resolved_node"].endswith("Relu")
    assert report["native"]["max_relative_difference"] < 1e-4
    assert report["fast"]["max_relative_difference"] < 1e-4
    assert 0 < report["flops_forward"] < report["flops_full_forward"]
    assert 0 < report["flop_ratio_cut_over_full"] <= 1
    assert report["flops_step"] == 2 * report["flops_forward"]
    for variant in ("converted", "native", "fast", "native_channels_last", "full", "converted_forward",
                    "native_forward", "onnxruntime_forward", "gemm"):
        t = report["times"][variant]
        assert t["repeats"] == 2 and 0 < t["min_ms"] <= t["median_ms"]
    for key in ("converted_over_native", "fast_over_native", "time_cut_over_full",
                "converted_forward_over_onnxruntime", "cut_cost_over_flop_ratio"):
        assert report["ratios"][key] > 0 and report["ratios_best"][key] > 0
    assert all(g > 0 for g in report["gflops"].values())
    assert all(0 < f for f in report["gemm_fraction"].values())
    scaling = report["batch_scaling"]["converted"]
    assert set(scaling["batches"]) == {"1", "2"}
    assert all(row["images_per_s"] > 0 for row in scaling["batches"].values())
    assert report["adam_step_ms"] > 0
    assert set(report["goals"]) >= {"converted_over_native", "cut_cost", "batch_scaling_converted",
                                    "gemm_fraction_converted"}
    for memory in report["peak_memory_mb"].values():
        assert memory is None or memory >= 0
    json.dumps(report)  # JSON-ready


def test_run_bench_on_a_file_without_native_and_the_table(tiny):
    _, path = tiny
    report = run_bench(str(path), "features.2", batches=(1,), repeats=2, warmup=0, native=False, fast=False,
                       full=False, memory=False, single_thread=False, gemm_n=64, gemm_repeats=2)
    assert report["gemm"]["best_gflops"] > 0
    (result,) = report["results"]
    assert "native" not in result["times"] and "fast" not in result["times"]
    assert math.isclose(result["flop_ratio_cut_over_full"], result["flops_forward"] / result["flops_full_forward"])
    table = format_table(report)
    assert "| tiny | features.2 | 32 |" in table
    assert "converted" in table and "onnxruntime forward" in table


def test_keep_freed_memory_in_a_fresh_process():
    """Process-wide allocator setting: checked in a subprocess so this test session keeps glibc's defaults."""
    import subprocess
    import sys

    code = "from inverter.cli.memory import describe, keep_freed_memory; ok = keep_freed_memory(); " \
           "print(ok, describe()['keep_freed_memory'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1] and out[0] in ("True", "False")
