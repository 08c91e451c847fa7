"""Regularisers and the normalised feature distance against hand-computed values."""
import math

import torch

from inverter.objectives import Objective, alpha_norm, alpha_norm_value, feature_match, normalised_distance, tv, tv_value


def test_alpha_norm_by_hand():
    x = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]]])
    assert alpha_norm_value(x, 6).item() == 1 + 64 + 0.5**6
    assert alpha_norm_value(x, 2).item() == 1 + 4 + 0.25


def test_tv_by_hand():
    # 3x3 image; differences past the border are 0 (replicated edge)
    x = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [0.0, 0.0, 5.0]]]])
    # per pixel dx^2 + dy^2, row by row: 1+4, 4+1, 0+1 | 0+4, 0+4, 0+9 | 0+0, 25+0, 0+0
    assert tv_value(x, 2).item() == 53
    expected_b1 = 2 * math.sqrt(5) + 1 + 2 + 2 + 3 + 5
    assert abs(tv_value(x, 1).item() - expected_b1) < 1e-3


def test_normalised_distance_by_hand():
    target = torch.tensor([[3.0, 4.0]])
    assert normalised_distance(torch.tensor([[3.0, 4.0]]), target).item() == 0
    assert abs(normalised_distance(torch.tensor([[0.0, 0.0]]), target).item() - 1.0) < 1e-7
    assert abs(normalised_distance(torch.tensor([[3.0, 6.0]]), target).item() - 4 / 25) < 1e-7


def test_objectives_compose_with_weights():
    image = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    feats = {"a": torch.tensor([[1.0, 0.0]])}
    obj = feature_match("a", torch.tensor([[2.0, 0.0]])) + 0.5 * tv(2) + 2 * alpha_norm(2)
    terms = obj.evaluate(image, feats)
    assert abs(terms["feature:a"].item() - 0.25) < 1e-7  # (1-2)^2 / 2^2
    assert terms["tv"].item() == 0.5 * 4  # (0,0): 1 + 1, (0,1): 0 + 1, (1,0): 1 + 0, (1,1): 0
    assert terms["alpha_norm"].item() == 2 * 2
    assert obj.nodes == ["a"]
    assert (obj - obj).evaluate(image, feats)["tv"].item() == 0
    doubled = sum([obj, obj], Objective()).evaluate(image, feats)  # terms with equal names add up
    assert doubled["tv"].item() == 2 * terms["tv"].item() and doubled["feature:a"].item() == 0.5
