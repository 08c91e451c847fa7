"""Feature visualisation and class visualisation: activation maximisation from noise."""
from __future__ import annotations

import torch

from converters.network.network import Network
from converters.input_spec import destandardise
from inverter.config import InversionConfig
from inverter.loop import OptimizationRun, initial_images, optimize, placed
from inverter.objectives import Objective, class_logit, l2, tv
from inverter.param import ImageParam
from inverter.transforms import scale_rotate


def visualize(network: Network, objective: Objective, config: InversionConfig, *, batch: int = 1,
              parameterization: str = "fourier", decorrelate: bool = True, scales=(1.0,),
              degrees: float = 0.0, bounded: bool = True,
              progress: bool = True) -> tuple[torch.Tensor, OptimizationRun]:
    """Maximise `objective` (e.g. channel("conv4_1", 7) + 1e-4 * tv()) from noise.

    Returns pixels in [0, 1] (B, 3, H, W) and the run. Robustness: config.jitter, random
    scales and rotations; Fourier and decorrelated-colour parameterisation; pixels bounded to
    (0, 1) by a sigmoid unless bounded=False.
    """
    h, w = network.input_spec.size
    seeds = [config.seed + b for b in range(batch)]
    init = initial_images((3, h, w), seeds, config)
    transform = scale_rotate(tuple(scales), degrees) if (len(scales) > 1 or scales[0] != 1 or degrees) else None
    with placed(network, config) as (device, dtype):
        start = ImageParam(init.to(device, dtype), parameterization, decorrelate, bounded)
        run = optimize(network, objective, config, start, seeds=seeds, progress=progress, transform=transform)
    return destandardise(run.images).clamp(0, 1).float().cpu(), run


def class_objective(network: Network, index: int, node: str | None = None, lambda_l2: float = 1e-4,
                    lambda_tv: float = 0.0) -> Objective:
    """Class visualisation (Simonyan et al. 2014): maximise the class logit with an L2 prior."""
    node = node or network.output_names[0]
    return class_logit(node, index) + lambda_l2 * l2() + lambda_tv * tv()
