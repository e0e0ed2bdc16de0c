"""The strategy contract shared by every smoothing method.

``strategy = Strategy(num_classes=K, **params)``; ``loss = strategy(logits, target)`` with ``logits`` of
shape (N, K) and ``target`` class indices of shape (N,) returns the scalar mean loss. A strategy that
defines a soft target distribution also implements ``target_distribution(target, num_classes)``.

Batch mixing (MixUp / CutMix) hands a strategy an *unsmoothed* (N, K) mixture of one-hot targets. A strategy
that can smooth such a mixture implements ``mixed_target_loss(logits, mixed_target)``, which smooths it exactly
once; a strategy without a target (a regularizer of p, a label-noise method) does not have that method, and
the training module refuses to mix with it.

Evaluation reads a strategy's predictions through ``prediction_logits(logits)``: logits whose softmax is the
model's predictive distribution, which the validation / test metrics, reliability diagrams and temperature
scaling use. It is the identity for the softmax strategies (``p = softmax(z)``); a strategy whose outputs mean
something else overrides it (sigmoid heads: ``logsigmoid(z)``, see ``labelsmooth.smoothing.sigmoid``). It must
keep the argmax, so accuracy reads the same either way, and it never touches a strategy's state.

Every loss is computed in float32 with autocast disabled, also under ``16-mixed`` / ``bf16-mixed``: summing K
half-precision log-probabilities loses the small terms and can overflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"smoothing.{name}={value!r} must be a number in the range {low:g}..{high:g}.")
    above_low = value >= low if low_inclusive else value > low
    below_high = value <= high if high_inclusive else value < high
    if not (above_low and below_high):
        interval = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        suffix = f" {why}" if why else ""
        raise ValueError(f"smoothing.{name}={value!r} is out of range: it must lie in {interval}.{suffix}")


def check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r}: label smoothing needs an integer number of classes >= 2")
    return int(num_classes)


def float32_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log p`` in float32 (call it with autocast disabled; see ``SmoothingStrategy.forward``)."""
    return torch.log_softmax(logits.float(), dim=-1)


def in_float32(function: Callable[..., torch.Tensor], logits: torch.Tensor, *args: Any) -> torch.Tensor:
    """``function(logits.float(), *args)`` with autocast disabled (entered only when autocast is on: the context
    switch costs microseconds per call)."""
    if torch.is_autocast_enabled(logits.device.type):
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return function(logits.float(), *args)
    return function(logits.float(), *args)


class SmoothingStrategy(nn.Module):
    """Base class of every strategy: a loss over (N, K) logits and (N,) class indices.

    Subclasses implement ``compute_loss``; ``forward`` runs it in float32 with autocast disabled.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return in_float32(self.compute_loss, logits, target)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits whose softmax is the model's predictive distribution, in float32, for evaluation.

        The identity here: a strategy trained through ``log softmax(z)`` predicts ``p = softmax(z)``. A strategy
        whose outputs are read differently (sigmoid heads) overrides it, keeping the argmax. No state is read or
        updated, so it is safe in validation and test.
        """
        return logits.float()

    def hyperparameters(self) -> dict[str, float]:
        """The strategy's own parameters, as recorded in ``metrics.json`` (``smoothing.<name>``)."""
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in {"num_classes": self.num_classes, **self.hyperparameters()}.items())


class MixableStrategy(SmoothingStrategy):
    """A strategy whose target is a (linear or data-dependent) function of the hard target, so it can smooth a
    MixUp / CutMix mixture of one-hot targets: mix first, then smooth, exactly once."""

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The smoothed (N, K) target of an unsmoothed (N, K) target (one-hot, multi-hot or a mixture of them)."""
        raise NotImplementedError  # pragma: no cover

    def mixed_target_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        """The loss against an unsmoothed soft target (e.g. MixUp's ``λ·onehot(a) + (1-λ)·onehot(b)``)."""
        if mixed_target.shape != logits.shape:
            raise ValueError(
                f"mixed_target has shape {tuple(mixed_target.shape)}, expected the logits' {tuple(logits.shape)}"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute_mixed_loss(logits.float(), mixed_target.float())

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover


class TargetDistributionStrategy(MixableStrategy):
    """A strategy defined by a soft target distribution ``q`` and the loss ``-Σ_k q_k log p_k``.

    ``q = smooth(onehot(y))``; under MixUp ``q = smooth(λ·onehot(a) + (1-λ)·onehot(b))``. Rows of ``q`` sum to 1.
    """

    def target_distribution(
        self, target: torch.Tensor, num_classes: int | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The (N, K) target probabilities of class indices ``target``."""
        hard = F.one_hot(target.long(), num_classes or self.num_classes).float()
        return self.smooth(hard, None if logits is None else logits.float())

    def soft_target_loss(self, logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
        """Cross entropy against an already smoothed (N, K) target, computed in float32."""
        return -(soft_target.float() * float32_log_softmax(logits)).sum(dim=-1).mean()

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.soft_target_loss(logits, self.target_distribution(target, logits=logits))

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return self.soft_target_loss(logits, self.smooth(mixed_target, logits))
