"""Feature inversion (Mahendran & Vedaldi 2015): reconstruct an image from the features at named nodes.

The objective is the normalised feature distance at the chosen node(s) + lambda_alpha * alpha-norm
+ lambda_tv * TV_beta; `invert` runs it through the one loop and reports the result against the
original image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from converters.network.network import Network
from converters.input_spec import LUMA, destandardise, standardise
from inverter.config import ConfigError, InversionConfig
from inverter.io.images import load_image
from inverter.io.metrics import psnr, ssim
from inverter.loop import initial_images, optimize, placed
from inverter.objectives import (Objective, alpha_norm, alpha_norm_normalised, depth_group, feature_match,
                                 normalised_distance, tv, tv_normalised)
from inverter.param import ImageParam


@dataclass
class InversionResult:
    """A feature inversion: images, loss curves, feature error, pixel metrics, time, config."""

    image: torch.Tensor  # (B, 3, H, W) pixels in [0, 1]
    original: torch.Tensor  # (B or 1, 3, H, W) pixels in [0, 1]
    nodes: list[str]
    resolved: list[str]  # the ONNX node each name resolved to
    history: dict[str, np.ndarray]
    feature_error: dict[str, list[float]]  # node -> per image, at the final image, no jitter
    psnr: list[float]
    ssim: list[float]
    seconds: float
    iterations: int
    stopped: str
    config: InversionConfig
    model: str | None = None
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """One schema whatever the batch size: per-image values are lists, one entry per image."""
        return {
            "model": self.model,
            "nodes": self.nodes,
            "resolved_nodes": self.resolved,
            "batch": int(self.image.shape[0]),
            "feature_error": self.feature_error,
            "psnr_db": self.psnr,
            "ssim": self.ssim,
            "seconds": round(self.seconds, 3),
            "seconds_per_iteration": round(self.seconds / max(self.iterations, 1), 4),
            "iterations": self.iterations,
            "stopped": self.stopped,
            "final_loss": {k: v[-1].tolist() for k, v in self.history.items() if len(v)},
            "config": self.config.to_dict(),
            **self.extra,
        }


PER_RUN_FIELDS = ("lr", "lambda_alpha", "lambda_tv", "seed")  # may differ inside one batch


def inversion_objective(targets: dict[str, torch.Tensor], config: InversionConfig,
                        weights: dict[str, float] | None = None, lambda_alpha=None, lambda_tv=None,
                        image_side: int | None = None) -> Objective:
    """sum_i w_i ||phi_i(x) - phi_i(x0)||^2 / ||phi_i(x0)||^2 + lambda_alpha R_alpha + lambda_tv R_TV.

    lambda_alpha / lambda_tv: a number, or one per batch element (tensor), default from config.
    config.priors picks plain or normalised priors; config.tv_depth_scale multiplies lambda_tv
    by the factor of the deepest node's group (`depth_group`, needs image_side)."""
    weights = weights or {}
    objective = sum((weights.get(n, 1.0) * feature_match(n, t) for n, t in targets.items()), Objective())
    la = config.lambda_alpha if lambda_alpha is None else lambda_alpha
    ltv = config.lambda_tv if lambda_tv is None else lambda_tv
    if config.tv_depth_scale:
        side = image_side or max(t.shape[-1] for t in targets.values())
        group = max(depth_group(side, t.shape[-1] if t.dim() == 4 else 1) for t in targets.values())
        ltv = ltv * config.tv_depth_scale[group]
    if config.priors == "normalised":
        return objective + la * alpha_norm_normalised(config.alpha) + ltv * tv_normalised(config.beta)
    return objective + la * alpha_norm(config.alpha) + ltv * tv(config.beta)


def _batch_settings(configs: list[InversionConfig]) -> InversionConfig:
    first = configs[0]
    for c in configs[1:]:
        for key, value in c.to_dict().items():
            if key not in PER_RUN_FIELDS and value != getattr(first, key):
                raise ConfigError(f"runs batched together may differ only in {', '.join(PER_RUN_FIELDS)}; "
                                  f"they differ in {key}")
    return first


def invert(network: Network, image: str | Path | torch.Tensor, nodes: list[str] | str,
           config: InversionConfig | None = None, weights: dict[str, float] | None = None,
           seeds: list[int] | None = None, progress: bool = True,
           configs: list[InversionConfig] | None = None, parameterization: str = "pixel",
           decorrelate: bool = False, observe=None) -> InversionResult:
    """Reconstruct image(s) from the features at `nodes` (any accepted names).

    image: a path, or pixels in [0, 1] of shape (B, 3, H, W) at the network's size.
    seeds: one per run; B images x 1 seed or 1 image x S seeds run as one batch.
    configs: one per run, as one batch (they may differ in lr, lambdas and seed): a sweep.
    weights: per-node weights of the feature terms (default 1).
    observe: called each iteration with (iteration, loss per run, images in engine space) (`optimize`).
    """
    if configs:
        config = _batch_settings(configs)
        seeds = [c.seed for c in configs]
    config = config or InversionConfig()
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    if not nodes:
        raise ConfigError("give at least one node to invert (--node NAME)")
    resolved = [network.resolve(n).name for n in nodes]
    size = network.input_spec.size
    original = load_image(image, size) if isinstance(image, (str, Path)) else image.float()
    if tuple(original.shape[-2:]) != tuple(size):
        raise ConfigError(f"image is {tuple(original.shape[-2:])} but the network takes {tuple(size)}")
    seeds = seeds or [config.seed + b for b in range(original.shape[0])]
    batch = max(len(seeds), original.shape[0])
    if original.shape[0] not in (1, batch) or len(seeds) not in (1, batch):
        raise ConfigError("give one image per seed, or one image or one seed for all")
    seeds = seeds * batch if len(seeds) == 1 else seeds
    with placed(network, config) as (device, dtype):
        with torch.no_grad():
            target_feats = network.from_standardised(standardise(original).to(device, dtype), nodes)
        targets = dict(zip(nodes, target_feats))
        per_run = {}
        if configs:
            per_run = {k: torch.tensor([getattr(c, k) for c in configs], device=device, dtype=dtype)
                       for k in ("lambda_alpha", "lambda_tv")}
        objective = inversion_objective(targets, config, weights, **per_run, image_side=int(size[-1]))
        init = initial_images(tuple(original.shape[1:]), seeds, config, original[:1])
        start = ImageParam(init.to(device, dtype), parameterization, decorrelate)
        run = optimize(network, objective, config, start, seeds=seeds, progress=progress,
                       lrs=[c.lr for c in configs] if configs else None, observe=observe)
        with torch.no_grad():
            final_feats = network.from_standardised(run.images, nodes)
        errors = {n: normalised_distance(f, t).tolist() for n, f, t in zip(nodes, final_feats, target_feats)}
    pixels = destandardise(run.images).clamp(0, 1).float().cpu()
    if network.input_spec.channels == 1:
        # a grey network sees only the luma: the colour it cannot see is not part of the answer, and
        # the photo is compared as the network sees it (the PNG is then written grey: io.images.to_pil)
        pixels, original = grey(pixels), grey(original.float().cpu())
    ref = original.expand_as(pixels)
    return InversionResult(
        image=pixels, original=original, nodes=nodes, resolved=resolved, history=run.history,
        feature_error=errors,
        psnr=[psnr(pixels[b : b + 1], ref[b : b + 1]) for b in range(batch)],
        ssim=[ssim(pixels[b : b + 1], ref[b : b + 1]) for b in range(batch)],
        seconds=run.seconds, iterations=run.iterations, stopped=run.stopped, config=config,
        model=str(network.path) if network.path else None,
        extra={"input": network.describe()["input"], "notes": list(network.notes),
               **({"runs": [c.to_dict() for c in configs]} if configs else {}),
               **({"cause": run.cause} if run.cause else {})},
    )


def grey(rgb01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> its luma (ITU-R 601, as Pillow's "L"), repeated over the three channels."""
    luma = (rgb01 * torch.tensor(LUMA, dtype=rgb01.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return luma.expand(-1, 3, -1, -1).contiguous()
