"""Logit penalties added to cross entropy: margin-based label smoothing (MbLS) and MaxSup.

Both are cross entropy plus ``α`` times a penalty on the logits ``z`` alone. The penalty does not depend on the
label, so under MixUp / CutMix the loss is the soft-target cross entropy ``-Σ_k q_k log p_k`` of the mixed target
``q`` plus the same penalty (mix first, then the loss once).
"""

from __future__ import annotations

import math

import torch

from labelsmooth.smoothing.base import (
    TakesMixedTargets,
    class_index_cross_entropy,
    float32_log_softmax,
    weighted_log_probs,
)
from labelsmooth.smoothing.parameters import RealParameter


class _PenalizedCrossEntropy(TakesMixedTargets):
    """``CE + α·penalty(z)``; subclasses define ``penalty``, the batch mean of a per-sample penalty."""

    alpha = RealParameter(0.0, math.inf, high_inclusive=False, unsmoothed=0.0)

    def __init__(self, num_classes: int, alpha: float) -> None:
        super().__init__(num_classes)
        self.alpha = alpha

    def penalty(self, logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_index_cross_entropy(logits, target) + self.alpha * self.penalty(logits)

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        cross_entropy = -weighted_log_probs(mixed_target, float32_log_softmax(logits)).sum(dim=-1).mean()
        return cross_entropy + self.alpha * self.penalty(logits)


class MarginLabelSmoothing(_PenalizedCrossEntropy):
    """Margin-based label smoothing, MbLS (Liu, Ben Ayed, Galdran, Dolz, CVPR 2022, "The Devil is in the Margin:
    Margin-based Label Smoothing for Network Calibration", Eq. 7).

    ``loss = CE + α · mean_{i,k} max(0, max_j z_ij - z_ik - m)``, the mean over the batch and the K classes: logit
    distances to the largest logit beyond the margin ``m`` are penalised (label smoothing and the confidence
    penalty push every distance to 0; ``m`` leaves room). The gradient flows through the max, as in the authors'
    ``LogitMarginL1``. ``m >= 0`` (the paper's 10), ``α >= 0`` (0.1); ``α = 0`` is cross entropy.
    """

    margin = RealParameter(0.0, math.inf, high_inclusive=False)

    def __init__(self, num_classes: int, margin: float = 10.0, alpha: float = 0.1) -> None:
        super().__init__(num_classes, alpha)
        self.margin = margin

    def penalty(self, logits: torch.Tensor) -> torch.Tensor:
        # max_j z_ij - z_ik - m, with the margin taken off the (N, 1) maxima: one pass over the (N, K) logits.
        return torch.relu((logits.max(dim=-1, keepdim=True).values - self.margin) - logits).mean()


class MaxSuppression(_PenalizedCrossEntropy):
    """Max suppression, MaxSup (Zhou et al. 2025, "MaxSup: Overcoming Representation Collapse in Label Smoothing").

    ``loss = CE + α · (max_k z_k - mean_k z_k)``, averaged over the batch: the label-smoothing regulariser with the
    true-class logit replaced by the largest logit, so a wrong confident prediction is penalised as much as a right
    one. The gradient flows through the max and the mean. ``α >= 0`` (0.1); ``α = 0`` is cross entropy.
    """

    def __init__(self, num_classes: int, alpha: float = 0.1) -> None:
        super().__init__(num_classes, alpha)

    def penalty(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.max(dim=-1).values - logits.mean(dim=-1)).mean()
