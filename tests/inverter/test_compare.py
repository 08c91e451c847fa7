"""Layer-graph export and the cross-framework comparison of one layer."""
import json
import re
import shutil

import pytest
import torch

from converters import UserError, load
from inverter import InversionConfig
from inverter.studies.compare import compare, comparison_table, write_comparison
from converters.network.graph_export import export_graph, graph_data
from models.twins.three_frameworks import tensorflow_available, vgg16_bn_three_frameworks


def test_graph_json_edges_and_highlight(vgg16_bn):
    data = json.loads(export_graph(vgg16_bn, "json", highlight=["conv3_1"]))
    assert len(data["nodes"]) == 44 and len(data["edges"]) == 43  # a chain: one edge less than nodes
    marked = [n for n in data["nodes"] if n["highlight"]]
    assert [n["name"] for n in marked] == [vgg16_bn.resolve("conv3_1").name]
    assert "conv3_1" in marked[0]["aliases"] and marked[0]["receptive_field"] == 24
    by_id = {n["id"]: n for n in data["nodes"]}
    for e in data["edges"]:  # every edge follows a real tensor from producer to consumer
        assert e["tensor"] in vgg16_bn.resolve(by_id[e["from"]]["name"]).outputs
        assert e["tensor"] in vgg16_bn.resolve(by_id[e["to"]]["name"]).inputs


def test_graph_text_formats(vgg16_bn):
    dot = export_graph(vgg16_bn, "dot", highlight=["pool2"])
    assert dot.startswith("digraph") and dot.count("->") == 44 and "fillcolor" in dot
    md = export_graph(vgg16_bn, "md", highlight=["pool2"])
    assert "```mermaid" in md and md.count("-->") == 43 and "**`" in md
    page = export_graph(vgg16_bn, "html", highlight=["pool2"])
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert not re.search(r'(src|href)="https?:', page)  # opens on its own, fetches nothing
    if shutil.which("dot"):
        assert "<svg" in export_graph(vgg16_bn, "svg")
    else:
        with pytest.raises(UserError, match="graphviz"):
            export_graph(vgg16_bn, "svg")


def test_resnet_graph_has_skip_edges(model_dir):
    from models.zoo import export

    net = load(export("resnet50", model_dir / "r50_graph.onnx", size=64))
    data = graph_data(net)
    adds = [n for n in data["nodes"] if n["op"] == "Add"]
    assert len(adds) == 16
    into = {n["id"]: 0 for n in adds}
    for e in data["edges"]:
        if e["to"] in into:
            into[e["to"]] += 1
    assert all(v == 2 for v in into.values())


@pytest.fixture(scope="module")
def three(model_dir):
    frameworks = ("pytorch", "caffe", "keras") if tensorflow_available() else ("pytorch", "caffe")
    paths = vgg16_bn_three_frameworks(model_dir / "three", seed=3, size=64, frameworks=frameworks)
    return {k: load(p) for k, p in paths.items()}


def test_same_layer_same_name_in_every_framework(three):
    for framework, net in three.items():
        node = net.resolve("conv3_1")
        assert node.op_type == "Relu", framework
        assert node.shape[1:] in ((256, 16, 16), (16, 16, 256)), framework
        assert net.resolve("conv3_1.bn") is not None
        assert net.resolve("pool3").op_type == "MaxPool", framework


def test_reconstructions_agree_across_frameworks(three, photo, tmp_path):
    # float64: the three exports differ by float32 rounding of folded weights (~1e-7); Adam on
    # a non-convex objective magnifies that along a run, in float32 to ~1e-2 after 200 it.
    cfg = InversionConfig(iterations=60, seed=7, dtype="float64")
    results = compare(three, photo, ["conv3_1"], cfg, progress=False)
    ref = results["pytorch"].image
    for framework, result in results.items():
        diff = float((result.image - ref).abs().mean())
        assert diff <= 1e-3, (framework, diff)
    rows = comparison_table(three, results)
    assert all(r["parity_vs_onnxruntime"] < 1e-4 for r in rows)
    files = write_comparison(three, results, tmp_path, title="VGG16-BN conv3_1")
    table = files["markdown"].read_text()
    assert all(f"| {k} |" in table for k in three)
    assert files["grid"].stat().st_size > 0
