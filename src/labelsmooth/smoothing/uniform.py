"""Fixed-target smoothing: plain cross entropy, Szegedy's uniform and prior smoothing, Mezzini's γ smoothing.

Each mixes the hard target with a fixed distribution ``u``: ``q = (1 - ε)·onehot(y) + ε·u``. The loss is
computed from reductions of the log-probabilities, without a dense (N, K) target:

    loss = -(1 - ε)·log p_y  -  ε·Σ_k u_k log p_k

For uniform ``u`` (and γ smoothing, which is uniform smoothing with ``ε = K(1-γ)/(K-1)``) that is exactly
torch's ``F.cross_entropy(label_smoothing=ε)``, used as is (in float32). Under MixUp the hard target is a
mixture ``m`` and ``-(1 - ε)·Σ_k m_k log p_k`` replaces the first term: mix first, then smooth, exactly once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing.base import (
    HasTargetDistribution,
    UsesClassPrior,
    class_index_cross_entropy,
    float32_log_softmax,
    weighted_log_probs,
)
from labelsmooth.smoothing.parameters import OfClassCount, RealParameter


def mixed_two_weight_cross_entropy(
    logits: torch.Tensor, mixed_target: torch.Tensor, keep: float, every_class_weight: float
) -> torch.Tensor:
    """Mean of ``-Σ_k (keep·m_k + every_class_weight) log p_k`` for an unsmoothed soft target ``m``."""
    log_probs = float32_log_softmax(logits)
    loss = -keep * weighted_log_probs(mixed_target, log_probs).sum(dim=-1)
    if every_class_weight:
        loss = loss - every_class_weight * log_probs.sum(dim=-1)
    return loss.mean()


class CrossEntropy(HasTargetDistribution):
    """No smoothing: cross entropy against the one-hot target, ``q = onehot(y)``."""

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_index_cross_entropy(logits, target)

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return hard_target.float()

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return mixed_two_weight_cross_entropy(logits, mixed_target, 1.0, 0.0)


class UniformSmoothing(HasTargetDistribution):
    """Uniform label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", §7).

    ``q = (1 - ε)·onehot(y) + ε·u`` with ``u = 1/K``: the true class gets ``1 - ε + ε/K``, every other
    class ``ε/K``. ``ε = 0`` is plain cross entropy; equals ``F.cross_entropy(label_smoothing=ε)``. fastai's
    Imagenette example (Howard & Gugger, ch. 7: 10 classes, ε = 0.1, the target of class 3):

    >>> q = UniformSmoothing(10, epsilon=0.1).target_distribution(torch.tensor([3]))
    >>> tuple(round(p, 6) for p in q[0].tolist())
    (0.01, 0.01, 0.01, 0.91, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01)
    """

    epsilon = RealParameter(
        0.0, 1.0, high_inclusive=False, unsmoothed=0.0, why="At ε = 1 the target is the same for every label."
    )

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__(num_classes)
        self.epsilon = epsilon

    @property
    def off_value(self) -> float:
        return self.epsilon / self.num_classes

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # torch's fused label smoothing: log-softmax, then the true-class and the summed log-probabilities.
        return class_index_cross_entropy(logits, target, self.epsilon)

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return mixed_two_weight_cross_entropy(logits, mixed_target, 1.0 - self.epsilon, self.off_value)

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return (1.0 - self.epsilon) * hard_target.float() + self.epsilon / hard_target.shape[-1]


def one_over_k(num_classes: int) -> float:
    """``1/K``, the γ of the uniform target."""
    return 1.0 / num_classes


class GammaSmoothing(HasTargetDistribution):
    """γ label smoothing (Mezzini 2018, "Empirical study on label smoothing in neural networks").

    ``q_y = γ`` for the true class and ``q_k = (1 - γ)/(K - 1)`` for every other class, ``1/K < γ <= 1``
    (at ``γ = 1/K`` the target is uniform and carries no label; ``γ = 1`` is plain cross entropy). It is
    uniform smoothing with ``ε = K(1 - γ)/(K - 1)``.
    """

    gamma = RealParameter(
        OfClassCount(one_over_k, "1/K"),
        1.0,
        low_inclusive=False,
        why="With K={num_classes} classes γ must exceed 1/K={low:.6g} so the true class keeps the most mass.",
        unsmoothed=1.0,
    )

    def __init__(self, num_classes: int, gamma: float = 0.9) -> None:
        super().__init__(num_classes)
        self.gamma = gamma

    @property
    def off_value(self) -> float:
        return (1.0 - self.gamma) / (self.num_classes - 1)

    @property
    def equivalent_epsilon(self) -> float:
        return self.num_classes * (1.0 - self.gamma) / (self.num_classes - 1)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_index_cross_entropy(logits, target, self.equivalent_epsilon)

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return mixed_two_weight_cross_entropy(logits, mixed_target, self.gamma - self.off_value, self.off_value)

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return (self.gamma - self.off_value) * hard_target.float() + self.off_value


def check_distribution(name: str, values: Sequence[float] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """A validated probability vector: ``num_classes`` finite non-negative entries that sum to 1 (±1e-4)."""
    try:
        vector = torch.as_tensor(values, dtype=torch.float64).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigurationError(f"smoothing.{name}={values!r} must be a list of {num_classes} numbers.") from None
    if vector.numel() != num_classes:
        raise ConfigurationError(
            f"smoothing.{name} has {vector.numel()} entries; it needs one per class (K={num_classes})."
        )
    if not torch.isfinite(vector).all() or (vector < 0).any():
        raise ConfigurationError(f"smoothing.{name}={vector.tolist()} must have finite entries in [0, 1].")
    total = float(vector.sum())
    if abs(total - 1.0) > 1e-4:
        raise ConfigurationError(f"smoothing.{name} sums to {total:.6g}; a distribution must sum to 1 (within 1e-4).")
    return (vector / vector.sum()).float()


class PriorSmoothing(HasTargetDistribution, UsesClassPrior):
    """Label smoothing towards a fixed prior (Szegedy et al. 2016, §7, the general form).

    ``q = (1 - ε)·onehot(y) + ε·u`` with ``u`` a fixed distribution over the K classes: by default the training
    set's class frequencies (the training code hands them over through ``set_class_frequencies``), or the
    given ``prior`` vector (K non-negative entries summing to 1). With a balanced training set it is uniform
    smoothing. ``u`` is a buffer, so checkpoints carry it.
    """

    epsilon = RealParameter(
        0.0, 1.0, high_inclusive=False, unsmoothed=0.0, why="At ε = 1 the target is the same for every label."
    )
    # buffers (register_buffer), declared for the type checker
    prior: torch.Tensor
    prior_is_set: torch.Tensor

    def __init__(
        self, num_classes: int, epsilon: float = 0.1, prior: Sequence[float] | torch.Tensor | None = None
    ) -> None:
        super().__init__(num_classes)
        self.epsilon = epsilon
        self.prior_given = prior is not None
        self._warned = False
        given = check_distribution("prior", prior, self.num_classes) if prior is not None else None
        self.register_buffer("prior", given if given is not None else torch.full((self.num_classes,), 1 / num_classes))
        # Whether ``prior`` holds a given vector or the class frequencies (a buffer, so a checkpoint restores it).
        self.register_buffer("prior_is_set", torch.tensor(self.prior_given))

    def set_class_frequencies(self, class_frequencies: torch.Tensor | Sequence[float]) -> None:
        """Use the training set's class frequencies as ``u`` (unless a ``prior`` vector was given)."""
        if self.prior_given:
            return
        frequencies = check_distribution("prior (class frequencies)", class_frequencies, self.num_classes)
        self.prior.copy_(frequencies.to(self.prior.device))
        self.prior_is_set.fill_(True)

    def _prior(self) -> torch.Tensor:
        if not self._warned:  # checked once: reading a device flag every step would synchronize
            self._warned = True
            if not bool(self.prior_is_set):
                warnings.warn(
                    "PriorSmoothing has neither a prior vector nor the class frequencies (set_class_frequencies was "
                    "not called); it smooths towards the uniform distribution.",
                    stacklevel=3,
                )
        return self.prior.float()

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = float32_log_softmax(logits)
        true_log_prob = log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        return (-(1.0 - self.epsilon) * true_log_prob - self.epsilon * (log_probs @ self._prior())).mean()

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        log_probs = float32_log_softmax(logits)
        mixed = weighted_log_probs(mixed_target, log_probs).sum(dim=-1)
        return (-(1.0 - self.epsilon) * mixed - self.epsilon * (log_probs @ self._prior())).mean()

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        if hard_target.shape[-1] != self.num_classes:
            raise ValueError(f"the prior has K={self.num_classes} entries, the target {hard_target.shape[-1]}")
        return (1.0 - self.epsilon) * hard_target.float() + self.epsilon * self._prior().to(hard_target.device)
