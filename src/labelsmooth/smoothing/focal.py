"""Focal loss (Lin et al. 2017) and its calibration variant with a sample-dependent γ (Mukhoti et al. 2020).

``loss = -(1 - p_y)^γ · log p_y``, ``p = softmax(z)``, averaged over the batch: the factor ``(1 - p_y)^γ`` down-weights
the samples the network already gets right, which Mukhoti et al. show keeps the predictions from growing
over-confident. ``γ = 0`` is cross entropy.

Under MixUp / CutMix the target is a mixture ``q`` of one-hot targets and the loss is the focal cross entropy
``-Σ_k q_k (1 - p_k)^γ log p_k`` (mix first, then the loss once), which is the formula above for a one-hot ``q``.

torchvision's ``sigmoid_focal_loss`` is the one-vs-rest (sigmoid) form of detection heads; the softmax form here
is the one the calibration papers train classifiers with, so it is written out.
"""

from __future__ import annotations

import math

import torch

from labelsmooth.smoothing.base import TakesMixedTargets, float32_log_softmax, weighted_log_probs
from labelsmooth.smoothing.parameters import RealParameter

# (1 - p)^γ for 0 < γ < 1 has an infinite derivative at p = 1; where p rounds to 1 in float32 the factor is taken at
# the smallest positive normal float instead of 0, which keeps the gradient finite and changes the loss by < 1e-38.
_SMALLEST_MISS = torch.finfo(torch.float32).tiny


def focal_terms(log_probs: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """``-(1 - p)^γ · log p`` elementwise for float32 ``log p``; ``γ`` a number or a tensor broadcast to it."""
    miss = (-torch.expm1(log_probs)).clamp_min(_SMALLEST_MISS)  # 1 - p, accurate also where p is close to 1
    return -miss.pow(gamma) * log_probs


def weighted_focal_terms(weights: torch.Tensor, log_probs: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
    """``-w_k (1 - p_k)^γ log p_k``, 0 where ``w_k = 0`` (a class masked by a logit of -inf that the mixed target
    puts no weight on adds nothing, as in ``weighted_log_probs``)."""
    return -weighted_log_probs(weights, log_probs) * (-torch.expm1(log_probs)).clamp_min(_SMALLEST_MISS).pow(gamma)


class FocalLoss(TakesMixedTargets):
    """Focal loss (Lin, Goyal, Girshick, He, Dollár, ICCV 2017, "Focal Loss for Dense Object Detection", Eq. 4,
    without the class weight α_t), as a calibration method for classifiers (Mukhoti, Kulharia, Sanyal, Golodetz,
    Torr, Dokania, NeurIPS 2020, "Calibrating Deep Neural Networks using Focal Loss").

    ``loss = -(1 - p_y)^γ · log p_y`` with ``γ >= 0`` (finite; Mukhoti et al. use ``γ = 3``); ``γ = 0`` is cross
    entropy. With a mixed target ``q``: ``-Σ_k q_k (1 - p_k)^γ log p_k``.
    """

    gamma = RealParameter(0.0, math.inf, high_inclusive=False, unsmoothed=0.0)

    def __init__(self, num_classes: int, gamma: float = 3.0) -> None:
        super().__init__(num_classes)
        self.gamma = gamma

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        true_log_prob = float32_log_softmax(logits).gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        return focal_terms(true_log_prob, self.gamma).mean()

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return weighted_focal_terms(mixed_target, float32_log_softmax(logits), self.gamma).sum(dim=-1).mean()


class AdaptiveFocalLoss(TakesMixedTargets):
    """Sample-dependent focal loss, FLSD-53 (Mukhoti et al., NeurIPS 2020, "Calibrating Deep Neural Networks using
    Focal Loss", §5): the focal loss ``-(1 - p_y)^γ_i · log p_y`` with

        ``γ_i = gamma_low_confidence`` where ``p_y < threshold``, else ``gamma``

    (the paper's γ = 5 for ``p_y ∈ [0, 0.2)`` and γ = 3 for ``p_y ∈ [0.2, 1]``). γ_i is chosen from ``p_y`` without
    gradient, as in the authors' code. Both γ ``>= 0``, ``threshold`` in [0, 1]; both γ = 0 is cross entropy. The
    authors' ``FocalLossAdaptive`` fixes γ = 3 for ``p_y ∈ [0.2, 0.5)`` and applies its ``gamma`` from 0.5 on: the
    same at the defaults, not for another ``gamma``.

    With a mixed target ``q`` (MixUp / CutMix) each class term takes its γ from its own probability,
    ``-Σ_k q_k (1 - p_k)^γ(p_k) log p_k``, which is the formula above for a one-hot ``q`` (a choice made here:
    the paper trains without mixing).
    """

    gamma_low_confidence = RealParameter(0.0, math.inf, high_inclusive=False, unsmoothed=0.0)
    gamma = RealParameter(0.0, math.inf, high_inclusive=False, unsmoothed=0.0)
    threshold = RealParameter(0.0, 1.0)

    def __init__(
        self, num_classes: int, gamma_low_confidence: float = 5.0, gamma: float = 3.0, threshold: float = 0.2
    ) -> None:
        super().__init__(num_classes)
        self.gamma_low_confidence = gamma_low_confidence
        self.gamma = gamma
        self.threshold = threshold

    def sample_gamma(self, log_probs: torch.Tensor) -> torch.Tensor:
        """γ of each entry of ``log p``: ``gamma_low_confidence`` where ``p < threshold``, else ``gamma``."""
        with torch.no_grad():
            low = log_probs.exp() < self.threshold
            return torch.where(low, self.gamma_low_confidence, self.gamma).to(log_probs.dtype)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        true_log_prob = float32_log_softmax(logits).gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        return focal_terms(true_log_prob, self.sample_gamma(true_log_prob)).mean()

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        log_probs = float32_log_softmax(logits)
        return weighted_focal_terms(mixed_target, log_probs, self.sample_gamma(log_probs)).sum(dim=-1).mean()
