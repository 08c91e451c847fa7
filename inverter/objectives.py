"""Objectives: values that compose with `+` and `*` (Lucent's style) and run through one loop.

An objective is a weighted sum of named terms. Each term maps (image, features) to one loss
per batch element, where `features` holds the tensors at the nodes the term names; the
engine computes the union of those nodes in one cut forward pass. Lower is better.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

TermFn = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class Term:
    name: str
    weight: float
    fn: TermFn
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Objective:
    terms: tuple[Term, ...] = field(default_factory=tuple)

    @staticmethod
    def term(name: str, fn: TermFn, nodes: tuple[str, ...] = (), weight: float = 1.0) -> "Objective":
        return Objective((Term(name, weight, fn, tuple(nodes)),))

    @property
    def nodes(self) -> list[str]:
        return list(dict.fromkeys(n for t in self.terms for n in t.nodes))

    def __add__(self, other: "Objective") -> "Objective":
        if other == 0:
            return self
        return Objective(self.terms + other.terms)

    __radd__ = __add__

    def __mul__(self, k) -> "Objective":
        """Scale by a number, or by a tensor of one weight per batch element (sweeps)."""
        k = k if isinstance(k, torch.Tensor) else float(k)
        return Objective(tuple(Term(t.name, t.weight * k, t.fn, t.nodes) for t in self.terms))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def evaluate(self, image: torch.Tensor, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted value of each term, per batch element (terms with equal names add up)."""
        out: dict[str, torch.Tensor] = {}
        for t in self.terms:
            if not isinstance(t.weight, torch.Tensor) and t.weight == 0:
                continue
            value = t.weight * t.fn(image, feats)
            out[t.name] = out[t.name] + value if t.name in out else value
        return out


def normalised_distance(feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||phi(x) - phi(x0)||^2 / ||phi(x0)||^2 per batch element (target broadcasts over the batch)."""
    diff = (feature - target).flatten(1).pow(2).sum(1)
    return diff / target.flatten(1).pow(2).sum(1).clamp_min(1e-12)


def feature_match(node: str, target: torch.Tensor, name: str | None = None) -> Objective:
    """Mahendran & Vedaldi's reconstruction loss at one node, normalised by the target's energy."""
    return Objective.term(name or f"feature:{node}",
                          lambda image, feats: normalised_distance(feats[node], target), (node,))


# --- feature visualisation: maximise, so the loss is the negative activation -----------------
def _pooled(feature: torch.Tensor, pool: int) -> torch.Tensor:
    """Optional max-pooling of the feature map: rewards blobs over pixel-level texture."""
    if pool > 1 and feature.dim() == 4:
        return torch.nn.functional.max_pool2d(feature, pool, stride=pool, ceil_mode=True)
    return feature


def channel(node: str, index: int, pool: int = 0) -> Objective:
    """Mean activation of one channel (NCHW feature maps, or one unit of a vector)."""
    def fn(image, feats):
        f = _pooled(feats[node], pool)
        return -(f[:, index].flatten(1).mean(1) if f.dim() > 2 else f[:, index])
    return Objective.term(f"channel:{node}:{index}", fn, (node,))


def neuron(node: str, index: int, x: int | None = None, y: int | None = None) -> Objective:
    """One unit of a channel, at (x, y) or at the centre."""
    def fn(image, feats):
        f = feats[node]
        cy = f.shape[2] // 2 if y is None else y
        cx = f.shape[3] // 2 if x is None else x
        return -f[:, index, cy, cx]
    return Objective.term(f"neuron:{node}:{index}", fn, (node,))


def layer(node: str) -> Objective:
    """The whole layer: mean squared activation (DeepDream)."""
    return Objective.term(f"layer:{node}", lambda image, feats: -feats[node].flatten(1).pow(2).mean(1), (node,))


def class_logit(node: str, index: int) -> Objective:
    """A class score (take the logits, before softmax: Simonyan et al. 2014)."""
    return Objective.term(f"logit:{index}", lambda image, feats: -feats[node].flatten(1)[:, index], (node,))


def l2() -> Objective:
    """||x||^2 of the image (engine space), the prior of class visualisation."""
    return Objective.term("l2", lambda image, feats: image.flatten(1).pow(2).sum(1))


def cross_entropy(node: str, index: int) -> Objective:
    """-log softmax(logits)[index]: pushes the model to answer `index` (fooling images)."""
    return Objective.term(f"xent:{index}",
                          lambda image, feats: -torch.log_softmax(feats[node].flatten(1), 1)[:, index], (node,))


def gram(feature: torch.Tensor) -> torch.Tensor:
    """(B, C, C) Gram matrices of NCHW feature maps, normalised by C*H*W (Gatys et al.)."""
    b, c = feature.shape[:2]
    f = feature.reshape(b, c, -1)
    return f @ f.transpose(1, 2) / f.shape[1] / f.shape[2]


def style_match(node: str, target_gram: torch.Tensor) -> Objective:
    """Squared distance of Gram matrices, normalised by the target's energy."""
    def fn(image, feats):
        g = gram(feats[node])
        return (g - target_gram).flatten(1).pow(2).sum(1) / target_gram.flatten(1).pow(2).sum(1).clamp_min(1e-12)
    return Objective.term(f"style:{node}", fn, (node,))


# --- image priors of Mahendran & Vedaldi (2015): the alpha-norm and total variation TV_beta ---
# Both return one value per batch element (sums over channels and pixels) and compose with
# feature terms: `feature_match(...) + 1e-5 * tv()`.
def alpha_norm_value(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """||x||_alpha^alpha = sum |x|^alpha, per batch element."""
    if alpha == 6:  # the usual choice: two multiplies are twice as fast as pow (scripts/bench.py)
        x2 = x * x
        return (x2 * x2 * x2).flatten(1).sum(1)
    return x.abs().pow(alpha).flatten(1).sum(1)


def tv_value(x: torch.Tensor, beta: float) -> torch.Tensor:
    """TV_beta = sum over pixels of ((x[i, j+1] - x[i, j])^2 + (x[i+1, j] - x[i, j])^2)^(beta/2).

    Differences past the last row/column are 0 (replicated border), so every pixel, the
    bottom-right one included, is tied to its neighbours."""
    dx = torch.nn.functional.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    dy = torch.nn.functional.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    squared = dx * dx + dy * dy
    if beta == 2:
        return squared.flatten(1).sum(1)
    return (squared + 1e-8).pow(beta / 2).flatten(1).sum(1)  # eps: finite gradient at 0 for beta < 2


def alpha_norm(alpha: float = 6.0) -> Objective:
    return Objective.term(f"alpha_norm", lambda image, feats: alpha_norm_value(image, alpha))


def tv(beta: float = 2.0) -> Objective:
    return Objective.term("tv", lambda image, feats: tv_value(image, beta))


# --- Mahendran & Vedaldi's normalised priors: R_alpha / (H W B^alpha), R_TV / (H W V^beta) ---------
# Theirs: B is the typical norm of a pixel vector, about 80 for mean-subtracted images in 0-255 units
# (their code), and V = B / 6.5. Our reading: the same B in our space (ImageNet-standardised, where one
# unit is 255 * 0.226 ~ 57.7 grey levels on average over the three channels), so B ~ 1.39.
MV_B = 80.0 / (255.0 * 0.226)
MV_V = MV_B / 6.5


def alpha_norm_normalised(alpha: float = 6.0, b: float = MV_B) -> Objective:
    """||x||_alpha^alpha / (H W B^alpha): about 1 for an image whose pixel vectors have norm B."""
    def fn(image, feats):
        return alpha_norm_value(image / b, alpha) / (image.shape[-1] * image.shape[-2])
    return Objective.term("alpha_norm", fn)


def tv_normalised(beta: float = 2.0, v: float = MV_V) -> Objective:
    """TV_beta / (H W V^beta): about 1 for an image whose neighbour differences have norm V."""
    def fn(image, feats):
        return tv_value(image / v, beta) / (image.shape[-1] * image.shape[-2])
    return Objective.term("tv", fn)


def depth_group(image_side: int, feature_side: int) -> int:
    """0, 1, 2 for shallow (downsampling 1-2: VGG conv1-2), middle (4-8: conv3-4), deep (>= 16: conv5, fc).

    Our reading of M&V's layer groups, made general by the node's downsampling; a vector output is deep."""
    factor = image_side / max(feature_side, 1)
    return 0 if factor <= 2 else 1 if factor <= 8 else 2
