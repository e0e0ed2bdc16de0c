"""Top-1 confidences, their bins and the binned calibration errors of (N, K) logits (torch).

The top-1 confidence ``c_i = max_k softmax(z_i)_k`` and correctness ``a_i = [argmax_k z_ik = y_i]`` (float32, as
the logged metrics read them) are grouped into bins, whose sums go to ``labelsmooth.calibration.bins``:

* equal-width bins ``[m/M, (m+1)/M)`` for ``m = 0..M-1`` and a bin ``[1, 1]`` of its own for confidences of exactly
  1 (a float32 softmax saturates there for margins above ~17): torchmetrics' binning (``_binning_bucketize``, the
  bucketing in the confidences' dtype), so ECE / MCE / RMSCE are those of ``MulticlassCalibrationError``;
* equal-mass bins (Nguyen & O'Connor 2015; Nixon et al. 2019, "Measuring calibration in deep learning"): the
  confidences sorted ascending (stable sort) and split into ``min(M, N)`` consecutive groups whose sizes differ by
  at most one (``torch.tensor_split``: the first ``N mod G`` one larger); the ECE over them is the adaptive ECE,
  which sparse high-confidence regions do not dominate. torchmetrics has no equal-mass bins.

>>> probs = torch.tensor([[0.9, 0.1], [0.81, 0.19], [0.39, 0.61], [0.55, 0.45]])
>>> confidence, correct = confidences_and_correct(probs.log(), torch.tensor([0, 1, 1, 0]))
>>> round(binned_calibration_errors(confidence, correct)["ece"], 4)  # one sample per bin: mean |a_i - c_i|
0.4375
>>> [b.count for b in binned_statistics(confidence, correct, n_bins=2, equal_mass=True)]
[2, 2]
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from labelsmooth.calibration.bins import DEFAULT_BINS, CalibrationBin, errors_from_sums


class BinSums(NamedTuple):
    """Per bin (float64, on the confidences' device): its range, size, and sums of outcomes and confidences."""

    lower: torch.Tensor
    upper: torch.Tensor
    count: torch.Tensor
    outcome_sum: torch.Tensor
    confidence_sum: torch.Tensor

    def errors(self) -> dict[str, float]:
        """``ece``, ``rmsce`` and ``mce`` of these bins (``labelsmooth.calibration.bins.errors_from_sums``)."""
        values = errors_from_sums(
            *(t.detach().cpu().numpy() for t in (self.count, self.outcome_sum, self.confidence_sum))
        )
        return {name: float(value) for name, value in values.items()}


def confidences_and_correct(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 softmax confidence ``c_i`` (float32) and correctness ``a_i`` (0./1.) of (N, K) logits."""
    probs = logits.float().softmax(dim=-1)
    confidence, prediction = probs.max(dim=-1)
    return confidence, (prediction == target).float()


def equal_width_bin_index(values: torch.Tensor, n_bins: int = DEFAULT_BINS) -> torch.Tensor:
    """The equal-width bin ``0..n_bins`` of each probability in ``values`` (any shape): ``floor(v · M)`` on
    torchmetrics' boundaries ``linspace(0, 1, M + 1)`` in ``values``' dtype, so exactly 1 falls in bin ``M``."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=values.dtype, device=values.device)
    return (torch.bucketize(values, boundaries, right=True) - 1).clamp(0, n_bins)


def bin_sums(
    confidence: torch.Tensor, outcome: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> BinSums:
    """The bins of ``confidence`` (N,) with outcomes ``outcome`` (N,) in {0, 1}, empty bins included: ``n_bins + 1``
    equal-width bins (the last is ``[1, 1]``) or ``min(n_bins, N)`` equal-mass bins (a bin's range is its smallest
    and largest confidence), as the module docstring says."""
    confidence, outcome = confidence.detach().flatten(), outcome.detach().flatten().double()
    if confidence.numel() != outcome.numel():
        raise ValueError(f"confidence has {confidence.numel()} values but outcome {outcome.numel()}")
    wide = confidence.double()
    device = confidence.device
    if equal_mass:
        n = confidence.numel()
        groups = min(n_bins, n)
        order = torch.argsort(confidence, stable=True)
        sizes = torch.full((groups,), n // max(groups, 1), dtype=torch.long, device=device)
        sizes[: n % max(groups, 1)] += 1
        index = torch.empty(n, dtype=torch.long, device=device)
        index[order] = torch.repeat_interleave(torch.arange(groups, device=device), sizes)
        starts = torch.cumsum(sizes, 0) - sizes
        sorted_confidence = wide[order]
        lower, upper = sorted_confidence[starts], sorted_confidence[starts + sizes - 1]
        n_groups = groups
    else:
        index = equal_width_bin_index(confidence, n_bins)
        lower = torch.arange(n_bins + 1, dtype=torch.float64, device=device).div(n_bins).clamp(max=1.0)
        upper = torch.arange(1, n_bins + 2, dtype=torch.float64, device=device).div(n_bins).clamp(max=1.0)
        n_groups = n_bins + 1

    def summed(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(0, index, values)

    return BinSums(lower, upper, summed(torch.ones_like(wide)), summed(outcome), summed(wide))


def binned_statistics(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> list[CalibrationBin]:
    """The non-empty bins of ``confidence`` with their accuracy and mean confidence (the reliability diagram's)."""
    sums = bin_sums(confidence, correct, n_bins, equal_mass)
    rows = zip(*(t.cpu().tolist() for t in sums), strict=True)
    return [
        CalibrationBin(lower=lo, upper=hi, count=int(n), accuracy=a / n, confidence=c / n)
        for lo, hi, n, a, c in rows
        if n
    ]


def binned_calibration_errors(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> dict[str, float]:
    """``ece``, ``rmsce`` and ``mce`` over ``n_bins`` equal-width (or, with ``equal_mass``, equal-mass) bins of the
    confidences and their correctness; NaN for no samples. Equal-mass ``ece`` is the adaptive ECE."""
    return bin_sums(confidence, correct, n_bins, equal_mass).errors()


def expected_calibration_error(
    logits: torch.Tensor, target: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> float:
    """ECE of (N, K) logits over ``n_bins`` equal-width (or, with ``equal_mass``, equal-mass) bins."""
    return binned_calibration_errors(*confidences_and_correct(logits, target), n_bins, equal_mass)["ece"]
