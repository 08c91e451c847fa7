"""Every subcommand run as a user runs it, its output checked against an independent computation."""
import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from converters import load
from inverter.io.images import load_image
from models.zoo import export


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "inverter.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def resnet_path(model_dir):
    return export("resnet50", model_dir / "r50_cli.onnx", seed=0, size=64)


def _onnxruntime_logits(path, pixels):
    """The model's logits from onnxruntime, torchvision preprocessing done by hand (independent of InputSpec)."""
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (pixels.numpy().astype(np.float32) - mean) / std
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_help_names_every_command():
    from inverter.cli.main import COMMANDS

    r = run_cli("--help")
    assert r.returncode == 0
    for command in COMMANDS:
        assert f"    {command}" in r.stdout, command
        sub = run_cli(command, "--help")
        assert sub.returncode == 0 and f"invert-onnx {command}" in sub.stdout, command
    assert run_cli().returncode == 2  # nothing to do: the help on stderr, exit 2


def test_convert_zoo_model_matches_onnxruntime_and_torch(tmp_path):
    out = tmp_path / "vgg.onnx"
    r = run_cli("convert", "--arch", "vgg16_bn_features", "--size", "32", "-o", out, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["parity_vs_onnxruntime"] < 1e-4 and summary["nodes"] == len(onnx.load(str(out)).graph.node)


def test_graph_json_lists_the_onnx_nodes(vgg16_bn_path, tmp_path):
    out = tmp_path / "g.json"
    r = run_cli("graph", vgg16_bn_path, "--format", "json", "-o", out, "--node", "conv2_1")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert len(data["nodes"]) == len(onnx.load(str(vgg16_bn_path)).graph.node)
    assert sum(n["highlight"] for n in data["nodes"]) == 1


def test_graph_onnx_for_netron_documents_our_names_and_computes_the_same(vgg16_bn_path, tmp_path):
    """--format onnx: the model Netron opens, each node's documentation naming its aliases; the
    graph itself is unchanged (onnxruntime gives the same output as on the original file)."""
    out = tmp_path / "g.onnx"
    r = run_cli("graph", vgg16_bn_path, "--format", "onnx", "-o", out, "--node", "conv3_1")
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    docs = {n.name: n.doc_string for n in model.graph.node}
    original = onnx.load(str(vgg16_bn_path))
    conv = next(n.name for n in original.graph.node if n.op_type == "Conv")
    assert "conv1_1" in docs[conv].splitlines()[0] and "receptive field: 3 px" in docs[conv]
    highlight = json.loads({p.key: p.value for p in model.metadata_props}["invert_onnx.highlight"])
    assert len(highlight) == 1 and "conv3_1" in docs[highlight[0]].splitlines()[0]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    runs = [ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]) for f in (vgg16_bn_path, out)]
    a, b = (s.run(None, {s.get_inputs()[0].name: x})[0] for s in runs)
    assert np.array_equal(a, b)
    refused = run_cli("graph", vgg16_bn_path, "--format", "onnx")  # binary: never to the terminal
    assert refused.returncode == 2 and "-o" in refused.stderr and "Traceback" not in refused.stderr


def test_compare_two_copies_of_one_model_agree(vgg16_bn_path, photo, tmp_path):
    copy = tmp_path / "copy.onnx"
    shutil.copy(vgg16_bn_path, copy)
    out = tmp_path / "cmp"
    r = run_cli("compare", vgg16_bn_path, copy, "--node", "conv2_1", "--image", photo, "--iterations", 5,
                "--out", out, "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert len(rows) == 2 and rows[0]["feature_error"] == rows[1]["feature_error"]  # same graph, same seed
    assert (out / "comparison.png").is_file() or any(out.glob("*.png"))


def test_sweep_writes_one_row_per_setting(vgg16_bn_path, photo, tmp_path):
    out = tmp_path / "sw"
    r = run_cli("sweep", vgg16_bn_path, "--image", photo, "--kind", "lambda_tv", "--values", "1e-6,1e-2",
                "--node", "conv1_2", "--iterations", 4, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["lambda_tv"]) for r in rows] == [1e-6, 1e-2]
    # a strong TV prior leaves a smoother image: its TV is lower (computed here from the PNGs)
    from PIL import Image

    def tv(path):
        a = np.asarray(Image.open(path), dtype=np.float64)
        return np.abs(np.diff(a, axis=0)).sum() + np.abs(np.diff(a, axis=1)).sum()

    pngs = sorted((out / "runs").glob("*.png"), key=lambda p: float(p.stem.split("_")[-1]))
    assert tv(pngs[1]) < tv(pngs[0])


def test_visualize_raises_the_channel(vgg16_bn_path, tmp_path):
    out = tmp_path / "vis"
    # the conv's own output: after the ReLU a channel of these random weights can be dead at the start, and the
    # figure's defaults (lr 0.05, jitter 4) need more than 10 steps to wake it
    r = run_cli("visualize", vgg16_bn_path, "--node", "conv2_1.conv", "--channel", 3, "--iterations", 10,
                "--out", out, "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    key = "channel:conv2_1.conv:3"
    assert summary["final_loss"][key][0] < summary["first_loss"][key][0]  # the channel fires more
    assert (out / "visualization.png").is_file()


def test_saliency_class_is_onnxruntime_top1(resnet_path, photo, tmp_path):
    out = tmp_path / "sal"
    r = run_cli("saliency", resnet_path, "--image", photo, "--out", out, "--json")
    assert r.returncode == 0, r.stderr
    top1 = int(_onnxruntime_logits(resnet_path, load_image(photo, (64, 64))).argmax())
    assert json.loads(r.stdout)["class"] == top1


def test_fool_reaches_target_by_onnxruntime(resnet_path, photo, tmp_path):
    runner_up = int(np.argsort(_onnxruntime_logits(resnet_path, load_image(photo, (64, 64)))[0])[-2])
    out = tmp_path / "fool"
    r = run_cli("fool", resnet_path, "--image", photo, "--target", runner_up, "--iterations", 100, "--out", out,
                "--json", "--quiet")
    assert r.returncode == 0, r.stderr + r.stdout
    from PIL import Image

    fooled = torch.from_numpy(np.asarray(Image.open(out / "fooled.png"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert int(_onnxruntime_logits(resnet_path, fooled).argmax()) == runner_up  # the saved 8-bit PNG fools it too


def test_style_loss_falls(vgg16_bn_path, photo, tmp_path):
    from PIL import Image

    style = tmp_path / "style.png"
    Image.open(photo).transpose(Image.Transpose.ROTATE_90).save(style)
    out = tmp_path / "style"
    r = run_cli("style", vgg16_bn_path, "--content", photo, "--style", style, "--style-node", "conv1_2",
                "--content-node", "conv2_1", "--iterations", 30, "--out", out, "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["final_loss"]["total"][0] < summary["first_loss"]["total"][0]


def test_bench_reports_both_variants_and_refuses_unknown_nodes(vgg16_bn_path):
    r = run_cli("bench", vgg16_bn_path, "--node", "conv1_2", "--seconds", "0.2", "--json")
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)["ms_per_step"]) == {"plain", "speed options"}
    bad = run_cli("bench", vgg16_bn_path, "--node", "conv9_9")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.real_weights
def test_demo_runs_without_flags_semantics(tmp_path):
    """`invert-onnx demo` with its defaults is the README's first command; here with fewer iterations
    and one node, in a scratch folder (CI runs the real one)."""
    r = run_cli("demo", "--node", "relu1_2", "--iterations", 80, "--quiet", "--out", tmp_path / "demo")
    assert r.returncode == 0, r.stderr
    assert "figure:" in r.stdout
    rows = json.loads((tmp_path / "demo" / "sweep.json").read_text())["runs"]
    assert rows[0]["psnr_db"] > 15  # relu1_2 of real VGG16 keeps the photo


def test_a_guessed_preprocessing_is_said_and_recorded(vgg16_bn_path, photo, tmp_path):
    model = onnx.load(str(vgg16_bn_path))
    del model.metadata_props[:]  # a file from another exporter: no recorded preprocessing
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    out = tmp_path / "run"
    r = run_cli(bare, "--node", "conv1_1", "--image", photo, "--iterations", 2, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    # issue 19: calibrated from the network (VGG16-BN's first BatchNorm knows torchvision's preprocessing)
    assert "records no preprocessing; calibrated ImageNet-standardised by the first BatchNorm" in r.stdout
    recorded = json.loads((out / "metrics.json").read_text())["input"]
    assert recorded["source"].startswith("calibrated") and recorded["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert recorded["confidence"] == "high"
    # every command says it, not only invert (issue 14, item 6)
    r = run_cli("saliency", bare, "--image", photo, "--out", tmp_path / "sal", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "note: bare.onnx: the model records no preprocessing; calibrated ImageNet-standardised" in r.stderr
