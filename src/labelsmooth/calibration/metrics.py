"""Accuracy, scores and calibration errors over logits, as torchmetrics ``Metric`` objects.

Every metric here takes the raw (N, K) logits and (N,) class indices and computes its value with the functional
formulas of ``labelsmooth.calibration`` (``scores``, ``binning``, ``classwise``, ``smooth``, ``selective``).
``classification_metrics`` gives all thirteen validation / test metrics from one ``ClassificationMetrics``
object, which takes one log-softmax per batch for all of them; ``NegativeLogLikelihood``, ``BrierScore`` and
``AdaptiveCalibrationError`` are the same quantities one at a time. States are DDP-synchronised.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from labelsmooth.calibration.binning import DEFAULT_BINS, bin_sums, confidences_and_correct
from labelsmooth.calibration.classwise import classwise_bin_sums, classwise_ece_of_sums
from labelsmooth.calibration.scores import (
    brier_per_sample,
    entropy_per_sample,
    nll_per_sample,
    warn_of_probabilities,
)
from labelsmooth.calibration.selective import augrc, aurc
from labelsmooth.calibration.smooth import smooth_ece
from labelsmooth.errors import check_class_indices, whole_number

ECE_BINS = DEFAULT_BINS


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A ``cat`` state as one tensor: a list before synchronisation, a tensor after it; empty if nothing came."""
    if isinstance(state, list) and not state:
        return torch.zeros(0)
    return dim_zero_cat(state)


class PerSampleMean(Metric):
    """The mean over samples of ``per_sample(log_softmax(logits), target)``, summed in float64 and reduced
    across processes."""

    full_state_update = False
    # the states (add_state), declared for the type checker
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_sample(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        check_class_indices(logits, target, owner=type(self).__name__)
        self.total += self.per_sample(logits.float().log_softmax(dim=-1), target).double().sum()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count).float()  # NaN for no sample, as the functions give


class NegativeLogLikelihood(PerSampleMean):
    """Mean negative log-likelihood of the true class, ``-1/N Σ_i log softmax(z_i)_{y_i}``."""

    higher_is_better = False

    def per_sample(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_per_sample(log_probs, target)


class BrierScore(PerSampleMean):
    """Multiclass Brier score (Brier 1950), ``1/N Σ_i Σ_k (p_ik - [k = y_i])²``, in [0, 2], without the
    cancellation of the expanded form (``labelsmooth.calibration.scores``)."""

    higher_is_better = False

    def per_sample(self, log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return brier_per_sample(log_probs, target)


class AdaptiveCalibrationError(Metric):
    """Adaptive ECE: the ECE over ``n_bins`` equal-mass bins of the top-1 confidences, tied confidences in one
    bin whatever their order (Nguyen & O'Connor 2015; Mukhoti et al. 2020's AdaECE, the top-label form of Nixon et
    al. 2019's ACE; ``labelsmooth.calibration.binning``),
    alone. Keeps the confidences and correctness (two floats per sample; ``cat`` states, gathered across DDP
    processes)."""

    full_state_update = False
    higher_is_better = False
    # the states (add_state), declared for the type checker: ``cat`` states are lists of the batches' tensors, one
    # tensor after a synchronisation (``_cat`` takes either)
    confidence: list[torch.Tensor]
    correct: list[torch.Tensor]

    def __init__(self, n_bins: int = ECE_BINS, **kwargs) -> None:
        whole_number("n_bins", n_bins, 1, "the bins of the calibration errors")
        super().__init__(**kwargs)
        self.n_bins = n_bins
        self.add_state("confidence", default=[], dist_reduce_fx="cat")
        self.add_state("correct", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        check_class_indices(logits, target, owner=type(self).__name__)
        confidence, correct = confidences_and_correct(logits, target)
        self.confidence.append(confidence)
        self.correct.append(correct)

    def compute(self) -> torch.Tensor:
        sums = bin_sums(_cat(self.confidence), _cat(self.correct), self.n_bins, equal_mass=True)
        return torch.tensor(sums.errors()["ece"], dtype=torch.float32)


class ClassificationMetrics(Metric):
    """Accuracy, scores, calibration errors and selective-classification areas from one log-softmax per batch;
    ``compute`` returns them as ``{prefix + name: value}`` (names sorted).

    Per batch, with ``log p = log_softmax(z)`` in float32 (computed once):

    * ``acc``: ``[argmax_k z_k = y]`` (torchmetrics' micro-averaged ``MulticlassAccuracy``), counted;
    * per-sample means, summed in float64 (``labelsmooth.calibration.scores``): ``nll``, ``brier``, ``entropy``,
      and ``confidence``, the mean top-1 confidence ``c = max_k p_k``;
    * kept per sample for ``compute`` (``cat`` states): ``c_i`` in float32, its correctness ``a_i``, and ``c_i`` in
      float64 (float32 rounds ``c_i`` to exactly 1 for margins above ~17, which would tie the most confident
      samples in the ranking of the selective metrics), from which
      - ``ece``, ``mce``, ``rmsce`` over ``n_bins`` equal-width bins, a confidence of exactly 1 in the last, and
        ``ace`` over ``n_bins`` equal-mass bins, tied confidences in one bin (``labelsmooth.calibration.binning``),
      - ``smooth_ece`` (Błasiok & Nakkiran 2023, ``labelsmooth.calibration.smooth``),
      - ``aurc`` and ``augrc`` of the float64 max-softmax confidence (Geifman & El-Yaniv 2017; Traub et al. 2024;
        ``labelsmooth.calibration.selective``);
    * per class and equal-width bin the counts and sums of ``classwise_ece`` (``labelsmooth.calibration.classwise``;
      ``3 · K · n_bins`` numbers, summed across batches and processes).
    """

    full_state_update = False
    NAMES = (
        "acc", "nll", "ece", "mce", "brier", "ace", "rmsce", "confidence", "entropy",
        "classwise_ece", "smooth_ece", "aurc", "augrc",
    )  # fmt: skip
    # How a value ranks runs: the highest accuracy; the lowest of the others, which are errors and losses, except
    # the descriptive mean confidence and entropy.
    BEST_IS_HIGHEST = ("acc",)
    DESCRIPTIVE = ("confidence", "entropy")
    # the states (add_state), declared for the type checker: ``cat`` states are lists of the batches' tensors, one
    # tensor after a synchronisation (``_cat`` takes either)
    correct: torch.Tensor
    count: torch.Tensor
    sums: torch.Tensor
    confidence: list[torch.Tensor]
    confident_correct: list[torch.Tensor]
    ranking_confidence: list[torch.Tensor]
    classwise: torch.Tensor

    def __init__(self, num_classes: int, prefix: str = "", n_bins: int = ECE_BINS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = whole_number("num_classes", num_classes, 1)
        self.prefix = prefix
        self.n_bins = whole_number("n_bins", n_bins, 1, "the bins of the calibration errors")
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # Σ NLL, Σ Brier, Σ confidence, Σ entropy
        self.add_state("sums", default=torch.zeros(4, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("confidence", default=[], dist_reduce_fx="cat")
        self.add_state("confident_correct", default=[], dist_reduce_fx="cat")
        self.add_state("ranking_confidence", default=[], dist_reduce_fx="cat")
        self.add_state(
            "classwise",
            default=torch.zeros(3, self.num_classes, self.n_bins, dtype=torch.float64),
            dist_reduce_fx="sum",
        )

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        check_class_indices(logits, target, self.num_classes, type(self).__name__)
        warn_of_probabilities(logits, type(self).__name__, stacklevel=5)  # past torchmetrics' update wrapper
        logits = logits.detach().float()
        target = target.long()
        log_probs = logits.log_softmax(dim=-1)
        probs = log_probs.exp()
        confidence = probs.max(dim=-1).values
        correct = logits.argmax(dim=-1) == target  # of the logits: float32 probabilities of near-equal logits tie
        per_sample = torch.stack(
            [
                nll_per_sample(log_probs, target),
                brier_per_sample(log_probs, target),
                confidence,
                entropy_per_sample(log_probs),
            ]
        )
        self.sums += per_sample.double().sum(dim=-1)
        self.correct += correct.sum()
        self.count += target.numel()
        self.confidence.append(confidence)
        self.confident_correct.append(correct.float())
        self.ranking_confidence.append(logits.double().softmax(dim=-1).max(dim=-1).values)
        self.classwise += classwise_bin_sums(probs, target, self.n_bins)

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.double()  # no samples: NaN means, as the binned metrics give
        nll, brier, mean_confidence, entropy = (self.sums / count).tolist()
        confidence, correct = _cat(self.confidence), _cat(self.confident_correct)
        equal_width = bin_sums(confidence, correct, self.n_bins).errors()
        ranking = _cat(self.ranking_confidence).cpu().numpy()
        correct_np = correct.cpu().numpy()
        values = {
            "acc": float(self.correct / count),
            "nll": nll,
            "ece": equal_width["ece"],
            "mce": equal_width["mce"],
            "brier": brier,
            "ace": bin_sums(confidence, correct, self.n_bins, equal_mass=True).errors()["ece"],
            "rmsce": equal_width["rmsce"],
            "confidence": mean_confidence,
            "entropy": entropy,
            "classwise_ece": classwise_ece_of_sums(self.classwise),
            "smooth_ece": smooth_ece(ranking, correct_np),
            "aurc": aurc(ranking, correct_np),
            "augrc": augrc(ranking, correct_np),
        }
        device = self.sums.device
        return {
            f"{self.prefix}{name}": torch.tensor(values[name], dtype=torch.float32, device=device)
            for name in sorted(values)  # MetricCollection's order
        }


def classification_metrics(num_classes: int, prefix: str, n_bins: int = ECE_BINS) -> ClassificationMetrics:
    """All of ``ClassificationMetrics.NAMES`` over ``n_bins`` bins (15 by default), named ``<prefix><metric>``: ``acc
    nll ece mce brier ace rmsce confidence entropy classwise_ece smooth_ece aurc augrc`` (one softmax per batch)."""
    return ClassificationMetrics(num_classes, prefix=prefix, n_bins=n_bins)


class PredictionLogits(Metric):
    """The (N, K) logits and (N,) targets of an evaluation epoch, kept as they come (on their device: no host
    synchronisation per batch; ``cat`` states, so ``compute`` gathers them from every DDP process, process 0's
    first) and ``compute``d as ``(logits, target)``: the held-out set of temperature scaling. The states are not
    persistent, so they are in no checkpoint."""

    full_state_update = False
    # the states (add_state), declared for the type checker: lists of the batches' tensors, one tensor after a
    # synchronisation (``_cat`` takes either)
    logits: list[torch.Tensor]
    target: list[torch.Tensor]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())
        self.target.append(target.detach().long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        logits, target = _cat(self.logits), _cat(self.target).reshape(-1)
        return logits.reshape(target.numel(), -1).float(), target.long()
