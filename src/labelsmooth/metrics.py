"""Accuracy and calibration metrics, as torchmetrics collections over logits.

Every metric here takes the raw (N, K) logits and (N,) class indices. torchmetrics has accuracy and the
binned calibration errors over equal-width bins (ECE, MCE, RMS); it lacks a multiclass negative
log-likelihood, Brier score, adaptive (equal-mass) ECE, mean confidence and mean predictive entropy, so those
are written here as small ``Metric`` subclasses with DDP-synchronised states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError
from torchmetrics.utilities import dim_zero_cat

from labelsmooth.calibration import binned_statistics, calibration_errors, confidences_and_correct

ECE_BINS = 15


class PerSampleMean(Metric):
    """The mean over samples of ``per_sample(logits, target)``, summed in float64 and reduced across processes."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.total += self.per_sample(logits.float(), target).double().sum()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class NegativeLogLikelihood(PerSampleMean):
    """Mean negative log-likelihood of the true class, ``-1/N Σ_i log softmax(z_i)_{y_i}``."""

    higher_is_better = False

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, reduction="none")


class BrierScore(PerSampleMean):
    """Multiclass Brier score (Brier 1950), ``1/N Σ_i Σ_k (p_ik - [k = y_i])²``, in [0, 2]."""

    higher_is_better = False

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=-1)
        true_prob = probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)
        # Σ_k (p_k - onehot_k)² = Σ_k p_k² - 2 p_y + 1, without a dense one-hot.
        return probs.square().sum(dim=-1) - 2.0 * true_prob + 1.0


class SoftmaxCalibrationError(MulticlassCalibrationError):
    """torchmetrics' binned calibration error, fed softmax probabilities computed from logits in float32.

    (torchmetrics itself only applies a softmax when some input lies outside [0, 1], so logits that happen
    to lie inside [0, 1] would be taken for probabilities.)
    """

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        super().update(logits.float().softmax(dim=-1), target)


class AdaptiveCalibrationError(Metric):
    """Adaptive ECE: ECE over ``n_bins`` equal-mass bins (Nguyen & O'Connor 2015; Nixon et al. 2019).

    ``Σ_m |B_m|/N · |acc(B_m) - conf(B_m)|`` where ``B_1..B_M`` split the sorted top-1 confidences into
    groups of equal size. torchmetrics only has equal-width bins, so this keeps the confidences and
    correctness (two floats per sample; ``cat`` states, gathered across DDP processes) and bins them in
    ``labelsmooth.calibration.binned_statistics``.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, n_bins: int = ECE_BINS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.add_state("confidence", default=[], dist_reduce_fx="cat")
        self.add_state("correct", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        confidence, correct = confidences_and_correct(logits, target)
        self.confidence.append(confidence)
        self.correct.append(correct)

    def compute(self) -> torch.Tensor:
        bins = binned_statistics(dim_zero_cat(self.confidence), dim_zero_cat(self.correct), self.n_bins, True)
        return torch.tensor(calibration_errors(bins)["ece"], dtype=torch.float32)


class MeanConfidence(PerSampleMean):
    """Mean top-1 confidence ``1/N Σ_i max_k softmax(z_i)_k`` (compare with accuracy: over-/under-confidence)."""

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1).max(dim=-1).values


class MeanPredictiveEntropy(PerSampleMean):
    """Mean entropy of the predictive distribution, ``-1/N Σ_i Σ_k p_ik log p_ik`` in nats (0 … log K)."""

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_probs = logits.log_softmax(dim=-1)
        return -(log_probs.exp() * log_probs).sum(dim=-1)


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Top-1 accuracy, NLL, ECE, MCE and RMS calibration error (15 equal-width bins), adaptive ECE (15
    equal-mass bins), Brier score, mean confidence and mean predictive entropy, named ``<prefix><metric>``:
    ``acc nll ece mce brier ace rmsce confidence entropy``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro"),
            "nll": NegativeLogLikelihood(),
            "ece": SoftmaxCalibrationError(num_classes=num_classes, n_bins=ECE_BINS, norm="l1"),
            "mce": SoftmaxCalibrationError(num_classes=num_classes, n_bins=ECE_BINS, norm="max"),
            "brier": BrierScore(),
            "ace": AdaptiveCalibrationError(n_bins=ECE_BINS),
            "rmsce": SoftmaxCalibrationError(num_classes=num_classes, n_bins=ECE_BINS, norm="l2"),
            "confidence": MeanConfidence(),
            "entropy": MeanPredictiveEntropy(),
        },
        prefix=prefix,
        compute_groups=False,
    )
