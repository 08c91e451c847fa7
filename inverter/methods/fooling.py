"""Fooling images (Szegedy et al. 2014; Nguyen et al. 2015): the smallest push to a target class."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from converters.network.network import Network
from converters.input_spec import destandardise, standardise
from inverter.config import InversionConfig
from inverter.loop import optimize, placed
from inverter.methods.saliency import check_class
from inverter.objectives import cross_entropy


@dataclass
class FoolingResult:
    image: torch.Tensor  # (1, 3, H, W) pixels
    original: torch.Tensor
    target: int
    before: int  # top-1 of the original
    after: int  # top-1 of the fooling image
    iterations: int
    max_pixel_change: float  # in [0, 1] pixel units
    stopped: str

    def magnified_difference(self, gain: float | None = None) -> torch.Tensor:
        """0.5 + gain * (fooled - original), gain chosen to fill [0, 1] by default."""
        diff = self.image - self.original
        gain = gain or 0.5 / max(float(diff.abs().max()), 1e-8)
        return (0.5 + gain * diff).clamp(0, 1)

    def summary(self) -> dict:
        return {"target": self.target, "top1_before": self.before, "top1_after": self.after,
                "fooled": self.after == self.target, "iterations": self.iterations,
                "max_pixel_change": self.max_pixel_change, "stopped": self.stopped}


def fool(network: Network, rgb01: torch.Tensor, target: int, config: InversionConfig | None = None,
         node: str | None = None, progress: bool = True) -> FoolingResult:
    """Start at the image and descend the target's cross-entropy until the top-1 is the target."""
    config = config or InversionConfig(iterations=100, lr=0.01, lambda_alpha=0, lambda_tv=0, init="image")
    node = node or network.output_names[0]

    with placed(network, config) as (device, dtype):
        def scores_of(pixels: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return network.from_standardised(standardise(pixels.to(device, dtype)), [node])[0].flatten(1)

        def reached(image, feats):
            """The target wins on the image as it will be saved: clipped and rounded to 8 bits."""
            with torch.no_grad():
                saved = (destandardise(image).clamp(0, 1) * 255).round() / 255
            return scores_of(saved).argmax(1) == target

        scores = scores_of(rgb01[:1])
        check_class(target, scores.shape[1], node)
        before = int(scores.argmax(1)[0])
        run = optimize(network, cross_entropy(node, target), config, standardise(rgb01), progress=progress,
                       stop=reached)
        clipped = destandardise(run.images).float().cpu().clamp(0, 1)
        after = int(scores_of(clipped).argmax(1)[0])
    return FoolingResult(image=clipped, original=rgb01, target=target, before=before, after=after,
                         iterations=run.iterations, max_pixel_change=float((clipped - rgb01).abs().max()),
                         stopped=run.stopped)
