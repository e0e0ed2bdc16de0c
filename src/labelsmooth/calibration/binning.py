"""Top-1 confidences, their bins and the binned calibration errors of (N, K) logits (torch).

The top-1 confidence ``c_i = max_k softmax(z_i)_k`` and correctness ``a_i = [argmax_k z_ik = y_i]`` (float32, as
the logged metrics read them) are grouped into bins, whose sums go to ``labelsmooth.calibration.bins``:

* equal-width bins: ``M`` bins ``[m/M, (m+1)/M)`` for ``m = 0..M-2`` and the last one closed, ``[(M-1)/M, 1]``;
  a confidence ``c`` is in bin ``min(⌊c·M⌋, M - 1)``, computed here in float64 (exact for float32 confidences:
  the edges are the exact ``m/M``). These are the M bins that partition [0, 1] in the definition of the ECE
  (Naeini et al. 2015, "Obtaining well calibrated probabilities using Bayesian binning"; Guo et al. 2017, "On
  calibration of modern neural networks": ``I_m = ((m-1)/M, m/M]``, so 1 is in the last) and ``np.histogram``'s
  bins (netcal's binning).

  *The bin of a confidence of exactly 1.* torchmetrics' ``_binning_bucketize`` gives it an ``(M+1)``-th bin
  ``[1, 1]`` of its own (Lightning-AI/torchmetrics#3510 reports it as a bug), which this module copied until now.
  It goes in the last bin here, because (i) the ECE, MCE and RMSCE are defined over M bins covering [0, 1], and a
  hidden extra bin makes "15 bins" 16; (ii) a float32 softmax rounds to exactly 1 for margins above ~17, so the
  extra bin separates samples by a rounding, not by their confidence: 0.99999994 and 1.0 would fall in
  different bins, and the MCE could be that of a handful of saturated samples; (iii) the edges and the bin index
  are computed here, so the values do not depend on what torchmetrics does next. (Against the extra bin, the ECE
  changes only where the saturated samples' gap and the rest of the last bin's have opposite signs; the MCE and
  RMSCE change in general.) The interior bins are closed on
  the left, as torchmetrics' and ``np.histogram``'s are, so ``ece``, ``mce`` and ``rmsce`` equal torchmetrics'
  ``MulticlassCalibrationError`` whenever no confidence is exactly 1 (and none is within a float32 rounding of
  an interior edge, where torchmetrics compares with float32 edges); Guo et al.'s right-closed interior bins
  would differ from both only for a confidence exactly on an edge ``m/M``.
* equal-mass bins (Nguyen & O'Connor 2015, "Posterior calibration and exploratory analysis for natural language
  processing models"; the top-label AdaECE of Mukhoti et al. 2020; not Nixon et al. 2019's ACE, which averages
  equal-mass bins of every class's probability, unweighted): with ``v_0 ≤ … ≤ v_{N-1}``
  the sorted confidences, ``G = min(M, N)`` and the nominal group sizes ``⌊N/G⌋`` (the first ``N mod G`` one
  larger, as ``torch.tensor_split``), group ``g`` starting at rank ``s_g``, the edges are ``e_g = v_{s_g}`` and
  bin ``g`` is ``[e_g, e_{g+1})`` (the last unbounded above): a confidence's bin is the number of edges
  ``e_1..e_{G-1}`` at or below it. So the membership depends on the confidence values only, never on the order
  the samples come in: a group of tied confidences that straddles a nominal edge goes whole into the upper bin
  (the one where its most confident rank falls), and the bins keep their nominal sizes whenever no tie
  straddles an edge. The ECE over them is the adaptive ECE, which sparse high-confidence regions do not
  dominate. torchmetrics has no equal-mass bins. torch-uncertainty's ``AdaptiveCalibrationError``, like this
  module before, splits the sorted confidences by rank (``tensor_split``), which puts tied samples in different
  bins by their input order (here it gave 0.1863 for one set of samples and 0.1816 for it reversed); it agrees
  with the value here when no tie straddles an edge.

Examples:
    >>> probs = torch.tensor([[0.9, 0.1], [0.81, 0.19], [0.39, 0.61], [0.55, 0.45]])
    >>> confidence, correct = confidences_and_correct(probs.log(), torch.tensor([0, 1, 1, 0]))
    >>> round(binned_calibration_errors(confidence, correct)["ece"], 4)  # one sample per bin: mean |a_i - c_i|
    0.4375
    >>> [b.count for b in binned_statistics(confidence, correct, n_bins=2, equal_mass=True)]
    [2, 2]
    >>> tied = torch.tensor([0.6, 0.7, 0.7, 0.9])  # nominal groups {0.6, 0.7} and {0.7, 0.9}: the tie goes up
    >>> [b.count for b in binned_statistics(tied, torch.ones(4), n_bins=2, equal_mass=True)]
    [1, 3]
    >>> [(b.lower, b.upper) for b in binned_statistics(torch.tensor([0.95, 1.0]), torch.ones(2), n_bins=10)]
    [(0.9, 1.0)]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from labelsmooth.calibration.bins import DEFAULT_BINS, CalibrationBin, errors_from_sums
from labelsmooth.calibration.scores import check_logits
from labelsmooth.errors import check_class_indices, check_outcomes, whole_number


class BinSums(NamedTuple):
    """Per bin (float64, on the confidences' device): its range, size, and sums of outcomes and confidences."""

    lower: torch.Tensor
    upper: torch.Tensor
    # the field shadows tuple.count, which namedtuple allows at run time but mypy reports as an override
    count: torch.Tensor  # type: ignore[assignment]
    outcome_sum: torch.Tensor
    confidence_sum: torch.Tensor

    def errors(self) -> dict[str, float]:
        """``ece``, ``rmsce`` and ``mce`` of these bins (``labelsmooth.calibration.bins.errors_from_sums``)."""
        values = errors_from_sums(
            *(t.detach().cpu().numpy() for t in (self.count, self.outcome_sum, self.confidence_sum))
        )
        return {name: float(value) for name, value in values.items()}


def confidences_and_correct(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 softmax confidence ``c_i`` (float32) and correctness ``a_i`` (0./1.) of (N, K) logits and (N,) class
    indices (``labelsmooth.errors.check_class_indices``). The prediction is the logits' argmax, as accuracy counts
    it: the float32 softmax of two logits a rounding apart can tie, and its argmax then picks the lower class."""
    check_class_indices(logits, target, owner="confidences_and_correct")
    confidence = logits.float().softmax(dim=-1).max(dim=-1).values
    return confidence, (logits.argmax(dim=-1) == target).float()


def equal_width_bin_index(values: torch.Tensor, n_bins: int = DEFAULT_BINS) -> torch.Tensor:
    """The equal-width bin ``0..n_bins-1`` of each probability in ``values`` (any shape): ``min(⌊v · M⌋, M - 1)``,
    in float64, so ``[m/M, (m+1)/M)`` with the last bin ``[(M-1)/M, 1]`` holding 1 (the module docstring says
    why). Values outside [0, 1] go to the first or last bin, NaN to the last (its sums, and so the errors, NaN)."""
    whole_number("n_bins", n_bins, 1, "the bins of the calibration errors")
    return values.double().mul(n_bins).floor().nan_to_num(nan=n_bins - 1).clamp(0, n_bins - 1).long()


def equal_mass_bin_index(confidence: torch.Tensor, n_bins: int = DEFAULT_BINS) -> tuple[torch.Tensor, int]:
    """The equal-mass bin of each confidence in ``confidence`` (N,) and the number of bins ``min(n_bins, N)``:
    the number of edges ``e_1..e_{G-1}`` (the smallest confidence of each nominal group but the first) at or
    below it, so tied confidences share a bin whatever their order (module docstring)."""
    whole_number("n_bins", n_bins, 1, "the bins of the calibration errors")
    n = confidence.numel()
    groups = min(n_bins, n)
    if not groups:
        return torch.zeros(0, dtype=torch.long, device=confidence.device), 0
    sizes = torch.full((groups,), n // groups, dtype=torch.long, device=confidence.device)
    sizes[: n % groups] += 1
    edges = confidence.sort().values[torch.cumsum(sizes, 0)[:-1]]  # v_{s_g} for g = 1..G-1
    return torch.bucketize(confidence, edges, right=True), groups


def bin_sums(
    confidence: torch.Tensor, outcome: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> BinSums:
    """The bins of ``confidence`` (N,) with outcomes ``outcome`` (N,) in {0, 1}, empty bins included: ``n_bins``
    equal-width bins (range ``[m/M, (m+1)/M]``) or ``min(n_bins, N)`` equal-mass bins (a bin's range is its
    smallest and largest confidence; an empty one's is its edge), as the module docstring says."""
    confidence, outcome = confidence.detach().flatten(), outcome.detach().flatten().double()
    if confidence.numel() != outcome.numel():
        raise ValueError(f"confidence has {confidence.numel()} values but outcome {outcome.numel()}")
    wide = confidence.double()
    device = confidence.device
    if equal_mass:
        index, n_groups = equal_mass_bin_index(confidence, n_bins)
        sorted_confidence = wide.sort().values
        count = torch.bincount(index, minlength=n_groups)
        first = torch.cumsum(count, 0) - count  # the rank of each bin's smallest confidence
        lower = sorted_confidence[first]  # of an empty bin (its tie went up): its edge, the next bin's smallest
        upper = sorted_confidence[(first + count - 1).clamp(min=0)].where(count > 0, lower)
    else:
        index = equal_width_bin_index(confidence, n_bins)
        lower = torch.arange(n_bins, dtype=torch.float64, device=device).div(n_bins)
        upper = torch.arange(1, n_bins + 1, dtype=torch.float64, device=device).div(n_bins)
        n_groups = n_bins

    def summed(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(0, index, values)

    return BinSums(lower, upper, summed(torch.ones_like(wide)), summed(outcome), summed(wide))


def binned_statistics(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> list[CalibrationBin]:
    """The non-empty bins of ``confidence`` with their accuracy and mean confidence (the reliability diagram's);
    confidences outside [0, 1] or outcomes other than 0 and 1 are refused (``check_confidences``)."""
    check_confidences(confidence, correct, "binned_statistics")
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
    check_confidences(confidence, correct, "binned_calibration_errors")
    return bin_sums(confidence, correct, n_bins, equal_mass).errors()


def check_confidences(confidence: Any, correct: Any, owner: str) -> None:
    """A ``ValueError`` naming ``owner`` unless the confidences lie in [0, 1] (NaN passes: its errors are NaN) and
    the outcomes are 0 or 1: logits or class indices given in their place would give a number.

    >>> check_confidences(torch.tensor([2.0]), torch.tensor([1.0]), "f")
    Traceback (most recent call last):
    ...
    ValueError: f: confidences must lie in [0, 1], these reach 2 (logits or scores given for probabilities?)
    """
    confidence, correct = torch.as_tensor(confidence).detach(), torch.as_tensor(correct).detach()
    finite = confidence[~confidence.isnan()].double()
    if finite.numel() and (float(finite.min()) < 0 or float(finite.max()) > 1):
        reach = float(finite.max()) if float(finite.max()) > 1 else float(finite.min())
        raise ValueError(
            f"{owner}: confidences must lie in [0, 1], these reach {reach:g} (logits or scores given for "
            "probabilities?)"
        )
    check_outcomes(correct, owner)


def expected_calibration_error(
    logits: torch.Tensor, target: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> float:
    """ECE of (N, K) logits over ``n_bins`` equal-width (or, with ``equal_mass``, equal-mass) bins."""
    check_logits(logits, target, "expected_calibration_error")
    return binned_calibration_errors(*confidences_and_correct(logits, target), n_bins, equal_mass)["ece"]
