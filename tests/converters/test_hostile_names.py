"""Issue 12, items 1-2: names inside a model file are data. They never run as code, and they are
shown escaped (terminal control characters, DOT attributes)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hostile  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd):
    env_path = {"PYTHONPATH": str(ROOT)}
    import os

    return subprocess.run([sys.executable, "-m", "inverter.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600, env={**os.environ, **env_path})


@pytest.mark.parametrize("where", hostile.WHERE)
def test_payload_names_never_run_in_the_library(where, tmp_path, monkeypatch):
    """Reference: without renaming, onnx2torch + torch.fx run the node-name payload (checked below)."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARK"
    path = hostile.onnx_model(tmp_path / "m.onnx", hostile.payload(marker), where)
    from converters import load

    network = load(path)
    x = torch.randn(1, 3, hostile.SIZE, hostile.SIZE)
    for node in network.nodes:
        network(x, outputs=[node.name])
    assert network.check_parity().max_error < 1e-5
    assert not marker.exists()
    # the original names are what users see and type
    names = [n.name for n in network.nodes]
    if where in ("node", "all"):
        assert all(hostile.payload(marker) in n for n in names)
        assert network.resolve(names[1]).op_type == "Relu"
    if where in ("input", "all"):
        assert network.input_name.startswith("x") and hostile.payload(marker) in network.input_name
    if where in ("tensor", "all"):
        assert network.resolve("r1" + hostile.payload(marker)).op_type == "Relu"


def test_the_payload_is_live_without_the_renaming(tmp_path, monkeypatch):
    """The test above can fail: the same file through onnx2torch directly touches the marker."""
    import onnx
    import onnx2torch

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARK"
    path = hostile.onnx_model(tmp_path / "m.onnx", hostile.payload(marker), "node")
    try:
        onnx2torch.convert(onnx.load(str(path)))(torch.zeros(1, 3, hostile.SIZE, hostile.SIZE))
    except Exception:
        pass
    assert marker.exists()


def test_payload_through_every_command(tmp_path):
    marker = tmp_path / "MARK"
    model = hostile.onnx_model(tmp_path / "m.onnx", hostile.payload(marker), "all")
    from PIL import Image

    image = tmp_path / "img.png"
    # textured: a flat photo is refused before optimising (issue 19), and this test needs the run's files
    Image.fromarray(__import__("numpy").random.default_rng(0).integers(0, 255, (20, 20, 3), dtype="uint8")).save(image)
    relu = "relu1" + hostile.payload(marker)
    runs = {
        "nodes": ["nodes", model],
        "nodes_json": ["nodes", model, "--json"],
        "invert": ["invert", model, "--node", relu, "--image", image, "--iterations", 2, "--out", tmp_path / "inv",
                   "--quiet"],
        "saliency": ["saliency", model, "--image", image, "--out", tmp_path / "sal", "--quiet"],
        "graph_dot": ["graph", model, "--format", "dot", "-o", tmp_path / "g.dot"],
        "graph_html": ["graph", model, "-o", tmp_path / "g.html"],
    }
    for name, args in runs.items():
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode in (0, 2), (name, r.stderr)
        assert not marker.exists(), name
    assert (tmp_path / "inv" / "metrics.json").is_file()


def test_caffe_layer_and_blob_names_through_convert(tmp_path):
    marker = tmp_path / "MARK"
    prototxt, caffemodel = hostile.caffe_files(tmp_path / "caffe", hostile.payload(marker))
    out = tmp_path / "c.onnx"
    r = run_cli("convert", prototxt, "--weights", caffemodel, "-o", out, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert json.loads(r.stdout)["parity_vs_onnxruntime"] < 1e-4
    r = run_cli("nodes", out, "--json", cwd=tmp_path)
    names = [n["name"] for n in json.loads(r.stdout)["nodes"]]
    assert hostile.payload(marker) + "c1" in names  # the Caffe layer name is the node name users see
    assert not marker.exists()


def test_keras_layer_names(tmp_path, monkeypatch):
    pytest.importorskip("tf2onnx")
    from converters.frontends.tensorflow import import_tensorflow

    import_tensorflow()
    import keras

    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARK"
    bad = hostile.payload(marker, bare=True)
    inputs = keras.Input((hostile.SIZE, hostile.SIZE, 3), batch_size=1)
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv" + bad)(inputs)
    h = keras.layers.ReLU(name="relu" + bad)(h)
    saved = tmp_path / "k.keras"
    keras.Model(inputs, h).save(saved)
    from converters import ConversionError, load, to_onnx

    try:
        path = to_onnx(saved, tmp_path / "k.onnx")
    except ConversionError as exc:  # TensorFlow itself refuses such names as op scopes: a clean refusal
        assert "\n" not in str(exc) and not marker.exists()
        return
    network = load(path)
    network(torch.zeros(1, 3, hostile.SIZE, hostile.SIZE), outputs=[network.nodes[-1].name])
    assert network.check_parity().max_error < 1e-4
    assert not marker.exists()
    assert any(bad in n.name or any(bad in a for a in n.aliases) for n in network.nodes)


def test_nodes_escapes_terminal_control_characters(tmp_path):
    model = hostile.onnx_model(tmp_path / "m.onnx", hostile.escapes(), "all")
    r = run_cli("nodes", model, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\r" not in r.stdout
    assert "\\x1b]0;pwned\\x07" in r.stdout  # shown, escaped
    # JSON keeps the exact name (json escapes control characters itself)
    data = json.loads(run_cli("nodes", model, "--json", cwd=tmp_path).stdout)
    assert any(n["name"] == "relu1" + hostile.escapes() for n in data["nodes"])


def test_dot_export_escapes_names(tmp_path):
    name = 'x" color="red"] evil [label="\\'
    model = hostile.onnx_model(tmp_path / "m.onnx", name + hostile.escapes(), "all")
    from converters import load
    from converters.network.graph_export import export_graph

    dot = export_graph(load(model), "dot")
    assert 'color="red"' not in dot and "\x1b" not in dot
    pydot = pytest.importorskip("pydot")
    graphs = pydot.graph_from_dot_data(dot)  # an independent parser: one graph, one node per ONNX node
    assert graphs and len([n for n in graphs[0].get_nodes() if n.get_name() not in ("node", "edge", "graph")]) >= 4
