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
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from labelsmooth.errors import ConfigurationError


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
        raise ConfigurationError(f"smoothing.{name}={value!r} must be a number in the range {low:g}..{high:g}.")
    above_low = value >= low if low_inclusive else value > low
    below_high = value <= high if high_inclusive else value < high
    if not (above_low and below_high):
        interval = f"{'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        suffix = f" {why}" if why else ""
        raise ConfigurationError(f"smoothing.{name}={value!r} is out of range: it must lie in {interval}.{suffix}")


def check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or int(num_classes) < 2:
        raise ConfigurationError(
            f"num_classes={num_classes!r}: label smoothing needs an integer number of classes >= 2"
        )
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

    ``unsmoothed`` declares, for each numeric parameter, the value at which the strategy is plain cross entropy
    (no smoothing or regularisation): ``{"epsilon": 0.0}`` for uniform smoothing, ``{"gamma": 1.0}`` for γ. Training
    records it in ``metrics.json`` (``unsmoothed.smoothing.<name>``), the report takes its baseline from there and a
    parameter schedule switches to it; a strategy with no parameter declares nothing.
    """

    unsmoothed: ClassVar[Mapping[str, float]] = {}

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
        """The strategy's own parameters (its ``repr``; ``metrics.json`` records the configured ones)."""
        return {}

    @classmethod
    def unsmoothed_value(cls, parameter: str) -> float:
        """The value of ``parameter`` at which the strategy does not smooth (``unsmoothed``), or a ``ValueError``."""
        if parameter not in cls.unsmoothed:
            declared = ", ".join(sorted(cls.unsmoothed)) or "none"
            raise ConfigurationError(
                f"{cls.__name__} declares no unsmoothed value for {parameter!r} (it declares: {declared})"
            )
        return float(cls.unsmoothed[parameter])

    def numeric_parameters(self) -> dict[str, float]:
        """The real-valued parameters among ``hyperparameters()`` (those a schedule can change)."""
        return {k: v for k, v in self.hyperparameters().items() if isinstance(v, float)}

    def parameter_update(self, name: str, value: float) -> dict[str, Any]:
        """The attributes ``set_parameter(name, value)`` assigns, after checking ``value``.

        The constructor is the one definition of a parameter's range and of the constants derived from it, so the
        strategy is built twice, with the current parameters and with ``name=value``: the constructor checks
        ``value``, and the plain attributes that differ between the two (the parameter and what is derived from
        it, e.g. binary smoothing's on / off targets) are the update. A parameter the constructor turns into
        tensor state (online smoothing's ``initial_epsilon``, its epoch-0 targets) cannot change after it: refused.
        """
        numeric = self.numeric_parameters()
        if name not in numeric:
            raise ConfigurationError(
                f"{type(self).__name__} has no real-valued parameter {name!r} to set (it has: "
                f"{', '.join(numeric) or 'none'})"
            )
        current = type(self)(self.num_classes, **self.hyperparameters())
        updated = type(self)(self.num_classes, **{**self.hyperparameters(), name: float(value)})
        if not _same_state(current.state_dict(), updated.state_dict()):
            raise ConfigurationError(
                f"{type(self).__name__}.{name} sets up the strategy's state when it is built; it cannot be changed "
                "during training."
            )
        changes: dict[str, Any] = {}
        for key, new in vars(updated).items():
            if key.startswith("_") or _same_state(vars(current)[key], new):
                continue
            if isinstance(new, torch.Tensor):
                raise ConfigurationError(
                    f"{type(self).__name__}.{name} sets up the tensor {key!r} when the strategy is built; it cannot "
                    "be changed during training."
                )
            changes[key] = new
        return changes

    def set_parameter(self, name: str, value: float) -> None:
        """Use ``name=value`` from the next call on (a parameter schedule's value for an epoch); checked as the
        constructor checks it (``ConfigurationError`` naming the parameter and its range)."""
        for key, new in self.parameter_update(name, value).items():
            setattr(self, key, new)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in {"num_classes": self.num_classes, **self.hyperparameters()}.items())


def _same_state(a: Any, b: Any) -> bool:
    """Whether two attribute values or state dicts (tensors, dicts, sequences, plain values) are equal."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


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
