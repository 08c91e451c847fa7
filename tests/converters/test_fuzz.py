"""Hostile files: mutated ONNX, prototxt and caffemodel bytes end in our clean errors, nothing else."""
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from converters import UserError, load
from converters.frontends.pytorch import export_module

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def onnx_bytes(tmp_path_factory):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 4, 3), nn.ReLU())
    path = export_module(net, tmp_path_factory.mktemp("fuzz") / "tiny.onnx", size=(16, 16))
    return path.read_bytes()


@pytest.fixture(scope="module")
def caffe_files(tmp_path_factory):
    from models.twins.caffe import write_caffe

    prototxt, caffemodel = write_caffe("vgg16", tmp_path_factory.mktemp("caffe"), features_only=True, size=32)
    return prototxt.read_text(), caffemodel.read_bytes()


def mutate(data: bytes, edits) -> bytes:
    """Apply (position, kind, value) edits: overwrite a byte, delete a run, insert bytes, truncate."""
    out = bytearray(data)
    for pos, kind, value in edits:
        if not out:
            break
        i = pos % len(out)
        if kind == 0:
            out[i] = value
        elif kind == 1:
            del out[i : i + 1 + value % 16]
        elif kind == 2:
            out[i:i] = bytes([value]) * (1 + value % 8)
        else:
            del out[i:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 3), st.integers(0, 255)), min_size=1, max_size=6)


def clean(fn):
    """Success, or one of our errors with a one-line message."""
    try:
        fn()
    except UserError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        assert str(exc).strip()


@FUZZ
@given(edits=EDITS)
def test_mutated_onnx_gives_clean_errors(onnx_bytes, edits, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(mutate(onnx_bytes, edits))
    clean(lambda: load(path))


@FUZZ
@given(edits=EDITS, which=st.sampled_from(["prototxt", "caffemodel"]))
def test_mutated_caffe_gives_clean_errors(caffe_files, edits, which, tmp_path):
    from converters.frontends.caffe.convert import caffe_to_onnx

    text, weights = caffe_files
    if which == "prototxt":
        text = mutate(text.encode(), edits).decode("utf-8", errors="replace")
    else:
        weights = mutate(weights, edits)
    (tmp_path / "n.prototxt").write_text(text)
    (tmp_path / "n.caffemodel").write_bytes(weights)
    clean(lambda: load(caffe_to_onnx(tmp_path / "n.prototxt", tmp_path / "n.caffemodel", tmp_path / "n.onnx")))


def test_cli_on_a_mutated_model_is_one_line_exit_2(onnx_bytes, tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    r = subprocess.run([sys.executable, "-m", "inverter.cli.main", "nodes", str(path)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


@pytest.mark.parametrize("case", ["prototxt", "caffemodel", "h5", "pt"])
def test_convert_corrupt_sources_one_line_exit_2(case, tmp_path):
    files = {"prototxt": ("bad.prototxt", b"layer { name: 'x' type: 'Convolution' bottom: \x00 }}}"),
             "caffemodel": ("bad.caffemodel", b"\xff\xfe\x00garbage"),
             "h5": ("bad.h5", b"\x89HDF\r\n\x1a\nnot really"), "pt": ("bad.pt", b"PK\x03\x04 truncated zip")}
    name, data = files[case]
    path = tmp_path / name
    path.write_bytes(data)
    args = ["convert", str(path), "-o", str(tmp_path / "o.onnx")]
    if case == "prototxt":
        (tmp_path / "w.caffemodel").write_bytes(b"")
        args += ["--weights", str(tmp_path / "w.caffemodel")]
    if case == "caffemodel":
        (tmp_path / "n.prototxt").write_text("name: 'n'\n")
        args += ["--weights", str(tmp_path / "n.prototxt")]
    if case == "pt":
        args += ["--arch", "alexnet"]
    r = subprocess.run([sys.executable, "-m", "inverter.cli.main", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invert-onnx: error:"), r.stderr
