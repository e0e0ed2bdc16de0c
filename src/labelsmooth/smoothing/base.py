"""The strategy contract shared by every smoothing method.

``strategy = Strategy(num_classes=K, **params)``; ``loss = strategy(logits, target)`` with ``logits`` of
shape (N, K) and ``target`` class indices of shape (N,) returns the scalar mean loss. A strategy that
defines a soft target distribution also implements ``target_distribution(target, num_classes)``.
"""

from __future__ import annotations

import torch
from torch import nn


def check_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    why: str = "",
) -> None:
    """Raise ``ValueError`` naming the parameter, its value and the allowed range when out of range."""
    above_low = value >= low if low_inclusive else value > low
    below_high = value <= high if high_inclusive else value < high
    if not (above_low and below_high):
        interval = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        suffix = f" {why}" if why else ""
        raise ValueError(f"smoothing.{name}={value!r} is out of range: it must lie in {interval}.{suffix}")


def check_num_classes(num_classes: int) -> int:
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r}: label smoothing needs at least 2 classes")
    return int(num_classes)


class SmoothingStrategy(nn.Module):
    """Base class of every strategy: a loss over (N, K) logits and (N,) class indices."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, float]:
        """The strategy's own parameters, as recorded in ``metrics.json`` (``smoothing.<name>``)."""
        return {}


class TargetDistributionStrategy(SmoothingStrategy):
    """A strategy defined by a soft target distribution ``q`` and the loss ``-Σ_k q_k log p_k``."""

    def target_distribution(self, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def soft_target_loss(self, logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
        """Cross entropy against an arbitrary (N, K) soft target (e.g. after MixUp), computed in float32."""
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        return -(soft_target.float() * log_probs).sum(dim=-1).mean()
