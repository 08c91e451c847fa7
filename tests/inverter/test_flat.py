"""Issue 19: a grey picture cannot pass for a result; a node that barely sees the image is refused;
preprocessing flags keep the graph's layout."""
from __future__ import annotations

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from converters.input_spec import InputSpec, standardise
from converters.network.network import detected_spec
from inverter.config import InversionConfig
from inverter.io.images import load_image
from inverter.methods.inversion import FLAT_BOUND, InsensitiveNodeError, invert


def test_flat_error_matches_a_hand_computation(vgg16_bn, photo):
    """Start at the engine's zero (ImageNet grey) and take no step: the result IS a flat image, so its
    error relative to the better flat image is >= the bound; and the number equals the definition."""
    x0 = load_image(photo, (64, 64))
    r = invert(vgg16_bn, x0, "conv2_1", InversionConfig(iterations=0, init="zeros"), progress=False)
    with torch.no_grad():
        t = vgg16_bn.from_standardised(standardise(x0), ["conv2_1"])[0]
        grey = vgg16_bn.from_standardised(torch.zeros_like(x0), ["conv2_1"])[0]
        colour = vgg16_bn.from_standardised(standardise(x0.mean((2, 3), keepdim=True).expand_as(x0)), ["conv2_1"])[0]
    d = lambda a: float((a - t).pow(2).sum())  # noqa: E731
    assert r.flat_error["conv2_1"][0] == pytest.approx(d(grey) / min(d(grey), d(colour)), rel=1e-4)
    assert r.sensitivity["conv2_1"][0] == pytest.approx(min(d(grey), d(colour)) / float(t.pow(2).sum()), rel=1e-4)
    assert r.no_better_than_flat == [True] and r.flat_error["conv2_1"][0] >= FLAT_BOUND
    assert r.summary()["no_better_than_flat"] == [True]


def test_a_node_that_barely_sees_the_image_is_refused(vgg16_bn, photo):
    x0 = load_image(photo, (64, 64))
    before = vgg16_bn.input_spec
    try:  # the image divided by 10^4 before the network: biases dominate, a flat image matches
        vgg16_bn.input_spec = before.replace(std=(1e4, 1e4, 1e4), source="test")
        with pytest.raises(InsensitiveNodeError, match="barely sees the image"):
            invert(vgg16_bn, x0, "conv1_1", InversionConfig(iterations=1), progress=False)
    finally:
        vgg16_bn.input_spec = before


def test_preprocessing_flags_keep_the_detected_layout_and_broadcast_one_value():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 32, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 32, 3])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    base = detected_spec(model)
    assert base.layout == "NHWC" and base.channels == 3 and base.guessed
    spec = base.replace(std=(1.0,), mean=(0.0,), scale=255.0, source="command line", confidence="known")
    assert spec.layout == "NHWC" and spec.std == (1.0, 1.0, 1.0) and spec.mean == (0.0, 0.0, 0.0)
    assert InputSpec().replace(std=(2.0,)).std == (2.0, 2.0, 2.0)


def test_a_guessed_spec_is_marked_in_the_metadata_json():
    guessed = InputSpec(confidence="guess")
    assert '"guessed": true' in guessed.to_json()
    assert InputSpec.from_json(guessed.to_json()).guessed
    assert not InputSpec.from_json(InputSpec().to_json()).guessed
