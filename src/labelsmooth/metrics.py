"""Accuracy and calibration metrics, as torchmetrics collections over logits.

Every metric here takes the raw (N, K) logits and (N,) class indices. torchmetrics has accuracy and the
binned calibration errors; it lacks a multiclass negative log-likelihood and Brier score, so those two are
written here as small ``Metric`` subclasses with DDP-synchronised sum states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

ECE_BINS = 15


class NegativeLogLikelihood(Metric):
    """Mean negative log-likelihood of the true class, ``-1/N Σ_i log softmax(z_i)_{y_i}``."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.total += F.cross_entropy(logits.float(), target, reduction="sum").double()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class BrierScore(Metric):
    """Multiclass Brier score (Brier 1950), ``1/N Σ_i Σ_k (p_ik - [k = y_i])²``, in [0, 2]."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        probs = logits.float().softmax(dim=-1)
        true_prob = probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        # Σ_k (p_k - onehot_k)² = Σ_k p_k² - 2 p_y + 1, without a dense one-hot.
        per_sample = probs.square().sum(dim=-1) - 2.0 * true_prob + 1.0
        self.total += per_sample.double().sum()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class SoftmaxCalibrationError(MulticlassCalibrationError):
    """torchmetrics' binned calibration error, fed softmax probabilities computed from logits in float32.

    (torchmetrics itself only applies a softmax when some input lies outside [0, 1], so logits that happen
    to lie inside [0, 1] would be taken for probabilities.)
    """

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().update(logits.float().softmax(dim=-1), target)


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Top-1 accuracy, NLL, ECE and MCE (15 equal-width bins) and Brier score, named ``<prefix><metric>``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
            "nll": NegativeLogLikelihood(),
            "ece": SoftmaxCalibrationError(num_classes=num_classes, n_bins=ECE_BINS, norm="l1"),
            "mce": SoftmaxCalibrationError(num_classes=num_classes, n_bins=ECE_BINS, norm="max"),
            "brier": BrierScore(),
        },
        prefix=prefix,
        compute_groups=False,
    )
