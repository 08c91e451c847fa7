"""The one optimisation loop for every gradient-on-the-input method.

`optimize` runs any `Objective` on a batch of images in the engine's space (ImageNet-
standardised RGB NCHW); each batch element has its own seed for init and jitter and its
own loss, so a batch of B runs equals B single runs.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from converters.network.network import Network
from converters.input_spec import standardise
from inverter.config import ConfigError, InversionConfig
from inverter.objectives import MV_B, Objective
from inverter.param import ImageParam, Parameterization
from inverter.transforms import compose, jitter

log = logging.getLogger(__name__)


@dataclass
class OptimizationRun:
    """What `optimize` returns: the final (or best, when stopped early) images and the loss terms."""

    images: torch.Tensor  # (B, 3, H, W), engine space
    history: dict[str, np.ndarray]  # term -> (iterations, B)
    iterations: int
    stopped: str  # "done" | "diverged" | "interrupted" | "target reached" | "stalled"
    seconds: float
    cause: str = ""  # when diverged: the likely cause and the flag to change

    def summary(self) -> dict:
        """Iterations, time, why it stopped, and each loss term at the first and last iteration."""
        return {"iterations": self.iterations, "seconds": self.seconds, "stopped": self.stopped,
                "first_loss": {k: v[0].tolist() for k, v in self.history.items() if len(v)},
                "final_loss": {k: v[-1].tolist() for k, v in self.history.items() if len(v)}}


def stalled(total: np.ndarray | None, min_iterations: int = 10, tolerance: float = 1e-6) -> bool:
    """True when no batch element's loss moved by more than `tolerance` (relative) over the run."""
    if total is None or len(total) < min_iterations:
        return False
    first, last = np.asarray(total[0], dtype=np.float64), np.asarray(total[-1], dtype=np.float64)
    return bool(np.all(np.abs(last - first) <= tolerance * np.maximum(np.abs(first), 1e-30)))


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


@contextmanager
def placed(network: Network, config: InversionConfig) -> Iterator[tuple[torch.device, torch.dtype]]:
    """Run the network on config.device and config.dtype, and put it back where it was afterwards.

    Every method works inside this, so calling one never moves the caller's network; nested
    uses cost nothing (`Network.to` keeps its cached cuts when nothing changes)."""
    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    before = (network.device, network.dtype)
    network.to(device, dtype)
    try:
        yield device, dtype
    finally:
        network.to(*before)


def optimize(network: Network, objective: Objective, config: InversionConfig, image: torch.Tensor | Parameterization,
             *, seeds: list[int] | None = None, lrs: list[float] | None = None, transform=None, stop=None,
             progress: bool = True, observe=None) -> OptimizationRun:
    """Minimise `objective` over a batch of images; gradients reach the images only.

    image: the start images (B, 3, H, W) in engine space, optimised as pixels; or any
    parameterisation, a value with one leaf tensor per batch element and `image()` (for example
    `ImageParam(init, "fourier", decorrelate=True)`; Lucent's `param_f`): a new parameterisation
    is a new class, not a new argument here. seeds: one per element (jitter and transform draws).
    lrs: one learning rate per element (default config.lr).
    stop(images, feats) -> bool per element: stop once all are True.
    transform(x, generators) -> x: robustness transforms, after the built-in jitter.
    observe(iteration, total, images): called once per iteration with the loss per element and the
    images (engine space) it was taken at, before the step; it may raise KeyboardInterrupt to stop.
    Runs on config.device and config.dtype and leaves the network where it was (`placed`).
    """
    with placed(network, config) as (device, dtype):
        if isinstance(image, torch.Tensor):
            param: Parameterization = ImageParam(image.detach().to(device, dtype))
        else:
            param = image
            if any(leaf.device.type != device.type or leaf.dtype != dtype for leaf in param.leaves):
                raise ConfigError(f"the parameterisation's tensors are not on {config.device} in {config.dtype}: "
                                  "build it from a start image on that device and in that dtype")
        return _descend(network, objective, config, param, seeds=seeds, lrs=lrs, transform=transform, stop=stop,
                        progress=progress, observe=observe)


def _descend(network: Network, objective: Objective, config: InversionConfig, param: Parameterization, *,
             seeds, lrs, transform, stop, progress, observe=None) -> OptimizationRun:
    """The loop itself, on the device and dtype of the parameterisation's leaves."""
    device, dtype = param.leaves[0].device, param.leaves[0].dtype
    batch = len(param.leaves)
    seeds = seeds or [config.seed + b for b in range(batch)]
    gens = [_generator(s + 1_000_003) for s in seeds]  # transform streams, apart from init streams
    with torch.no_grad():
        best = param.image().detach().clone()
    height, width = best.shape[-2:]
    area = height * width * MV_B**2 if config.lr_scales_with_area else 1.0
    groups = [{"params": [leaf], "lr": lr * area} for leaf, lr in zip(param.leaves, lrs or [config.lr] * batch)]
    if config.optimizer == "adam":
        opt = torch.optim.Adam(groups)
    else:
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    if config.decay_every:
        sched = torch.optim.lr_scheduler.StepLR(opt, config.decay_every, config.decay_factor)
    elif config.decay_at and config.decay_factor != 1:
        milestones = sorted({max(1, round(f * config.iterations)) for f in config.decay_at})
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, config.decay_factor)
    else:
        sched = None
    augment = compose(jitter(config.jitter), transform)
    nodes = objective.nodes
    history: dict[str, list[torch.Tensor]] = {}
    best_loss = torch.full((batch,), float("inf"), device=device, dtype=dtype)
    stopped, it, cause = "done", 0, ""
    start = time.perf_counter()
    bar = tqdm(total=config.iterations, disable=not progress, desc="optimising", unit="it", leave=False)
    try:
        for it in range(1, config.iterations + 1):
            opt.zero_grad(set_to_none=True)
            v = param.image()
            x = augment(v, gens)
            feats = dict(zip(nodes, network.from_standardised(x, nodes))) if nodes else {}
            terms = objective.evaluate(v, feats)
            total = sum(terms.values())
            if not torch.isfinite(total).all():
                stopped = "diverged"
                cause = divergence_cause(terms, it, config)
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
            if observe is not None:
                observe(it, total.detach(), v.detach())
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
    if stopped == "done" and stalled(hist.get("total")):
        stopped = "stalled"
        log.warning("the loss did not move in %d iterations: the gradient vanishes at this node (a saturated "
                    "activation, or a node the image does not reach); try another node or --init image", it)
    return OptimizationRun(images=final, history=hist, iterations=it, stopped=stopped, seconds=seconds, cause=cause)


def divergence_cause(terms: dict[str, torch.Tensor], iteration: int, config: InversionConfig) -> str:
    """Which term left the finite range, and the setting most likely to blame."""
    bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
    listed = ", ".join(bad) or "the total"
    if "alpha_norm" in bad:
        return (f"the alpha-norm prior overflowed (alpha {config.alpha:g}, lambda_alpha {config.lambda_alpha:g}): "
                "lower --alpha or --lambda-alpha")
    if "tv" in bad:
        return (f"the TV prior overflowed (beta {config.beta:g}, lambda_tv {config.lambda_tv:g}): "
                "lower --beta or --lambda-tv")
    if iteration == 1:
        return (f"the loss ({listed}) is not finite at the start image: the model's features or the "
                "preprocessing (--mean/--std/--scale) give inf or nan; check them")
    hint = " or use --dtype float64" if config.dtype == "float32" else ""
    return f"{listed} overflowed after {iteration - 1} steps at lr {config.lr:g}: lower --lr{hint}"
