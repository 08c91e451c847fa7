"""One optimisation loop for every gradient-on-the-input method, and feature inversion on top.

`optimize` runs any `Objective` on a batch of images in the engine's space (ImageNet-
standardised RGB NCHW); each batch element has its own seed for init and jitter and its
own loss, so a batch of B runs equals B single runs. `invert` builds Mahendran & Vedaldi's
objective: normalised feature distance at the chosen node(s) + lambda_alpha * alpha-norm +
lambda_tv * TV_beta, and reports the result against the original image.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from converters.onnx_torch import Network
from converters.spec import destandardise, standardise
from inverter.config import ConfigError, InversionConfig
from inverter.images import load_image
from inverter.metrics import psnr, ssim
from inverter.objectives import Objective, feature_match, normalised_distance
from inverter.param import ImageParam
from inverter.regularizers import alpha_norm, tv
from inverter.transforms import compose, jitter

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What `optimize` returns: the final (or best, when stopped early) images and the loss terms."""

    images: torch.Tensor  # (B, 3, H, W), engine space
    history: dict[str, np.ndarray]  # term -> (iterations, B)
    iterations: int
    stopped: str  # "done" | "diverged" | "interrupted" | "target reached"
    seconds: float

    def summary(self) -> dict:
        """Iterations, time, why it stopped, and each loss term at the first and last iteration."""
        return {"iterations": self.iterations, "seconds": self.seconds, "stopped": self.stopped,
                "first_loss": {k: v[0].tolist() for k, v in self.history.items() if len(v)},
                "final_loss": {k: v[-1].tolist() for k, v in self.history.items() if len(v)}}


@dataclass
class Result:
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
        one = self.image.shape[0] == 1
        pick = (lambda v: v[0]) if one else (lambda v: v)
        return {
            "model": self.model,
            "nodes": self.nodes,
            "resolved_nodes": self.resolved,
            "feature_error": {k: pick(v) for k, v in self.feature_error.items()},
            "psnr_db": pick(self.psnr),
            "ssim": pick(self.ssim),
            "seconds": round(self.seconds, 3),
            "seconds_per_iteration": round(self.seconds / max(self.iterations, 1), 4),
            "iterations": self.iterations,
            "stopped": self.stopped,
            "final_loss": {k: pick(v[-1].tolist()) for k, v in self.history.items() if len(v)},
            "config": self.config.to_dict(),
            **self.extra,
        }


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def initial_images(shape: tuple[int, int, int], seeds: list[int], config: InversionConfig,
                   original: torch.Tensor | None = None) -> torch.Tensor:
    """Start images in engine space, one per seed (noise is drawn per seed, on the CPU)."""
    if config.init == "image":
        if original is None:
            raise ConfigError("init=image needs an image")
        return standardise(original).expand(len(seeds), *shape).clone()
    if config.init == "zeros":
        return torch.zeros(len(seeds), *shape)
    return torch.stack([torch.randn(shape, generator=_generator(s)) * config.init_scale for s in seeds])


def optimize(network: Network, objective: Objective, config: InversionConfig, init: torch.Tensor,
             seeds: list[int] | None = None, progress: bool = True, stop=None, transform=None,
             parameterization: str = "pixel", decorrelate: bool = False, bounded: bool = False,
             lrs: list[float] | None = None) -> Run:
    """Minimise `objective` over a batch of images; gradients reach the images only.

    init: (B, 3, H, W) start images in engine space. seeds: one per element (jitter and
    transform draws). lrs: one learning rate per element (default config.lr).
    stop(images, feats) -> bool per element: stop once all are True.
    transform(x, generators) -> x: robustness transforms, after the built-in jitter.
    """
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    network.to(device, dtype)
    batch = init.shape[0]
    seeds = seeds or [config.seed + b for b in range(batch)]
    gens = [_generator(s + 1_000_003) for s in seeds]  # transform streams, apart from init streams
    param = ImageParam(init.detach().to(device, dtype), parameterization, decorrelate, bounded)
    groups = [{"params": [leaf], "lr": lr} for leaf, lr in zip(param.leaves, lrs or [config.lr] * batch)]
    if config.optimizer == "adam":
        opt = torch.optim.Adam(groups)
    else:
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    sched = torch.optim.lr_scheduler.StepLR(opt, config.decay_every, config.decay_factor) if config.decay_every else None
    augment = compose(jitter(config.jitter), transform)
    nodes = objective.nodes
    history: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        best = param.image().detach().clone()
    best_loss = torch.full((batch,), float("inf"), device=device, dtype=dtype)
    stopped, it = "done", 0
    start = time.perf_counter()
    bar = tqdm(total=config.iterations, disable=not progress, desc="optimising", unit="it", leave=False)
    try:
        for it in range(1, config.iterations + 1):
            opt.zero_grad(set_to_none=True)
            v = param.image()
            x = augment(v, gens)
            feats = dict(zip(nodes, network.features(x, nodes))) if nodes else {}
            terms = objective.evaluate(v, feats)
            total = sum(terms.values())
            if not torch.isfinite(total).all():
                stopped = "diverged"
                log.warning("loss became %s at iteration %d; keeping the last finite image",
                            float(total.detach().sum()), it)
                it -= 1
                break
            with torch.no_grad():
                better = total.detach() < best_loss
                best_loss = torch.where(better, total.detach(), best_loss)
                best = torch.where(better.view(-1, 1, 1, 1), v.detach(), best)
            for name, value in {**terms, "total": total}.items():
                history.setdefault(name, []).append(value.detach())
            if stop is not None and bool(stop(v, feats).all()):
                stopped = "target reached"
                best = v.detach().clone()
                break
            total.sum().backward()
            opt.step()
            if sched:
                sched.step()
            bar.update(1)
            if progress and it % 10 == 0:
                bar.set_postfix(loss=f"{float(total.detach().mean()):.4g}")
    except KeyboardInterrupt:
        stopped = "interrupted"
        log.warning("interrupted at iteration %d; keeping the best image so far", it)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    if stopped == "done":
        with torch.no_grad():
            final = param.image().detach()
    else:
        final = best
    hist = {k: torch.stack(vals).float().cpu().numpy() for k, vals in history.items()}
    return Run(images=final, history=hist, iterations=it, stopped=stopped, seconds=seconds)


PER_RUN_FIELDS = ("lr", "lambda_alpha", "lambda_tv", "seed")  # may differ inside one batch


def inversion_objective(targets: dict[str, torch.Tensor], config: InversionConfig,
                        weights: dict[str, float] | None = None, lambda_alpha=None, lambda_tv=None) -> Objective:
    """sum_i w_i ||phi_i(x) - phi_i(x0)||^2 / ||phi_i(x0)||^2 + lambda_alpha R_alpha + lambda_tv R_TV.

    lambda_alpha / lambda_tv: a number, or one per batch element (tensor), default from config."""
    weights = weights or {}
    objective = sum((weights.get(n, 1.0) * feature_match(n, t) for n, t in targets.items()), Objective())
    la = config.lambda_alpha if lambda_alpha is None else lambda_alpha
    ltv = config.lambda_tv if lambda_tv is None else lambda_tv
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
           decorrelate: bool = False) -> Result:
    """Reconstruct image(s) from the features at `nodes` (any accepted names).

    image: a path, or pixels in [0, 1] of shape (B, 3, H, W) at the network's size.
    seeds: one per run; B images x 1 seed or 1 image x S seeds run as one batch.
    configs: one per run, as one batch (they may differ in lr, lambdas and seed): a sweep.
    weights: per-node weights of the feature terms (default 1).
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
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    network.to(device, dtype)
    with torch.no_grad():
        target_feats = network.features(standardise(original).to(device, dtype), nodes)
    targets = dict(zip(nodes, target_feats))
    per_run = {}
    if configs:
        per_run = {k: torch.tensor([getattr(c, k) for c in configs], device=device, dtype=dtype)
                   for k in ("lambda_alpha", "lambda_tv")}
    objective = inversion_objective(targets, config, weights, **per_run)
    init = initial_images(tuple(original.shape[1:]), seeds, config, original[:1])
    run = optimize(network, objective, config, init, seeds=seeds, progress=progress,
                   parameterization=parameterization, decorrelate=decorrelate,
                   lrs=[c.lr for c in configs] if configs else None)
    with torch.no_grad():
        final_feats = network.features(run.images, nodes)
    errors = {n: normalised_distance(f, t).tolist() for n, f, t in zip(nodes, final_feats, target_feats)}
    pixels = destandardise(run.images).clamp(0, 1).float().cpu()
    ref = original.expand_as(pixels)
    return Result(
        image=pixels, original=original, nodes=nodes, resolved=resolved, history=run.history,
        feature_error=errors,
        psnr=[psnr(pixels[b : b + 1], ref[b : b + 1]) for b in range(batch)],
        ssim=[ssim(pixels[b : b + 1], ref[b : b + 1]) for b in range(batch)],
        seconds=run.seconds, iterations=run.iterations, stopped=run.stopped, config=config,
        model=str(network.path) if network.path else None,
        extra={"runs": [c.to_dict() for c in configs]} if configs else {},
    )
