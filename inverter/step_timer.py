"""The cost of one optimisation step at a node, measured with torch.utils.benchmark."""
from __future__ import annotations

import torch
from torch.utils import benchmark

from converters.input_spec import standardise
from converters.network.network import Network
from inverter.objectives import normalised_distance


def time_step(network: Network, node: str, batch: int = 1, seconds: float = 2.0) -> float:
    """Median seconds of forward to `node` + backward to the image, at the network's size."""
    h, w = network.input_spec.size
    g = torch.Generator().manual_seed(0)
    target_image = standardise(torch.rand(1, 3, h, w, generator=g))
    with torch.no_grad():
        (target,) = network.from_standardised(target_image, [node])
    v = (0.1 * torch.randn(batch, 3, h, w, generator=g)).requires_grad_(True)

    def step():
        v.grad = None
        (feature,) = network.from_standardised(v, [node])
        normalised_distance(feature, target).sum().backward()

    step()  # builds and caches the cut
    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=seconds).median
