"""Style transfer (Gatys et al. 2016) on any model: Gram loss over style nodes + content + TV."""
from __future__ import annotations

import torch

from converters.network.network import Network
from converters.input_spec import destandardise, standardise
from inverter.config import InversionConfig
from inverter.loop import OptimizationRun, optimize, placed
from inverter.objectives import Objective, feature_match, gram, style_match, tv


def style_objective(network: Network, content: torch.Tensor, style: torch.Tensor, style_nodes: list[str],
                    content_node: str | None, style_weight: float = 1.0, content_weight: float = 1.0,
                    lambda_tv: float = 1e-6) -> Objective:
    with torch.no_grad():
        grams = [gram(f) for f in network.from_standardised(standardise(style), style_nodes)]
    objective = sum((style_weight / len(style_nodes) * style_match(n, g) for n, g in zip(style_nodes, grams)),
                    Objective())
    if content_node:
        with torch.no_grad():
            (target,) = network.from_standardised(standardise(content), [content_node])
        objective = objective + content_weight * feature_match(content_node, target)
    return objective + lambda_tv * tv()


def style_transfer(network: Network, content: torch.Tensor, style: torch.Tensor, style_nodes: list[str],
                   content_node: str | None, config: InversionConfig, style_weight: float = 1.0,
                   content_weight: float = 1.0, progress: bool = True) -> tuple[torch.Tensor, OptimizationRun]:
    """Start from the content image; returns pixels (1, 3, H, W) and the run (loss per term)."""
    with placed(network, config) as (device, dtype):
        content, style = content.to(device, dtype), style.to(device, dtype)
        objective = style_objective(network, content, style, style_nodes, content_node, style_weight,
                                    content_weight, config.lambda_tv)
        run = optimize(network, objective, config, standardise(content), progress=progress)
    return destandardise(run.images).clamp(0, 1).float().cpu(), run
