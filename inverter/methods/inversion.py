"""Feature inversion (Mahendran & Vedaldi 2015): reconstruct an image from the features at named nodes.

The objective is the normalised feature distance at the chosen node(s) + lambda_alpha * alpha-norm
+ lambda_tv * TV_beta; `invert` runs it through the one loop and reports the result against the
original image.

Grey cannot pass for a result (issue 19). The flat image x̄ is the better, at the node, of two
flat pictures: the photo's own mean colour and the engine's zero (the ImageNet mean grey, where
the priors pull an image that learned nothing). `flat_error` = ||Φ(x)−Φ(x0)||² / ||Φ(x̄)−Φ(x0)||²,
1 = no better than flat; a result at or above FLAT_BOUND is "no better than a flat image". Before
optimising, a node where x̄ already matches the photo's features (||Φ(x̄)−Φ(x0)||² / ||Φ(x0)||²
below SENSITIVITY_MIN) is refused: the node barely sees the image under this preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from converters.errors import UserError
from converters.network.network import Network
from converters.input_spec import LUMA, destandardise, standardise
from inverter.config import ConfigError, InversionConfig
from inverter.io.images import load_image
from inverter.io.metrics import psnr, ssim
from inverter.loop import initial_images, optimize, placed
from inverter.objectives import (Objective, alpha_norm, alpha_norm_normalised, depth_group, feature_match,
                                 normalised_distance, tv, tv_normalised)
from inverter.param import ImageParam


# Measured on the corpus and VGG16 (docs/corpus_quality.md): reconstructions that resemble the photo have
# flat_error <= 0.3 at early nodes and <= 0.6 deep; the flat grey pictures of issue 19 were 0.95-1.0.
FLAT_BOUND = 0.6
# Measured (docs/corpus_quality.md): under the file's own preprocessing the flat image's normalised
# error is >= 0.03 at every corpus node we tried; under a 255x wrong scale it fell to 1e-4-1e-3.
SENSITIVITY_MIN = 0.0025


# priors_by_response: nodes whose flat image's normalised feature error is at least this keep the priors
# as set (VGG16's measured 0.76-0.96); below it they are scaled down in proportion
RESPONSE_REFERENCE = 0.5


class InsensitiveNodeError(UserError):
    """A flat image already matches the photo's features at the node: nothing to reconstruct."""


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
    # node -> per image: ||phi(x) - phi(x0)||^2 / ||phi(flat) - phi(x0)||^2 (1 = no better than a flat image)
    flat_error: dict[str, list[float]] = field(default_factory=dict)
    # node -> per image: ||phi(flat) - phi(x0)||^2 / ||phi(x0)||^2, how much the node sees the image at all
    sensitivity: dict[str, list[float]] = field(default_factory=dict)

    @property
    def no_better_than_flat(self) -> list[bool]:
        """Per image: some node's result is no better than a flat image (flat_error >= FLAT_BOUND)."""
        batch = int(self.image.shape[0])
        return [any(v[b] >= FLAT_BOUND for v in self.flat_error.values()) for b in range(batch)]

    def summary(self) -> dict:
        """One schema whatever the batch size: per-image values are lists, one entry per image."""
        return {
            "model": self.model,
            "nodes": self.nodes,
            "resolved_nodes": self.resolved,
            "batch": int(self.image.shape[0]),
            "feature_error": self.feature_error,
            "feature_error_vs_flat": self.flat_error,
            "flat_image": FLAT_IMAGE,
            "flat_bound": FLAT_BOUND,
            "no_better_than_flat": self.no_better_than_flat,
            "success": self.stopped == "done" and not any(self.no_better_than_flat),
            "sensitivity": self.sensitivity,
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


FLAT_IMAGE = ("the better at the node of the photo's mean colour and the ImageNet mean grey (the engine's zero)")


def flat_images(original: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two flat pictures of each photo (B, 3, H, W) in engine space: its mean colour, and zero."""
    mean_colour = standardise(original.float().mean((2, 3), keepdim=True).expand_as(original).contiguous())
    return mean_colour, torch.zeros_like(mean_colour)


def flat_distance(network: Network, original: torch.Tensor, nodes: list[str],
                  targets: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per node, per image: min over the two flat pictures of ||phi(flat) - phi(x0)||^2."""
    device, dtype = targets[0].device, targets[0].dtype
    out = None
    for flat in flat_images(original):
        with torch.no_grad():
            feats = network.from_standardised(flat.to(device, dtype), nodes)
        d = [(f - t).flatten(1).pow(2).sum(1) for f, t in zip(feats, targets)]
        out = d if out is None else [torch.minimum(a, b) for a, b in zip(out, d)]
    return out


def check_sensitivity(network: Network, nodes: list[str], sensitivity: dict[str, torch.Tensor]) -> None:
    """Refuse, in one line, a node where a flat image already matches the photo's features."""
    for node in nodes:
        value = float(sensitivity[node].max())
        if value < SENSITIVITY_MIN:
            spec = network.input_spec
            raise InsensitiveNodeError(
                f"node {node!r} barely sees the image under the assumed preprocessing ({spec.colour} "
                f"[0, {spec.scale:g}], mean {[round(v, 4) for v in spec.mean]}, std {[round(v, 4) for v in spec.std]}; "
                f"{spec.source}): a flat image matches the photo's features there to {value:.2g} "
                f"(< {SENSITIVITY_MIN:g}); pass the model's own preprocessing (--scale 255, or --mean/--std, "
                f"--channel-order) or choose an earlier node")


PER_RUN_FIELDS = ("lr", "lambda_alpha", "lambda_tv", "seed")  # may differ inside one batch


def inversion_objective(targets: dict[str, torch.Tensor], config: InversionConfig,
                        weights: dict[str, float] | None = None, lambda_alpha=None, lambda_tv=None,
                        image_side: int | None = None, response: torch.Tensor | None = None) -> Objective:
    """sum_i w_i ||phi_i(x) - phi_i(x0)||^2 / ||phi_i(x0)||^2 + lambda_alpha R_alpha + lambda_tv R_TV.

    lambda_alpha / lambda_tv: a number, or one per batch element (tensor), default from config.
    config.priors picks plain or normalised priors; config.tv_depth_scale multiplies lambda_tv
    by the factor of the deepest node's group (`depth_group`, needs image_side).
    response: per batch element, the weakest node's sensitivity (a flat image's normalised feature error);
    with config.priors_by_response both priors are multiplied by min(1, response / RESPONSE_REFERENCE)."""
    weights = weights or {}
    objective = sum((weights.get(n, 1.0) * feature_match(n, t) for n, t in targets.items()), Objective())
    la = config.lambda_alpha if lambda_alpha is None else lambda_alpha
    ltv = config.lambda_tv if lambda_tv is None else lambda_tv
    if config.tv_depth_scale:
        side = image_side or max(t.shape[-1] for t in targets.values())
        group = max(depth_group(side, t.shape[-1] if t.dim() == 4 else 1) for t in targets.values())
        ltv = ltv * config.tv_depth_scale[group]
    if config.priors_by_response and response is not None:
        factor = (response / RESPONSE_REFERENCE).clamp(max=1.0)
        if bool((factor < 1).any()):  # else the weights stay plain numbers (and the run as before)
            la, ltv = la * factor, ltv * factor
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
           decorrelate: bool = False, observe=None, check: bool = True) -> InversionResult:
    """Reconstruct image(s) from the features at `nodes` (any accepted names).

    image: a path, or pixels in [0, 1] of shape (B, 3, H, W) at the network's size.
    seeds: one per run; B images x 1 seed or 1 image x S seeds run as one batch.
    configs: one per run, as one batch (they may differ in lr, lambdas and seed): a sweep.
    weights: per-node weights of the feature terms (default 1).
    observe: called each iteration with (iteration, loss per run, images in engine space) (`optimize`).
    check: refuse (InsensitiveNodeError) a node where a flat image already matches the photo's
    features (`check_sensitivity`), before any optimisation.
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
        flat = dict(zip(nodes, flat_distance(network, original, nodes, target_feats)))
        sensitivity = {n: flat[n] / targets[n].flatten(1).pow(2).sum(1).clamp_min(1e-12) for n in nodes}
        if check:
            check_sensitivity(network, nodes, sensitivity)
        per_run = {}
        if configs:
            per_run = {k: torch.tensor([getattr(c, k) for c in configs], device=device, dtype=dtype)
                       for k in ("lambda_alpha", "lambda_tv")}
        response = torch.stack([sensitivity[n].expand(batch) for n in nodes]).amin(0).to(device, dtype)
        objective = inversion_objective(targets, config, weights, **per_run, image_side=int(size[-1]),
                                        response=response)
        init = initial_images(tuple(original.shape[1:]), seeds, config, original[:1])
        start = ImageParam(init.to(device, dtype), parameterization, decorrelate)
        run = optimize(network, objective, config, start, seeds=seeds, progress=progress,
                       lrs=[c.lr for c in configs] if configs else None, observe=observe)
        with torch.no_grad():
            final_feats = network.from_standardised(run.images, nodes)
        errors = {n: normalised_distance(f, t).tolist() for n, f, t in zip(nodes, final_feats, target_feats)}
        flat_errors = {n: ((f - t).flatten(1).pow(2).sum(1) / flat[n].clamp_min(1e-30)).tolist()
                       for n, f, t in zip(nodes, final_feats, target_feats)}
    pixels = destandardise(run.images).clamp(0, 1).float().cpu()
    if network.input_spec.channels == 1:
        # a grey network sees only the luma: the colour it cannot see is not part of the answer, and
        # the photo is compared as the network sees it (the PNG is then written grey: io.images.to_pil)
        pixels, original = grey(pixels), grey(original.float().cpu())
    ref = original.expand_as(pixels)
    return InversionResult(
        image=pixels, original=original, nodes=nodes, resolved=resolved, history=run.history,
        feature_error=errors, flat_error=flat_errors,
        sensitivity={n: v.expand(batch).tolist() for n, v in sensitivity.items()},
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
