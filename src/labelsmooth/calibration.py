"""Calibration statistics over softmax confidences, and temperature scaling.

Plain torch functions (no Lightning, no Hydra): the metrics, the calibration callback, ``evaluate`` and
the tests share them.

* Binned calibration statistics (Naeini et al. 2015; Guo et al. 2017): the top-1 confidence
  ``c_i = max_k softmax(z_i)_k`` and correctness ``a_i = [argmax_k z_ik = y_i]`` are grouped into bins
  ``B_1..B_M``; per bin ``acc(B) = mean a_i``, ``conf(B) = mean c_i``, weight ``|B|/N``.

  - ECE = ``Σ_m |B_m|/N · |acc(B_m) - conf(B_m)|`` over M equal-width bins of [0, 1];
  - adaptive ECE (Nguyen & O'Connor 2015; Nixon et al. 2019 "Measuring calibration in deep learning")
    is the same sum over M *equal-mass* bins: the sorted confidences split into M groups of (nearly)
    equal size, so sparse high-confidence regions do not dominate;
  - MCE = ``max_m |acc(B_m) - conf(B_m)|``; RMS calibration error = ``sqrt(Σ_m |B_m|/N · (acc - conf)²)``.

  torchmetrics has ECE / MCE / RMS over equal-width bins (used in ``labelsmooth.metrics``) but neither
  equal-mass bins nor access to the per-bin numbers a reliability diagram needs, hence ``binned_statistics``.

* Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks"): one scalar
  ``T > 0`` divides the logits, ``softmax(z / T)``, fitted by minimising the NLL on held-out (validation)
  logits. It keeps the argmax, so accuracy is unchanged. torchmetrics / Lightning have no fitter, so it is
  written here: a bounded scalar search (scipy) over ``log T`` on the full set of logits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

DEFAULT_BINS = 15


@dataclass(frozen=True)
class CalibrationBin:
    """One bin of a reliability diagram: its confidence range, size, accuracy and mean confidence."""

    lower: float
    upper: float
    count: int
    accuracy: float
    confidence: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def confidences_and_correct(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 softmax confidence ``c_i`` (float32) and correctness ``a_i`` (0./1.) of (N, K) logits."""
    probs = logits.float().softmax(dim=-1)
    confidence, prediction = probs.max(dim=-1)
    return confidence, (prediction == target).float()


def binned_statistics(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> list[CalibrationBin]:
    """The non-empty bins of ``confidence`` with their accuracy and mean confidence.

    Equal-width bins are ``[m/M, (m+1)/M)``, the last one closed (torchmetrics' convention, except that it
    gives confidences of exactly 1 a bin of their own; here they join the last bin). Equal-mass bins
    split the confidences sorted ascending into ``min(M, N)`` consecutive groups whose sizes differ by at
    most one (``torch.tensor_split``); a bin's range is its smallest and largest confidence.
    """
    confidence = confidence.detach().double().flatten().cpu()
    correct = correct.detach().double().flatten().cpu()
    if confidence.numel() == 0:
        return []
    if equal_mass:
        order = torch.argsort(confidence, stable=True)
        groups = torch.tensor_split(order, min(n_bins, confidence.numel()))
        return [
            CalibrationBin(
                lower=float(confidence[g].min()),
                upper=float(confidence[g].max()),
                count=int(g.numel()),
                accuracy=float(correct[g].mean()),
                confidence=float(confidence[g].mean()),
            )
            for g in groups
            if g.numel()
        ]
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(confidence, boundaries, right=True) - 1).clamp(0, n_bins - 1)
    bins = []
    for m in range(n_bins):
        members = index == m
        count = int(members.sum())
        if count:
            bins.append(
                CalibrationBin(
                    lower=float(boundaries[m]),
                    upper=float(boundaries[m + 1]),
                    count=count,
                    accuracy=float(correct[members].mean()),
                    confidence=float(confidence[members].mean()),
                )
            )
    return bins


def calibration_errors(bins: list[CalibrationBin]) -> dict[str, float]:
    """``ece`` (L1), ``rmsce`` (L2) and ``mce`` (max) of a list of bins; NaN when there are none."""
    total = sum(b.count for b in bins)
    if not total:
        return {"ece": float("nan"), "rmsce": float("nan"), "mce": float("nan")}
    gaps = [(b.count / total, abs(b.accuracy - b.confidence)) for b in bins]
    return {
        "ece": sum(w * g for w, g in gaps),
        "rmsce": sum(w * g * g for w, g in gaps) ** 0.5,
        "mce": max(g for _, g in gaps),
    }


def expected_calibration_error(
    logits: torch.Tensor, target: torch.Tensor, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> float:
    """ECE of (N, K) logits over ``n_bins`` equal-width (or, with ``equal_mass``, equal-mass) bins."""
    confidence, correct = confidences_and_correct(logits, target)
    return calibration_errors(binned_statistics(confidence, correct, n_bins, equal_mass))["ece"]


def fit_temperature(
    logits: torch.Tensor, target: torch.Tensor, bounds: tuple[float, float] = (0.01, 100.0), tolerance: float = 1e-9
) -> float:
    """The temperature ``T = argmin_T NLL(softmax(z / T), y)`` (Guo et al. 2017) on held-out logits.

    ``logits`` (N, K) and ``target`` (N,) are the held-out set (the validation split). The NLL is convex in
    ``1/T`` (a log-sum-exp minus a linear term), hence unimodal in ``log T``: a bounded Brent search
    (``scipy.optimize.minimize_scalar``) over ``log T`` in ``bounds`` finds it to ``tolerance``, in float64, so
    the result does not depend on the order of the samples (under DDP they arrive interleaved). For N = 0 it is
    1 (no scaling).
    """
    from scipy.optimize import minimize_scalar

    if logits.shape[0] == 0:
        return 1.0
    with torch.inference_mode(False), torch.no_grad():
        logits = logits.detach().cpu().double()
        target = target.detach().cpu().long()

        def nll(log_t: float) -> float:
            return float(F.cross_entropy(logits / math.exp(log_t), target))

        result = minimize_scalar(
            nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded", options={"xatol": tolerance}
        )
    return float(math.exp(result.x))


def temperature_scaled_metrics(
    logits: torch.Tensor, target: torch.Tensor, temperature: float, n_bins: int = DEFAULT_BINS
) -> dict[str, float]:
    """NLL, ECE, adaptive ECE and Brier score of ``softmax(logits / temperature)``.

    ECE is torchmetrics' (the same function as the logged ``test/ece``), so the values before and after
    scaling are comparable.
    """
    scaled = logits.detach().float().cpu() / temperature
    target = target.detach().long().cpu()
    probs = scaled.softmax(dim=-1)
    true_prob = probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    confidence, correct = confidences_and_correct(scaled, target)
    return {
        "nll": float(F.cross_entropy(scaled, target)),
        "ece": float(multiclass_calibration_error(probs, target, probs.shape[-1], n_bins=n_bins, norm="l1")),
        "ace": calibration_errors(binned_statistics(confidence, correct, n_bins, equal_mass=True))["ece"],
        "brier": float((probs.square().sum(-1) - 2 * true_prob + 1).mean()),
    }
