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

    def __mul__(self, k: float) -> "Objective":
        return Objective(tuple(Term(t.name, t.weight * float(k), t.fn, t.nodes) for t in self.terms))

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return self * -1.0

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def evaluate(self, image: torch.Tensor, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted value of each term, per batch element (terms with equal names add up)."""
        out: dict[str, torch.Tensor] = {}
        for t in self.terms:
            if t.weight == 0:
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
