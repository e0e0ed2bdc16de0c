"""Plain cross entropy, Szegedy's uniform label smoothing and Mezzini's γ smoothing.

Uniform and γ smoothing both put one weight on the true class and one equal weight on every class, so
their loss is computed from two reductions of the log-probabilities, without a dense (N, K) target:

    loss = -(w_true - w_all) · log p_y  -  w_all · Σ_k log p_k

The log-softmax and both reductions run in float32, also under mixed precision, where summing K
half-precision log-probabilities loses the small terms and can overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelsmooth.smoothing.base import TargetDistributionStrategy, check_range


def two_weight_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, true_class_weight: float, every_class_weight: float
) -> torch.Tensor:
    """Mean of ``-(Σ_k q_k log p_k)`` for ``q_k = every_class_weight + [k = y]·(true_class_weight - every)``."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    true_log_prob = log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
    loss = -(true_class_weight - every_class_weight) * true_log_prob
    if every_class_weight:
        loss = loss - every_class_weight * log_probs.sum(dim=-1)
    return loss.mean()


class CrossEntropy(TargetDistributionStrategy):
    """No smoothing: cross entropy against the one-hot target, ``q = onehot(y)``."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target)

    def target_distribution(self, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        return F.one_hot(target.long(), num_classes or self.num_classes).float()


class UniformSmoothing(TargetDistributionStrategy):
    """Uniform label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture", §7).

    ``q = (1 - ε)·onehot(y) + ε·u`` with ``u = 1/K``: the true class gets ``1 - ε + ε/K``, every other
    class ``ε/K``. ``ε = 0`` is plain cross entropy; equals ``F.cross_entropy(label_smoothing=ε)``.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__(num_classes)
        check_range("epsilon", epsilon, 0.0, 1.0)
        self.epsilon = float(epsilon)

    @property
    def off_value(self) -> float:
        return self.epsilon / self.num_classes

    @property
    def on_value(self) -> float:
        return 1.0 - self.epsilon + self.off_value

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return two_weight_cross_entropy(logits, target, self.on_value, self.off_value)

    def target_distribution(self, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        k = num_classes or self.num_classes
        q = torch.full((target.shape[0], k), self.epsilon / k, device=target.device)
        return q.scatter_(1, target.long().unsqueeze(1), 1.0 - self.epsilon + self.epsilon / k)

    def hyperparameters(self) -> dict[str, float]:
        return {"epsilon": self.epsilon}


class GammaSmoothing(TargetDistributionStrategy):
    """γ label smoothing (Mezzini 2019, "Empirical study on label smoothing in neural networks").

    ``q_y = γ`` for the true class and ``q_k = (1 - γ)/(K - 1)`` for every other class, ``1/K < γ <= 1``
    (at ``γ = 1/K`` the target is uniform and carries no label; ``γ = 1`` is plain cross entropy). It is
    uniform smoothing with ``ε = K(1 - γ)/(K - 1)``.
    """

    def __init__(self, num_classes: int, gamma: float = 0.9) -> None:
        super().__init__(num_classes)
        k = self.num_classes
        check_range(
            "gamma",
            gamma,
            1.0 / k,
            1.0,
            low_inclusive=False,
            why=f"With K={k} classes γ must exceed 1/K={1.0 / k:.6g} so the true class keeps the most mass.",
        )
        self.gamma = float(gamma)

    @property
    def off_value(self) -> float:
        return (1.0 - self.gamma) / (self.num_classes - 1)

    @property
    def equivalent_epsilon(self) -> float:
        return self.num_classes * (1.0 - self.gamma) / (self.num_classes - 1)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return two_weight_cross_entropy(logits, target, self.gamma, self.off_value)

    def target_distribution(self, target: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
        k = num_classes or self.num_classes
        q = torch.full((target.shape[0], k), (1.0 - self.gamma) / (k - 1), device=target.device)
        return q.scatter_(1, target.long().unsqueeze(1), self.gamma)

    def hyperparameters(self) -> dict[str, float]:
        return {"gamma": self.gamma}
