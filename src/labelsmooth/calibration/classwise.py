"""Class-wise ECE: the mean over classes of the binned ECE of ``p_k`` against ``[y = k]`` (torch).

``classwise_ece = 1/K Σ_k ECE_k`` with ``ECE_k = Σ_b |Σ_{i∈B_kb} ([y_i = k] - p_ik)| / N``: for each class ``k`` all N
samples are binned by their probability ``p_ik`` of that class into the equal-width bins of
``labelsmooth.calibration.binning`` (15 bins ``[m/M, (m+1)/M)``, the last closed at 1: a
probability of exactly 1 in the last bin, not one of its own), and the ECE of the bin sums is
``labelsmooth.calibration.bins.errors_from_sums`` (Kull et al. 2019, "Beyond temperature scaling: obtaining
well-calibrated multiclass probabilities with Dirichlet calibration"; Nixon et al. 2019 "static calibration
error"). The per-(class, bin) sums add up over batches and processes, so a metric keeps ``3 · K · M`` numbers
instead of the N × K probabilities. torchmetrics has no class-wise ECE.

>>> probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
>>> round(classwise_calibration_error(probs.log(), torch.tensor([0, 0])), 4)  # each class: (0.1 + 0.8) / 2
0.45
"""

from __future__ import annotations

import torch

from labelsmooth.calibration.binning import equal_width_bin_index
from labelsmooth.calibration.bins import DEFAULT_BINS, errors_from_sums
from labelsmooth.calibration.scores import check_logits


def classwise_bin_sums(probs: torch.Tensor, target: torch.Tensor, n_bins: int = DEFAULT_BINS) -> torch.Tensor:
    """(3, K, n_bins) float64: per class and bin the number of samples, of samples of that class, and the sum
    of that class's probabilities, for (N, K) probabilities ``probs``."""
    num_classes = probs.shape[-1]
    size = num_classes * n_bins
    index = equal_width_bin_index(probs, n_bins) + torch.arange(num_classes, device=probs.device) * n_bins
    sums = torch.zeros(3, size, dtype=torch.float64, device=probs.device)
    sums[0] = torch.bincount(index.flatten(), minlength=size)
    # [y_i = k] is 1 in one column per sample: count the bins of the true classes' probabilities alone.
    sums[1] = torch.bincount(index.gather(-1, target.long().unsqueeze(-1)).flatten(), minlength=size)
    # index_add_, not bincount with weights: that one has no deterministic CUDA kernel (trainer.deterministic).
    sums[2].index_add_(0, index.flatten(), probs.detach().double().flatten())
    return sums.view(3, num_classes, n_bins)


def classwise_ece_of_sums(sums: torch.Tensor) -> float:
    """The class-wise ECE of ``classwise_bin_sums`` (summed over batches); NaN for no samples."""
    count, outcome, confidence = sums.detach().cpu().numpy()
    return float(errors_from_sums(count, outcome, confidence)["ece"].mean())


def classwise_calibration_error(logits: torch.Tensor, target: torch.Tensor, n_bins: int = DEFAULT_BINS) -> float:
    """Class-wise ECE of (N, K) logits (softmax in float32)."""
    check_logits(logits, target, "classwise_calibration_error")
    return classwise_ece_of_sums(classwise_bin_sums(logits.float().softmax(dim=-1), target, n_bins))
