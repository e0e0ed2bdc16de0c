"""Accuracy and calibration metrics over logits, as torchmetrics ``Metric`` objects.

Every metric here takes the raw (N, K) logits and (N,) class indices. ``classification_metrics`` gives all nine
validation / test metrics from one ``ClassificationMetrics`` object, which takes one log-softmax per batch for all
of them; ``NegativeLogLikelihood``, ``BrierScore`` and ``AdaptiveCalibrationError`` are the same quantities one at a
time (torchmetrics lacks a multiclass NLL, the Brier score and an equal-mass ECE). States are DDP-synchronised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from labelsmooth.calibration import confidences_and_correct

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


class AdaptiveCalibrationError(Metric):
    """Adaptive ECE: ECE over ``n_bins`` equal-mass bins (Nguyen & O'Connor 2015; Nixon et al. 2019), alone.

    ``Σ_m |B_m|/N · |acc(B_m) - conf(B_m)|`` where ``B_1..B_M`` split the sorted top-1 confidences into
    groups of equal size (``equal_mass_calibration_error``). torchmetrics only has equal-width bins, so this keeps
    the confidences and correctness (two floats per sample; ``cat`` states, gathered across DDP processes).
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
        return equal_mass_calibration_error(dim_zero_cat(self.confidence), dim_zero_cat(self.correct), self.n_bins)


class ClassificationMetrics(Metric):
    """Top-1 accuracy, NLL, ECE, MCE and RMS calibration error, adaptive ECE, Brier score, mean confidence and
    mean predictive entropy, from one log-softmax per batch; ``compute`` returns them as ``{prefix + name: value}``.

    Per batch, with ``log p = log_softmax(z)`` in float32 (computed once):

    * accuracy ``[argmax_k z_k = y]`` (as torchmetrics' micro-averaged ``MulticlassAccuracy``), counted;
    * per-sample means, summed in float64: NLL ``-log p_y``; Brier score ``Σ_k p_k² - 2 p_y + 1`` (Brier 1950,
      in [0, 2]; no dense one-hot); top-1 confidence ``c = max_k p_k``; entropy ``-Σ_k p_k log p_k`` (nats);
    * the top-1 confidence ``c_i`` and its correctness ``a_i`` kept per sample (two floats), for the binned errors
      at ``compute``, each ``Σ_b |B_b|/N · g_b`` style sum over bins of the gap ``g_b = |mean_b a - mean_b c|``:

      - ECE = ``Σ_b |B_b|/N g_b``, MCE = ``max_b g_b``, RMS = ``sqrt(Σ_b |B_b|/N g_b²)`` over ``n_bins``
        equal-width bins (Naeini et al. 2015; Guo et al. 2017), by torchmetrics (``binary_calibration_error``
        on the pairs ``(c_i, a_i)``: the values and binning of ``MulticlassCalibrationError``);
      - adaptive ECE (Nguyen & O'Connor 2015; Nixon et al. 2019): the ECE over ``min(M, N)`` equal-mass bins,
        the confidences sorted ascending (stable) and split by ``torch.tensor_split``, as
        ``labelsmooth.calibration.binned_statistics(..., equal_mass=True)``.

    Before, each of the nine metrics was its own torchmetrics object with its own softmax, argument checks and
    states (four of them kept per-sample confidences); the values are unchanged up to float rounding.
    """

    full_state_update = False
    NAMES = ("acc", "nll", "ece", "mce", "brier", "ace", "rmsce", "confidence", "entropy")

    def __init__(self, num_classes: int, prefix: str = "", n_bins: int = ECE_BINS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.prefix = prefix
        self.n_bins = int(n_bins)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # Σ NLL, Σ Brier, Σ confidence, Σ entropy
        self.add_state("sums", default=torch.zeros(4, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("confidence", default=[], dist_reduce_fx="cat")
        self.add_state("confident_correct", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        logits = logits.detach().float()
        target = target.long()
        log_probs = logits.log_softmax(dim=-1)
        probs = log_probs.exp()
        confidence, predicted = probs.max(dim=-1)
        true_log_prob = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        per_sample = torch.stack(
            [
                -true_log_prob,
                probs.square().sum(dim=-1) - 2.0 * true_log_prob.exp() + 1.0,
                confidence,
                -(probs * log_probs).sum(dim=-1),
            ]
        )
        self.sums += per_sample.double().sum(dim=-1)
        self.correct += (logits.argmax(dim=-1) == target).sum()
        self.count += target.numel()
        self.confidence.append(confidence)
        self.confident_correct.append((predicted == target).float())

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count.clamp(min=1)
        nll, brier, mean_confidence, entropy = (self.sums / count).float()
        confidence, correct = _cat(self.confidence), _cat(self.confident_correct)
        ece, mce, rmsce = equal_width_calibration_errors(confidence, correct, self.n_bins)
        values = {
            "acc": (self.correct / count).float(),
            "nll": nll,
            "ece": ece,
            "mce": mce,
            "brier": brier,
            "ace": equal_mass_calibration_error(confidence, correct, self.n_bins),
            "rmsce": rmsce,
            "confidence": mean_confidence,
            "entropy": entropy,
        }
        return {f"{self.prefix}{name}": values[name] for name in sorted(values)}  # MetricCollection's order


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A ``cat`` state as one tensor: a list before synchronisation, a tensor after it; empty if nothing came."""
    if isinstance(state, list) and not state:
        return torch.zeros(0)
    return dim_zero_cat(state)


def _binned_gaps(gap: torch.Tensor, index: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per bin: the number of samples and ``|Σ_i (a_i - c_i)|`` over its samples (float64)."""
    counts = torch.bincount(index, minlength=n_bins).to(torch.float64)
    summed = torch.zeros(n_bins, dtype=torch.float64, device=gap.device).index_add_(0, index, gap)
    return counts, summed.abs()


def equal_width_calibration_errors(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = ECE_BINS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ECE, MCE and RMS calibration error over ``n_bins`` equal-width bins of the top-1 confidences ``c_i`` and
    their correctness ``a_i``: torchmetrics' ``binary_calibration_error`` on the pairs ``(c_i, a_i)``, which is
    what ``MulticlassCalibrationError`` computes after taking the top-1 confidence (same binning). NaN for no
    samples."""
    from torchmetrics.functional.classification import binary_calibration_error

    if confidence.numel() == 0:
        nan = torch.tensor(float("nan"))
        return nan, nan, nan
    confidence, correct = confidence.float(), correct.long()
    ece, mce, rmsce = (
        binary_calibration_error(confidence, correct, n_bins=n_bins, norm=norm, validate_args=False)
        for norm in ("l1", "max", "l2")
    )
    return ece, mce, rmsce


def equal_mass_calibration_error(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = ECE_BINS
) -> torch.Tensor:
    """Adaptive ECE: ``(1/N) Σ_g |Σ_{i∈g} (a_i - c_i)|`` over ``min(n_bins, N)`` equal-mass groups of the confidences
    sorted ascending (stable sort; ``torch.tensor_split`` sizes: the first ``N mod G`` groups one larger). NaN for
    no samples."""
    n = confidence.numel()
    if n == 0:
        return torch.tensor(float("nan"))
    groups = min(n_bins, n)
    order = torch.argsort(confidence, stable=True)
    sizes = torch.full((groups,), n // groups, dtype=torch.long, device=confidence.device)
    sizes[: n % groups] += 1
    index = torch.repeat_interleave(torch.arange(groups, device=confidence.device), sizes)
    _, gaps = _binned_gaps((correct.double() - confidence.double())[order], index, groups)
    return (gaps.sum() / n).float()


def classification_metrics(num_classes: int, prefix: str) -> ClassificationMetrics:
    """Top-1 accuracy, NLL, ECE, MCE and RMS calibration error (15 equal-width bins), adaptive ECE (15
    equal-mass bins), Brier score, mean confidence and mean predictive entropy, named ``<prefix><metric>``:
    ``acc nll ece mce brier ace rmsce confidence entropy`` (``ClassificationMetrics``: one softmax per batch)."""
    return ClassificationMetrics(num_classes, prefix=prefix, n_bins=ECE_BINS)
