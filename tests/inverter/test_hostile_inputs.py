"""Issue 12, items 3-11: careless or hostile inputs end with one line and exit 2 (or 130), before the work."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hostile  # noqa: E402

from inverter.cli.main import main  # noqa: E402


def cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, err


def one_line(err: str) -> str:
    """The error is one line. A `note:` line before it says what loading the model assumed (a file that
    records no preprocessing, as these do), a warning what a finished run is worth (no better than a flat
    image: issue 19): information, not part of the error."""
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("note: ", "invert-onnx: warning:"))]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------- item 8: refused when parsed
PARSE_CASES = {
    "lr_inf": (["invert", "M", "--node", "a", "--image", "i", "--lr", "inf"], "lr"),
    "lambda_tv_inf": (["invert", "M", "--node", "a", "--image", "i", "--lambda-tv", "inf"], "lambda"),
    "init_scale_inf": (["invert", "M", "--node", "a", "--image", "i", "--init-scale", "inf"], "init"),
    "alpha_inf": (["invert", "M", "--node", "a", "--image", "i", "--alpha", "inf"], "alpha"),
    "lambda_alpha_huge": (["invert", "M", "--node", "a", "--image", "i", "--lambda-alpha", "1e300"], "lambda"),
    "scale_nan": (["invert", "M", "--node", "a", "--image", "i", "--scale", "nan"], "finite"),
    "scale_inf": (["invert", "M", "--node", "a", "--image", "i", "--scale", "inf"], "finite"),
    "scale_zero": (["invert", "M", "--node", "a", "--image", "i", "--scale", "0"], "> 0"),
    "mean_nan": (["invert", "M", "--node", "a", "--image", "i", "--mean", "nan,nan,nan"], "finite"),
    "std_inf": (["invert", "M", "--node", "a", "--image", "i", "--std", "inf,inf,inf"], "finite"),
    "seed_huge": (["invert", "M", "--node", "a", "--image", "i", "--seed", str(10**30)], "seed"),
    "device_cuda_abc": (["invert", "M", "--node", "a", "--image", "i", "--device", "cuda:abc"], "device"),
    "device_mps": (["invert", "M", "--node", "a", "--image", "i", "--device", "mps"], "mps"),
    "channel_negative": (["visualize", "M", "--channel", "-1"], "index"),
    "class_negative": (["visualize", "M", "--class", "-1"], "index"),
    "saliency_class_negative": (["saliency", "M", "--image", "i", "--class", "-1"], "index"),
    "target_negative": (["fool", "M", "--image", "i", "--target", "-1"], "index"),
    "neuron_letters": (["visualize", "M", "--neuron", "a,b"], "neuron|whole number"),
    "neuron_two": (["visualize", "M", "--neuron", "1,2"], "neuron"),
    "scales_abc": (["visualize", "M", "--scales", "abc"], "numbers"),
    "batch_zero": (["visualize", "M", "--batch", "0"], ">= 1"),
    "batch_negative": (["visualize", "M", "--batch", "-3"], ">= 1"),
    "sweep_values_abc": (["sweep", "M", "--image", "i", "--kind", "lr", "--values", "abc"], "numbers"),
    # a setting the command would ignore is not offered: typing it is an error, not a silent no-op
    "fool_lambda_tv": (["fool", "M", "--image", "i", "--target", "1", "--lambda-tv", "1"], "fool does not take --lambda-tv 1 .*fool --help"),
    "style_alpha": (["style", "M", "--content", "i", "--style", "i", "--style-node", "a", "--alpha", "2"], "--alpha"),
    "visualize_preset": (["visualize", "M", "--channel", "1", "--preset", "mahendran-vedaldi"], "--preset"),
    "bench_batch_zero": (["bench", "M", "--node", "a", "--batch", "0"], ">= 1"),
    "bench_seconds_zero": (["bench", "M", "--node", "a", "--seconds", "0"], "> 0"),
}


@pytest.mark.parametrize("case", list(PARSE_CASES))
def test_bad_values_refused_at_parse_time(case, capsys):
    args, match = PARSE_CASES[case]
    if case == "device_mps":
        import torch

        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            pytest.skip("this machine has MPS")
    code, err = cli(capsys, *args)
    line = one_line(err)
    assert code == 2
    import re

    assert re.search(match, line), line
    assert "not found" not in line  # refused before the (missing) model file was looked at


def test_cuda_without_cuda(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    code, err = cli(capsys, "invert", "M", "--node", "a", "--image", "i", "--device", "cuda")
    assert code == 2 and "CUDA" in one_line(err)


def test_node_weight_nan_refused_before_model(capsys):
    code, err = cli(capsys, "invert", "missing.onnx", "--node", "conv2=nan", "--image", "i")
    assert code == 2 and "finite" in one_line(err)


def test_library_config_shares_the_checks():
    from inverter.config import ConfigError, InversionConfig

    for bad in (dict(lr=math.inf), dict(lambda_tv=math.nan), dict(lambda_alpha=1e300), dict(seed=-1),
                dict(device="cuda:abc")):
        with pytest.raises(ConfigError):
            InversionConfig(**bad)
    InversionConfig(lr=0.5, lambda_alpha=1e-3, seed=2**62)  # in range: accepted


# ---------------------------------------------------------------- item 7: user mistakes, exit 2
@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    model = hostile.onnx_model(folder / "m.onnx", "", "node")
    image = hostile.png(folder / "img.png", 20, 20, value=(120, 30, 200))
    return model, image


def test_out_of_range_indices_refused(small, capsys, tmp_path):
    model, image = small
    for args, match in [
        (["visualize", model, "--node", "relu2", "--channel", "99999"], "channel 99999 is out of range"),
        (["visualize", model, "--node", "relu2", "--neuron", "1,99,0"], "x 99 is out of range"),
        (["visualize", model, "--class", "99999"], "class 99999"),
        (["saliency", model, "--image", image, "--class", "99999"], "class 99999"),
        (["fool", model, "--image", image, "--target", "99999"], "class 99999"),
    ]:
        code, err = cli(capsys, *args, "--out", tmp_path / "o", "--quiet", "--iterations" if args[0] != "saliency"
                        else "--quiet", *(["1"] if args[0] != "saliency" else []))
        assert code == 2 and match in one_line(err), (args, err)
        # 4 channels, 16x16 x 4 = 1024 flat scores: the limit named is the model's
    code, err = cli(capsys, "visualize", model, "--node", "relu2", "--channel", "4", "--out", tmp_path / "o2")
    assert code == 2 and "0..3" in err


def test_bad_out_folders(small, capsys, tmp_path):
    model, image = small
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file / "sub", tmp_path / ("x" * 300)):
        code, err = cli(capsys, "saliency", model, "--image", image, "--out", out)
        assert code == 2 and "--out" in one_line(err), err


def test_convert_and_graph_o_naming_a_folder(small, capsys, tmp_path):
    model, _ = small
    folder = tmp_path / "folder"
    folder.mkdir()
    code, err = cli(capsys, "graph", model, "--format", "dot", "-o", folder)
    assert code == 2 and "folder" in one_line(err)
    code, err = cli(capsys, "convert", model, "-o", folder)
    assert code == 2 and "folder" in one_line(err)


@pytest.mark.parametrize("field", ["stride", "pool_stride", "group"])
def test_caffe_zero_geometry(field, tmp_path):
    from converters import ConversionError
    from converters.frontends.caffe.convert import caffe_to_onnx

    prototxt, caffemodel = hostile.caffe_files(tmp_path, "x", **{field: 0})
    with pytest.raises(ConversionError, match="invalid") as info:
        caffe_to_onnx(prototxt, caffemodel, tmp_path / "o.onnx")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o.onnx").exists()


def test_deeply_nested_prototxt(tmp_path):
    from converters import ConversionError
    from converters.frontends.caffe.proto import read_prototxt

    with pytest.raises(ConversionError, match="deeply"):
        read_prototxt(hostile.nested_prototxt(tmp_path / "deep.prototxt", 20000))


# ---------------------------------------------------------------- item 4: atomic -o, never the source
def test_convert_refuses_o_equal_to_source_and_keeps_a_good_file(small, capsys, tmp_path):
    import shutil

    model, _ = small
    source = tmp_path / "m.onnx"
    shutil.copy(model, source)
    before = source.read_bytes()
    code, err = cli(capsys, "convert", source, "-o", source)
    assert code == 2 and "model being converted" in one_line(err)
    assert source.read_bytes() == before
    # a conversion that fails leaves the existing output as it was, and no temporary files
    good = tmp_path / "good.onnx"
    good.write_bytes(before)
    broken = tmp_path / "broken.prototxt"
    broken.write_text('layer { name: "a" type: "Nope" }')
    code, err = cli(capsys, "convert", broken, "--weights", broken, "-o", good)
    assert code == 2
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.prototxt", "good.onnx", "m.onnx"]


# ---------------------------------------------------------------- items 3, 9: images
def test_extreme_image_shapes_refused_before_work(tmp_path):
    import tracemalloc

    from inverter.io.images import ImageError, load_image

    strip = hostile.png(tmp_path / "strip.png", 20000, 1)
    assert strip.stat().st_size < 1000
    tracemalloc.start()
    with pytest.raises(ImageError, match="aspect ratio"):
        load_image(strip, (224, 224))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50e6  # the issue measured 5.2 GB for this file
    wide = hostile.png(tmp_path / "wide.png", 1_000_000, 1)
    with pytest.raises(ImageError, match="aspect ratio"):
        load_image(wide, (64, 64))


def test_decompression_bomb_is_a_user_error(tmp_path, capsys, small):
    from PIL import Image

    model, _ = small
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 1-bit: a few KB on disk, 400 megapixels
    code, err = cli(capsys, "saliency", model, "--image", bomb, "--out", tmp_path / "o")
    assert code == 2 and "bomb.png" in one_line(err)


def test_crop_then_resize_matches_resize_then_crop(tmp_path):
    """The bounded path gives the image the old path gave (reference: Pillow resize of the whole, then crop)."""
    from PIL import Image

    from inverter.io.images import load_image

    rng = np.random.default_rng(0)
    array = (rng.uniform(size=(40, 120, 3)) * 255).astype(np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(array).save(path)
    got = load_image(path, (32, 32))[0].permute(1, 2, 0).numpy()
    ref = Image.fromarray(array).resize((96, 32), Image.Resampling.BICUBIC).crop((32, 0, 64, 32))
    ref = np.asarray(ref, dtype=np.float32) / 255
    assert np.abs(got - ref).mean() < 0.03


def test_16_bit_grey_png_keeps_its_values(tmp_path):
    from inverter.io.images import load_image

    path = hostile.png(tmp_path / "g16.png", 64, 64, mode="I;16")  # a 0..65535 left-to-right ramp
    got = load_image(path, (64, 64))[0]
    assert torch_close(got[0], got[1]) and torch_close(got[1], got[2])  # grey
    expected = np.linspace(0, 1, 64)  # independent reference: the ramp written
    assert np.abs(got[0, 10].numpy() - expected).max() < 0.02
    assert (got > 0.99).float().mean() < 0.05  # not white (the issue: 99% of pixels at 1.0)


def torch_close(a, b) -> bool:
    return float((a - b).abs().max()) < 1e-6


# ---------------------------------------------------------------- item 5: memory estimated before running
def test_memory_estimate_matches_the_tensors_and_refuses_past_the_limit(tmp_path, capsys, small):
    import onnx

    from converters import load
    from converters.network.memory import MemoryLimitError, estimate_bytes

    model, image = small
    # independent reference: onnxruntime's values of every tensor of the small model, summed
    proto = onnx.load(str(model))
    expected = 4 * (3 * 16 * 16 + 4 * 3 * 9 + 4 + 4 * 4 * 9 + 4 * (4 * 16 * 16))  # x, w1, b1, w2, c1 r1 c2 y
    assert estimate_bytes(proto, "x", (1, 3, 16, 16)) == expected
    # a 1 KB model with a 115 GB ConstantOfShape: refused before anything is allocated
    big = hostile.constant_of_shape_model(tmp_path / "big.onnx", 115 * 2**30 // 4)
    assert big.stat().st_size < 2000
    with pytest.raises(MemoryLimitError, match="--max-memory"):
        load(big)
    code, err = cli(capsys, "nodes", big)
    assert code == 2 and "--max-memory" in one_line(err)
    # the flag lifts the limit (here: a tiny limit refuses the small model, a larger one lets it run)
    code, err = cli(capsys, "nodes", model, "--max-memory", "0.000001")
    assert code == 2 and "--max-memory" in err
    code, _ = cli(capsys, "nodes", model, "--max-memory", "1")
    assert code == 0


def test_declared_huge_input_refused(tmp_path):
    import onnx

    from converters import load
    from converters.network.memory import MemoryLimitError

    path = hostile.onnx_model(tmp_path / "m.onnx", "", "node")
    proto = onnx.load(str(path))
    for value in (*proto.graph.input, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_value = dims[3].dim_value = 40000
    onnx.save(proto, str(tmp_path / "huge.onnx"))
    with pytest.raises(MemoryLimitError, match="40000x40000"):
        load(tmp_path / "huge.onnx")


# ---------------------------------------------------------------- item 8: a diverging run names its cause
@pytest.mark.parametrize("settings, flag", [(dict(alpha=100.0, lambda_alpha=1.0, init_scale=5.0), "--alpha"),
                                            (dict(beta=100.0, lambda_tv=1.0, init_scale=5.0), "--beta")])
def test_divergence_names_the_likely_cause(settings, flag, small):
    import torch

    from converters import load
    from inverter.config import InversionConfig
    from inverter.methods.inversion import invert

    model, _ = small
    network = load(model)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = invert(network, image, ["relu2"], InversionConfig(iterations=3, **settings), progress=False)
    assert result.stopped == "diverged"
    assert flag in result.extra["cause"] and "--lr" not in result.extra["cause"]


# ---------------------------------------------------------------- items 6, 10: sweeps
def test_sweep_refuses_a_users_folder_with_runs(small, capsys, tmp_path):
    model, image = small
    out = tmp_path / "mine"
    (out / "runs").mkdir(parents=True)
    (out / "sweep.csv").write_text("my,data\n")
    code, err = cli(capsys, "sweep", model, "--image", image, "--kind", "lr", "--values", "0.1", "--out", out,
                    "--iterations", 1, "--quiet")
    assert code == 2 and "--force" in one_line(err)
    assert (out / "sweep.csv").read_text() == "my,data\n"


def test_interrupted_sweep_run_is_not_recorded_and_resume_redoes_it(small, tmp_path, monkeypatch):
    import inverter.studies.sweep as sweep
    from converters import load
    from inverter.config import InversionConfig

    model, image = small
    network = load(model)
    real, calls = sweep.invert, []

    def interrupted_second(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(args[2])
        if len(calls) == 2:
            result.stopped = "interrupted"
        return result

    monkeypatch.setattr(sweep, "invert", interrupted_second)
    config = InversionConfig(iterations=2)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(network, image, "lr", tmp_path, config, nodes=["relu1", "relu2"], values=[0.1], progress=False)
    saved = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert len(saved) == 1 and "relu1" in saved[0]
    calls.clear()
    monkeypatch.setattr(sweep, "invert", lambda *a, **k: (calls.append(a[2]), real(*a, **k))[1])
    summary = sweep.run_sweep(network, image, "lr", tmp_path, config, nodes=["relu1", "relu2"], values=[0.1],
                              progress=False)
    assert calls == ["relu2"]  # the finished run is reused, the interrupted one redone
    assert len(summary["runs"]) == 2 and all(r["stopped"] == "done" for r in summary["runs"])


# ---------------------------------------------------------------- item 11: failures leave nothing behind
def test_failed_runs_remove_only_the_folders_they_made(small, capsys, tmp_path):
    from inverter.io import reports

    model, image = small
    made = tmp_path / "new" / "run"
    code, err = cli(capsys, "invert", model, "--node", "nope", "--image", image, "--out", made, "--iterations", 1)
    assert code == 2 and "nope" in one_line(err)
    assert not (tmp_path / "new").exists()  # created by this run: removed, parents too
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    code, _ = cli(capsys, "invert", model, "--node", "nope", "--image", image, "--out", mine, "--force",
                  "--iterations", 1)
    assert code == 2 and (mine / "keep.txt").read_text() == "x"  # a folder that existed stays as it was
    assert reports.CREATED == []


def test_fool_refuses_an_existing_out_before_work(small, capsys, tmp_path, monkeypatch):
    import inverter.methods.fooling as fooling

    model, image = small
    out = tmp_path / "full"
    out.mkdir()
    (out / "x").write_text("x")
    monkeypatch.setattr(fooling, "fool", lambda *a, **k: pytest.fail("work started before --out was checked"))
    code, err = cli(capsys, "fool", model, "--image", image, "--target", 1, "--out", out)
    assert code == 2 and "--force" in one_line(err)


@pytest.mark.parametrize("flag", ["--min-run-time", "--size", "--batch"])  # the torch.utils.benchmark harness's flags
def test_benchmark_harness_refuses_zero_when_parsed(flag, capsys):
    from benchmarks.run import main as bench_main

    with pytest.raises(SystemExit) as info:
        bench_main([flag, "0"])
    assert info.value.code == 2 and (">= 1" in (err := capsys.readouterr().err) or "> 0" in err)


# ---------------------------------------------------------------- item 6: Ctrl-C in every command
def _interrupting(real):
    """optimize, as if Ctrl-C came after the first step (the loop turns it into stopped="interrupted")."""
    def optimize(*args, **kwargs):
        import dataclasses

        config = args[2]
        run = real(*args[:2], config.replace(iterations=1), *args[3:], **kwargs)
        return dataclasses.replace(run, stopped="interrupted")
    return optimize


@pytest.mark.parametrize("command", ["visualize", "style", "fool"])
def test_ctrl_c_exits_130_with_results_marked(command, small, capsys, tmp_path, monkeypatch):
    import json

    import inverter.methods.fooling as fooling
    import inverter.methods.style as style
    import inverter.methods.visualization as visualization

    module = {"visualize": visualization, "style": style, "fool": fooling}[command]
    monkeypatch.setattr(module, "optimize", _interrupting(module.optimize))
    model, image = small
    out = tmp_path / "o"
    args = {"visualize": ["--node", "relu2", "--channel", 1],
            "style": ["--content", image, "--style", image, "--style-node", "relu1", "--content-node", "relu2"],
            "fool": ["--image", image, "--target", 3]}[command]
    code, err = cli(capsys, command, model, *args, "--out", out, "--iterations", 5, "--quiet")
    assert code == 130 and "interrupted" in one_line(err)
    metrics = next(out.glob("*.json"))
    assert json.loads(metrics.read_text())["stopped"] == "interrupted"


def test_interrupt_while_saving_leaves_each_file_whole(tmp_path):
    from inverter.io.images import save_atomic

    path = tmp_path / "metrics.json"
    path.write_text("old and whole")

    def half_then_ctrl_c(tmp):
        tmp.write_text("new but ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_atomic(path, half_then_ctrl_c)
    assert path.read_text() == "old and whole"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_library_saliency_and_fool_refuse_a_class_the_node_lacks(vgg16_bn):
    """The library functions check the index themselves, not only the CLI: a clear ConfigError, no IndexError."""
    from inverter.config import ConfigError
    from inverter.methods.fooling import fool
    import torch

    from inverter.methods.saliency import saliency

    image = torch.rand(1, 3, 64, 64)
    count = 512 * 2 * 2  # vgg16_bn features at 64 px: (512, 2, 2) scores
    for call in (lambda: saliency(vgg16_bn, image, index=count), lambda: fool(vgg16_bn, image, count, progress=False)):
        with pytest.raises(ConfigError, match=f"class {count} is out of range.*0..{count - 1}"):
            call()
    _, index = saliency(vgg16_bn, image, index=count - 1)
    assert index == count - 1


def test_ctrl_c_in_compare_stops_the_comparison(small, capsys, tmp_path, monkeypatch):
    """Ctrl-C during the first model: exit 130, that run tabled as interrupted, the second model never run."""
    import json
    import shutil

    import inverter.methods.inversion as inversion

    monkeypatch.setattr(inversion, "optimize", _interrupting(inversion.optimize))
    model, image = small
    copy = tmp_path / "copy.onnx"
    shutil.copy(model, copy)
    out = tmp_path / "cmp"
    code, err = cli(capsys, "compare", model, copy, "--node", "relu2", "--image", image, "--out", out,
                    "--iterations", 5, "--quiet")
    assert code == 130 and "interrupted" in one_line(err)
    rows = json.loads(next(out.glob("*.json")).read_text())["rows"]
    assert [r["stopped"] for r in rows] == ["interrupted"]


# ================================================================ issue 29: answered before work starts
def last_line(err: str) -> str:
    """The one error line (notes said before it aside), never a traceback."""
    return one_line(err)


@pytest.mark.parametrize("kind, expected", [("string", "input 's' is a string tensor"),
                                            ("sequence", "input 'seq' is a sequence")])
def test_non_float_image_input_refused_with_type_and_name(kind, expected, tmp_path, capsys):
    build = {"string": hostile.string_input_model, "sequence": hostile.sequence_input_model}[kind]
    model = build(tmp_path / f"{kind}.onnx")
    code, err = cli(capsys, "nodes", model)
    assert code == 2 and expected in last_line(err), err


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e38])
def test_poisoned_weight_refused_at_load_naming_tensor_and_index(value, tmp_path, capsys, monkeypatch):
    import inverter.methods.inversion as inversion

    model = hostile.poisoned_model(tmp_path / "p.onnx", value, index=(1, 2, 0, 1))
    image = hostile.png(tmp_path / "i.png", 16, 16)
    monkeypatch.setattr(inversion, "optimize", lambda *a, **k: pytest.fail("optimisation started"))
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", image, "--out", tmp_path / "o")
    line = last_line(err)
    assert code == 2 and "'w2'" in line and "[1, 2, 0, 1]" in line, line
    assert not (tmp_path / "o").exists()


def test_float16_range_is_valid_weight(tmp_path):
    from converters import load

    model = hostile.poisoned_model(tmp_path / "h.onnx", 60000.0, dtype=np.float16)  # float16's max is 65504
    network = load(model)
    assert network.resolve("relu2").shape == (1, 4, 16, 16)


def test_weight_check_is_vectorised_on_vgg16_sized_weights():
    """VGG16's 138M parameters (its layer shapes, random values) are checked in milliseconds; a NaN in the
    last element of fc6's weight is found."""
    import time

    import onnx
    import torch
    from onnx import numpy_helper

    from converters.errors import ModelError
    from converters.network.checks import check_loaded_weights, check_weights

    shapes = [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 128, 3, 3)] + \
        [(256, 256, 3, 3)] * 2 + [(512, 256, 3, 3)] + [(512, 512, 3, 3)] * 5 + [(4096, 25088), (4096, 4096), (1000, 4096)]
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(shape, generator=g) * 0.01 for shape in shapes]
    assert sum(t.numel() for t in tensors) > 138e6
    start = time.perf_counter()
    check_loaded_weights(tensors, onnx.ModelProto())
    seconds = time.perf_counter() - start
    assert seconds < 0.5, seconds  # measured ~50 ms on one thread of a busy 2-core machine
    tensors[13][-1, -1] = float("nan")
    with pytest.raises(ModelError, match=r"shape \[4096, 25088\] holds a NaN"):
        check_loaded_weights(tensors, onnx.ModelProto())  # no initializer to name: the shape is said
    small = onnx.ModelProto()
    array = np.zeros((7, 9), np.float32)
    array[-1, -1] = np.nan
    small.graph.initializer.append(numpy_helper.from_array(array, "fc"))
    with pytest.raises(ModelError, match=r"'fc' holds nan at index \[6, 8\]"):
        check_weights(small)


METADATA_CASES = {
    "string_mean": ('{"mean": ["a", 0, 0], "std": [1, 1, 1]}', "key 'mean'"),
    "null_mean": ('{"mean": null, "std": [1, 1, 1]}', "key 'mean'"),
    "null_std": ('{"mean": [0, 0, 0], "std": null}', "key 'std'"),
    "nan_mean": ('{"mean": [NaN, 0, 0], "std": [1, 1, 1]}', "key 'mean'"),
    "huge_std": ('{"mean": [0, 0, 0], "std": [1e300, 1, 1]}', "key 'std'"),
    "huge_scale": ('{"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1e300}', "key 'scale'"),
    "bool_height": ('{"mean": [0, 0, 0], "std": [1, 1, 1], "height": true}', "key 'height'"),
    "layout_null": ('{"mean": [0, 0, 0], "std": [1, 1, 1], "layout": null}', "key 'layout'"),
    "unknown_key": ('{"mean": [0, 0, 0], "std": [1, 1, 1], "evil": 1}', "key 'evil'"),
    "nested": ("[" * 10000 + "]" * 10000, "nests brackets"),
    "nested_in_key": ('{"mean": ' + "[" * 10000 + "]" * 10000 + ', "std": [1, 1, 1]}', "nests brackets"),
    "not_json": ("{mean: 1", "not valid JSON"),
}


@pytest.mark.parametrize("case", list(METADATA_CASES))
def test_malformed_input_spec_metadata_refused_naming_the_key(case, tmp_path, capsys):
    text, named = METADATA_CASES[case]
    model = hostile.with_metadata(tmp_path / "m.onnx", text)
    code, err = cli(capsys, "nodes", model)
    line = last_line(err)
    assert code == 2 and named in line and "invert_onnx.input_spec" in line, line


def test_malformed_metadata_is_ignored_whole_with_a_note_when_flags_replace_it(tmp_path, capsys):
    import json

    model = hostile.with_metadata(tmp_path / "m.onnx", '{"mean": [0, 0, 0], "std": [1e300, 1, 1], "scale": 255}')
    code = main(["nodes", str(model), "--mean", "0.5,0.5,0.5", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "note: m.onnx: ignored the malformed metadata (key 'std'" in captured.err
    spec = json.loads(captured.out)["model"]["input"]
    # nothing of the metadata half-applied: its scale 255 is not used, the default std is
    assert spec["scale"] == 1.0 and spec["std"] == pytest.approx([0.229, 0.224, 0.225]) and spec["mean"] == [0.5] * 3


def test_valid_metadata_round_trips():
    from converters.input_spec import InputSpec

    spec = InputSpec(layout="NHWC", height=32, width=48, channel_order="BGR", scale=255.0,
                     mean=(103.9, 116.8, 123.7), std=(1.0, 1.0, 1.0))
    assert InputSpec.from_json(spec.to_json()) == spec
    grey = InputSpec(channels=1, mean=(0.5,), std=(0.25,))
    assert InputSpec.from_json(grey.to_json()) == grey


def _torch_smallest_size() -> int:
    """Independent reference: the smallest side torch's own layers take for `hostile.strided_model`."""
    import torch
    import torch.nn.functional as F

    for s in range(1, 64):
        try:
            x = F.conv2d(torch.zeros(1, 3, s, s), torch.zeros(4, 3, 3, 3), stride=2, padding=1)
            x = F.max_pool2d(F.max_pool2d(x, 2, 2), 3, 2)
            if x.numel():
                return s
        except RuntimeError:
            continue
    raise AssertionError("no size works")


@pytest.mark.parametrize("size", ["1", "0", "-5", "8", "10,64"])
def test_a_size_the_strides_cannot_take_names_the_smallest(size, tmp_path, capsys):
    model = hostile.strided_model(tmp_path / "s.onnx")
    smallest = _torch_smallest_size()
    assert smallest == 11
    code, err = cli(capsys, "nodes", model, f"--size={size}")
    line = last_line(err)
    assert code == 2 and f"smallest size it takes is {smallest}x{smallest}" in line, line
    code, err = cli(capsys, "nodes", model, "--size", smallest)
    assert code == 0, err


def test_size_one_is_a_correct_run_where_the_model_takes_it(small, tmp_path, capsys):
    """A model without strides (3x3 convs, pad 1) takes a 1x1 input: not refused."""
    import onnx

    model, _ = small
    proto = onnx.load(str(model))
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[2].dim_param = "h"
        value.type.tensor_type.shape.dim[3].dim_param = "w"
    onnx.save(proto, str(tmp_path / "dyn.onnx"))
    code, err = cli(capsys, "nodes", tmp_path / "dyn.onnx", "--size", "1")
    assert code == 0, err


GROWING = ["Resize", "Upsample", "Tile", "Expand", "ConstantOfShape", "Pad", "ConvTranspose"]


@pytest.mark.parametrize("op", GROWING)
def test_memory_estimate_follows_each_growing_op(op, tmp_path):
    """Reference: onnxruntime's own tensor for the op's output, at a small factor."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    from converters.network.memory import _grown_shape, estimate

    path, shape = hostile.growing_model(tmp_path / "g.onnx", op, 3)
    proto = onnx.load(str(path))
    proto.graph.output.append(helper.make_tensor_value_info("big", onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, 16, 16), np.float32)
    big = session.run(["big"], {"x": x})[0]
    assert big.shape == shape
    total, node, largest = estimate(onnx.load(str(path)), "x", (1, 3, 16, 16))
    assert largest == big.nbytes and node == f"{op} node 'grow'"
    if op != "ConstantOfShape":  # the op's own formula, used where ONNX inference stops
        constants = {t.name: t for t in proto.graph.initializer}
        grow = next(n for n in proto.graph.node if n.name == "grow")
        assert tuple(_grown_shape(grow, {"x": [1, 3, 16, 16]}, constants)) == big.shape


@pytest.mark.parametrize("op", GROWING)
def test_a_huge_growing_op_is_refused_naming_the_node(op, tmp_path, capsys):
    path, shape = hostile.growing_model(tmp_path / "g.onnx", op, 4000)
    code, err = cli(capsys, "nodes", path, "--max-memory", "1")
    line = last_line(err)
    assert code == 2 and f"{op} node 'grow' makes" in line and "--max-memory" in line, line
    assert f"{np.prod(shape) * 4 / 2**30:.1f} GB" in line


def test_external_data_lengths_checked_before_reading(tmp_path, capsys):
    import tracemalloc

    from converters.errors import ModelError
    from converters.network.memory import MemoryLimitError
    from converters.network.onnx_io import read_onnx

    claimed = 300_000_000  # a sparse file: no disk used; reading it would take 300 MB
    lying = hostile.sparse_external_model(tmp_path / "lying", claimed)
    tracemalloc.start()
    with pytest.raises(ModelError, match=r"'w2' has shape \[4, 4, 3, 3\] \(576 bytes\) but its external data holds 300000000"):
        read_onnx(lying)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6
    honest = hostile.sparse_external_model(tmp_path / "honest", claimed, dims=(claimed // 4,))
    with pytest.raises(MemoryLimitError, match="tensor 'w2'.*before they are read"):
        read_onnx(honest, max_memory=100e6)
    code, err = cli(capsys, "nodes", honest, "--max-memory", "0.1")
    assert code == 2 and "--max-memory" in last_line(err)


def test_tiny_images_refused_or_said(small, tmp_path, capsys, caplog):
    model, _ = small  # a 16x16 input
    one = hostile.png(tmp_path / "one.png", 1, 1, value=(200, 30, 40))
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", one, "--out", tmp_path / "a",
                    "--iterations", 1, "--quiet")
    line = last_line(err)
    assert code == 2 and "one.png is 1x1" in line and "16x" in line and "at least 2x2" in line, line
    assert not (tmp_path / "a").exists()
    two = hostile.png(tmp_path / "two.png", 2, 2, value=(200, 30, 40))
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", two, "--out", tmp_path / "b",
                    "--iterations", 1, "--quiet")
    said = err + caplog.text  # the note is logged (on stderr in the command; pytest captures the log)
    assert code == 0 and "two.png (2x2) is upscaled 8x to the model's 16x16 input" in said, said
    caplog.clear()
    plain = hostile.png(tmp_path / "plain.png", 16, 16)
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", plain, "--out", tmp_path / "c",
                    "--iterations", 1, "--quiet")
    assert code == 0 and "upscaled" not in err + caplog.text


# ---------------------------------------------------------------- signals: a real process, each signal
@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_end_a_run_as_ctrl_c_does(name, status, small, tmp_path):
    import json
    import signal
    import time

    from PIL import Image

    model, image = small
    out = tmp_path / "o"
    proc, chunks = hostile.optimising_cli(model, "--node", "relu2", "--image", image, "--out", out,
                                          "--iterations", 10000000, cwd=Path(__file__).resolve().parents[2])
    time.sleep(1)  # some iterations
    proc.send_signal(getattr(signal, name))
    assert proc.wait(120) == status
    time.sleep(0.2)
    err = b"".join(chunks).decode(errors="replace")
    assert "Traceback" not in err and f"interrupted by {name}" in err.strip().splitlines()[-1], err
    metrics = json.loads((out / "metrics.json").read_text())  # whole JSON
    assert metrics["stopped"] == "interrupted" and metrics["iterations"] > 0
    for png in ("reconstruction.png", "comparison.png", "loss.png"):
        Image.open(out / png).load()  # whole PNGs
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


# ---------------------------------------------------------------- a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 96 KB tmpfs (root only); skipped where mounting is not allowed."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root); the injected ENOSPC test covers the path")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def _earlier_results(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"metrics.json": b'{"earlier": true}\n', "reconstruction.png": b"earlier image"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_full_disk_on_a_small_tmpfs(small, small_disk, capsys):
    model, image = small
    out = small_disk / "run"
    earlier = _earlier_results(out)
    (small_disk / "filler").write_bytes(b"\0" * 60_000)  # leaves ~36 KB: less than the ~46 KB of results
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", image, "--out", out, "--force",
                    "--iterations", 2, "--quiet")
    line = last_line(err)
    assert code == 2 and f"no space left in {out}" in line and "bytes" in line, line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier  # untouched, no partial file
    (small_disk / "filler").unlink()
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", image, "--out", out, "--force",
                    "--iterations", 2, "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "loss.png", "metrics.json", "reconstruction.png"]


def test_full_disk_injected_midway(small, tmp_path, capsys, monkeypatch):
    """The room check passes, then the disk fills while the third file is written (injected ENOSPC)."""
    import errno
    import os

    import inverter.io.images as images

    model, image = small
    out = tmp_path / "run"
    earlier = _earlier_results(out)
    real_fdopen, writes = os.fdopen, []

    def filling(fd, *args, **kwargs):
        writes.append(fd)
        if len(writes) == 3:
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(images.os, "fdopen", filling)
    code, err = cli(capsys, "invert", model, "--node", "relu2", "--image", image, "--out", out, "--force",
                    "--iterations", 2, "--quiet")
    line = last_line(err)
    assert code == 2 and f"no space left in {out}" in line and "bytes" in line, line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier


def test_full_disk_during_convert_keeps_the_old_file(small, small_disk, capsys):
    model, _ = small
    old = small_disk / "old.onnx"
    old.write_bytes(b"an earlier model")
    with open(small_disk / "filler", "wb", buffering=0) as f:  # fill the tmpfs
        with pytest.raises(OSError):
            while True:
                f.write(b"\0" * 4096)
    code, err = cli(capsys, "convert", model, "-o", old)
    line = last_line(err)
    needed = Path(model).stat().st_size
    assert code == 2 and f"no space left in {small_disk}" in line and f"needs {needed} bytes" in line, line
    assert old.read_bytes() == b"an earlier model"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "old.onnx"]
