"""Confidence regularizers: cross entropy plus a penalty on the predicted distribution ``p`` itself.

They define no target distribution of their own, so they do not compose with MixUp / CutMix (use the
equivalent ``uniform`` strategy for ``kl_uniform``).
"""

from __future__ import annotations

import math

import torch

from labelsmooth.smoothing.base import SmoothingStrategy, float32_log_softmax, weighted_log_probs
from labelsmooth.smoothing.parameters import RealParameter


class _BetaRegularizer(SmoothingStrategy):
    """Cross entropy plus a regularizer weighted by a finite ``β >= 0`` (``β = 0`` is cross entropy; ``β = inf``
    would make the loss infinite and is refused)."""

    beta = RealParameter(0.0, math.inf, high_inclusive=False, unsmoothed=0.0)

    def __init__(self, num_classes: int, beta: float = 0.1) -> None:
        super().__init__(num_classes)
        self.beta = beta


class KLUniformRegularizer(_BetaRegularizer):
    """Cross entropy plus ``β·KL(u‖p)`` with ``u`` uniform (the form of label smoothing discussed by Pereyra et
    al. 2017, "Regularizing Neural Networks by Penalizing Confident Output Distributions", §3.2).

    ``loss = -log p_y + β·Σ_k (1/K)·(log(1/K) - log p_k) = -log p_y - (β/K)·Σ_k log p_k - β·log K``.

    It equals ``(1 + β)`` times uniform smoothing with ``ε = β/(1 + β)`` minus the constant ``β·log K``: the same
    gradients up to the factor ``1 + β``, so the same optimum. ``β >= 0``; ``β = 0`` is cross entropy.
    """

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = float32_log_softmax(logits)
        k = log_probs.shape[-1]
        true_log_prob = log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        kl_uniform_p = -math.log(k) - log_probs.mean(dim=-1)
        return (-true_log_prob + self.beta * kl_uniform_p).mean()

    @property
    def equivalent_epsilon(self) -> float:
        return self.beta / (1.0 + self.beta)


class ConfidencePenalty(_BetaRegularizer):
    """The confidence penalty (Pereyra et al. 2017, "Regularizing Neural Networks by Penalizing Confident Output
    Distributions", §3): cross entropy minus ``β`` times the entropy of the prediction,

    ``loss = -log p_y - β·H(p)``, ``H(p) = -Σ_k p_k log p_k``.

    Up to a constant it is ``CE + β·KL(p‖u)``, the reverse direction of label smoothing's ``KL(u‖p)``. ``β >= 0``;
    the gradient flows through the entropy term (``p`` is not detached).
    """

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = float32_log_softmax(logits)
        true_log_prob = log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        entropy = -weighted_log_probs(log_probs.exp(), log_probs).sum(dim=-1)
        return (-true_log_prob - self.beta * entropy).mean()
