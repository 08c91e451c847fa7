"""The peer benchmark: its photos exist, its table averages what ran, and the peer's loop moves the image."""
import importlib.util
import json
import math

import pytest
import torch

from benchmarks.peers import PHOTOS, cnn_visualizations, photo_path, write_report


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="pip install scikit-image")
def test_at_least_ten_photos_ship_with_the_packages():
    assert len(PHOTOS) >= 10
    for name in PHOTOS:
        assert photo_path(name).is_file()


def test_table_is_the_mean_over_photos_and_counts_diverged_runs(tmp_path):
    results = {"a|conv3_1|p1": {"feature_error": 0.1, "ssim": 0.2},
               "a|conv3_1|p2": {"feature_error": 0.3, "ssim": 0.4},
               "b|conv3_1|p1": {"feature_error": math.nan, "ssim": math.nan},
               "b|conv3_1|p2": {"feature_error": 0.5, "ssim": 0.1}}
    results["a|conv3_1|p3"] = {"feature_error": 0.9, "ssim": 0.9}  # b has no p3: left out
    text = write_report(results, 64, 200, ["conv3_1"], ["a", "b"], ["p1", "p2", "p3"], tmp_path)
    assert "| conv3_1 | 0.200 / 0.300 | 0.500 / 0.100 (1 diverged) |" in text
    table = json.loads((tmp_path / "peers_table.json").read_text())["table"]
    assert table["conv3_1"]["b"]["diverged"] == 1
    assert "2 photos that every method ran (p1, p2;" in text


def test_peer_loop_reduces_the_feature_error(vgg16_bn):
    torch.manual_seed(0)
    original = torch.rand(1, 3, 64, 64)
    from converters.input_spec import standardise
    from inverter.objectives import normalised_distance

    with torch.no_grad():
        (target,) = vgg16_bn.from_standardised(standardise(original), ["conv2_2"])
        (start,) = vgg16_bn.from_standardised(0.1 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
                                     ["conv2_2"])
    image = cnn_visualizations(vgg16_bn, original, "conv2_2", iterations=3)
    with torch.no_grad():
        (end,) = vgg16_bn.from_standardised(image, ["conv2_2"])
    assert float(normalised_distance(end, target)) < float(normalised_distance(start, target))
