"""Output files: their mode follows the umask (not mkstemp's 0600); plots stay readable with 200-character names."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from PIL import Image

from converters.frontends.atomic_output import save_onnx
from inverter.io.images import save_png
from inverter.io.reports import fit_text, grid, loss_plot


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        png = save_png(torch.rand(3, 8, 8), tmp_path / "x.png")
        graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g", [h.make_tensor_value_info("x", T.FLOAT, [1])],
                             [h.make_tensor_value_info("y", T.FLOAT, [1])])
        model = save_onnx(h.make_model(graph), tmp_path / "m.onnx")
    finally:
        os.umask(old)
    assert stat.S_IMODE(png.stat().st_mode) == mode
    assert stat.S_IMODE(model.stat().st_mode) == mode


def test_long_names_keep_plots_their_size(tmp_path):
    name = "/model/backbone/" + "stage_block_" * 15 + "conv/Conv"  # ~200 characters
    assert len(name) > 190
    short = fit_text(name, 30, 2)
    assert all(len(line) <= 30 for line in short.splitlines()) and len(short.splitlines()) <= 2
    assert short.startswith("/model/") and short.endswith("/Conv")
    images = [torch.rand(3, 16, 16) for _ in range(3)]
    sizes = {}
    for label in ("conv1", name):
        grid(images, ["target", label, "x"], tmp_path / f"g{len(label)}.png", title=f"model: what {label} keeps")
        loss_plot({"total": np.linspace(2, 1, 20), label: np.linspace(1, 0.5, 20)}, tmp_path / f"l{len(label)}.png",
                  title=f"model {label}")
        sizes[label] = [Image.open(tmp_path / f"{p}{len(label)}.png").size for p in "gl"]
    for short_size, long_size in zip(sizes["conv1"], sizes[name]):  # a long name does not stretch the figure
        assert long_size[0] <= short_size[0] * 1.35 and long_size[1] <= short_size[1] * 1.35, (short_size, long_size)
