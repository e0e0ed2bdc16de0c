"""The strategy contract shared by every smoothing method, as abstract base classes.

``strategy = Strategy(num_classes=K, **params)``; ``loss = strategy(logits, target)`` with ``logits`` of
shape (N, K) and ``target`` class indices of shape (N,) returns the scalar mean loss. Every strategy is a
``SmoothingStrategy``, and states what else it is by the bases it inherits:

* ``SchedulableParameters`` (every strategy): its real-valued parameters are declared once, with their ranges and
  unsmoothed values (``labelsmooth.smoothing.parameters``), and ``set_parameter`` changes one in place.
* ``TakesMixedTargets``: batch mixing (MixUp / CutMix) hands a strategy an *unsmoothed* (N, K) mixture of one-hot
  targets; ``mixed_target_loss(logits, mixed_target)`` smooths it exactly once. A strategy without a target (a
  regularizer of p, a label-noise method) is not one, and the training module refuses to mix with it.
* ``HasTargetDistribution`` (a ``TakesMixedTargets``): the loss is the cross entropy against a soft target
  ``q = smooth(onehot(y))``, ``target_distribution(target, num_classes)``.
* ``UsesClassPrior``: the strategy takes the training set's class frequencies, ``set_class_frequencies(f)``,
  before training.

Abstract base classes rather than runtime-checkable Protocols: the strategies share implementation through these
bases (the float32 forward, the declared parameters, the mixed-target loss of a target distribution), a class
states its kind by inheriting, and ``isinstance`` is then exact, where a Protocol would only check that methods of
those names exist. ``MixableStrategy`` and ``TargetDistributionStrategy`` are other names of ``TakesMixedTargets``
and ``HasTargetDistribution``.

Evaluation reads a strategy's predictions through ``prediction_logits(logits)``: logits whose softmax is the
model's predictive distribution, which the validation / test metrics, reliability diagrams and temperature
scaling use. It is the identity for the softmax strategies (``p = softmax(z)``); a strategy whose outputs mean
something else overrides it (sigmoid heads: ``logsigmoid(z)``, see ``labelsmooth.smoothing.sigmoid``). It must
keep the argmax, so accuracy reads the same either way, and it never touches a strategy's state. The training
module calls ``on_train_epoch_end()`` after each epoch's last training batch: a no-op, except for strategies that
learn from the epoch (online label smoothing).

Every loss is computed in float32 with autocast disabled, also under ``16-mixed`` / ``bf16-mixed``: summing K
half-precision log-probabilities loses the small terms and can overflow.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from labelsmooth.errors import check_class_index_shapes
from labelsmooth.smoothing.parameters import SchedulableParameters, check_num_classes


def float32_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """``log p`` in float32 (call it with autocast disabled; see ``SmoothingStrategy.forward``)."""
    return torch.log_softmax(logits.float(), dim=-1)


def weighted_log_probs(weights: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``w_k · log p_k``, 0 where ``w_k = 0``: a class masked by a logit of -inf (``p_k = 0``) that no target puts
    weight on adds nothing, and passes no NaN to the gradient (``0 · -inf``); one that a target weighs gives -inf.

    >>> log_probs = torch.tensor([[0.0, float("-inf")]]).log_softmax(-1)
    >>> weighted_log_probs(log_probs.exp(), log_probs)  # p · log p, the entropy's terms
    tensor([[0., 0.]])
    """
    return weights * torch.where(weights == 0, 0.0, log_probs)


# torch's cross entropy skips targets equal to its ignore_index (-100 by default), so a -100 label silently left its
# row out of the mean; no class index is ignored here, and torch refuses a -100 as any index outside [0, K).
NO_IGNORED_CLASS = -(2**63)


def class_index_cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """``F.cross_entropy(logits, target, label_smoothing=ε)`` (mean) with no class index ignored."""
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing, ignore_index=NO_IGNORED_CLASS)


def in_float32(function: Callable[..., torch.Tensor], logits: torch.Tensor, *args: Any) -> torch.Tensor:
    """``function(logits.float(), *args)`` with autocast disabled (entered only when autocast is on: the context
    switch costs microseconds per call; the meta device, which shapes are computed on, has no autocast)."""
    if logits.device.type != "meta" and torch.is_autocast_enabled(logits.device.type):
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return function(logits.float(), *args)
    return function(logits.float(), *args)


class SmoothingStrategy(nn.Module, SchedulableParameters):
    """Base class of every strategy: a loss over (N, K) logits and (N,) class indices.

    Subclasses implement ``compute_loss``; ``forward`` runs it in float32 with autocast disabled. Its parameters
    are ``RealParameter`` class attributes (``SchedulableParameters``), assigned in the constructor.
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean loss of (N, K) ``logits`` (K = ``num_classes``) against (N,) integer class indices in [0, K), in
        float32: other shapes and types are refused (``labelsmooth.errors.check_class_index_shapes``), an index outside
        [0, K) by torch, -100 too (``class_index_cross_entropy``)."""
        check_class_index_shapes(logits, target, self.num_classes, type(self).__name__)
        return in_float32(self.compute_loss, logits, target.long())

    @abstractmethod
    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean loss of float32 ``logits`` (N, K) against class indices ``target`` (N,)."""

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits whose softmax is the model's predictive distribution, in float32, for evaluation.

        The identity here: a strategy trained through ``log softmax(z)`` predicts ``p = softmax(z)``. A strategy
        whose outputs are read differently (sigmoid heads) overrides it, keeping the argmax. No state is read or
        updated, so it is safe in validation and test.
        """
        return logits.float()

    def on_train_epoch_end(self) -> None:
        """Called by the training module after each epoch's last training batch (and, harmlessly, again at the start
        of the next epoch); a no-op here. A strategy that learns from the epoch (online label smoothing) overrides
        it."""

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in {"num_classes": self.num_classes, **self.hyperparameters()}.items())


class TakesMixedTargets(SmoothingStrategy):
    """Takes mixed targets: a strategy whose target is a (linear or data-dependent) function of the hard target, so
    it can smooth a MixUp / CutMix mixture of one-hot targets: mix first, then smooth, exactly once."""

    def mixed_target_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        """The loss against an unsmoothed soft target (e.g. MixUp's ``λ·onehot(a) + (1-λ)·onehot(b)``)."""
        if mixed_target.shape != logits.shape or logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"{type(self).__name__}: mixed_target has shape {tuple(mixed_target.shape)} for logits of shape "
                f"{tuple(logits.shape)}; expected both (N, {self.num_classes})"
            )
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self.compute_mixed_loss(logits.float(), mixed_target.float())

    @abstractmethod
    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        """The mean loss of float32 ``logits`` (N, K) against an unsmoothed float32 (N, K) target."""


class HasTargetDistribution(TakesMixedTargets):
    """Has a target distribution: a strategy defined by a soft target ``q`` and the loss ``-Σ_k q_k log p_k``.

    ``q = smooth(onehot(y))``; under MixUp ``q = smooth(λ·onehot(a) + (1-λ)·onehot(b))``. Rows of ``q`` sum to 1.
    """

    @abstractmethod
    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The smoothed (N, K) target of an unsmoothed (N, K) target (one-hot, multi-hot or a mixture of them)."""

    def target_distribution(
        self, target: torch.Tensor, num_classes: int | None = None, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The (N, K) target probabilities of class indices ``target``."""
        hard = F.one_hot(target.long(), num_classes or self.num_classes).float()
        return self.smooth(hard, None if logits is None else logits.float())

    def soft_target_loss(self, logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
        """Cross entropy against an already smoothed (N, K) target, computed in float32."""
        return -weighted_log_probs(soft_target.float(), float32_log_softmax(logits)).sum(dim=-1).mean()

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.soft_target_loss(logits, self.target_distribution(target, logits=logits))

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return self.soft_target_loss(logits, self.smooth(mixed_target, logits))


class UsesClassPrior(ABC):
    """Uses the class prior: the training code hands the strategy the training set's class frequencies
    (``set_class_frequencies``) before training."""

    @abstractmethod
    def set_class_frequencies(self, class_frequencies: torch.Tensor | Sequence[float]) -> None:
        """Use ``class_frequencies`` (K non-negative entries summing to 1) as the class prior."""


MixableStrategy = TakesMixedTargets
TargetDistributionStrategy = HasTargetDistribution
