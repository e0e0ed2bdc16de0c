"""The binned calibration errors, defined once, over per-bin sums (numpy only, no torch).

Samples with a confidence ``c_i`` (a predicted probability) and an outcome ``a_i`` in {0, 1} (correctness, or
``[y_i = k]`` for class ``k``) are grouped into bins ``B_1..B_M``; per bin its size ``n_b``, ``S^a_b = Σ_{i∈B_b} a_i``
and ``S^c_b = Σ_{i∈B_b} c_i``; the gap is ``g_b = |S^a_b - S^c_b| / n_b = |acc(B_b) - conf(B_b)|`` and
``N = Σ_b n_b``:

* ECE ``= Σ_b n_b/N · g_b = Σ_b |S^a_b - S^c_b| / N`` (Naeini et al. 2015; Guo et al. 2017);
* MCE ``= max_b g_b`` over the non-empty bins;
* RMS calibration error ``= sqrt(Σ_b n_b/N · g_b²)``.

Every binned error of the package (equal-width ECE / MCE / RMSCE, the equal-mass adaptive ECE, the class-wise ECE,
the errors of a reliability CSV) is this function of bin sums; ``labelsmooth.calibration.binning`` makes the bins.
torchmetrics has the same formula for equal-width bins only and gives no per-bin numbers, which the reliability
diagrams and the CSV need, hence it is written here. Torch-free so that the report can use it on a CSV's rows.

>>> errors = calibration_errors([CalibrationBin(0.8, 0.9, 2, 0.5, 0.85), CalibrationBin(0.5, 0.6, 2, 1.0, 0.55)])
>>> {name: round(value, 4) for name, value in errors.items()}  # gaps 0.35 and 0.45, equal weights
{'ece': 0.4, 'rmsce': 0.4031, 'mce': 0.45}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_BINS = 15
BIN_FIELDS = ("lower", "upper", "count", "accuracy", "confidence")


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


BinRow = CalibrationBin | Mapping[str, float]


def errors_from_sums(count: np.ndarray, outcome_sum: np.ndarray, confidence_sum: np.ndarray) -> dict[str, np.ndarray]:
    """``ece``, ``rmsce`` and ``mce`` of bins given by their sizes ``n_b``, outcome sums ``S^a_b`` and confidence
    sums ``S^c_b`` along the last axis (leading axes are independent sets of bins: classes, say), in float64.
    Empty bins are ignored; all three are NaN for a set without samples.

    >>> errors_from_sums(np.array([2, 0, 2]), np.array([1, 0, 2]), np.array([1.7, 0, 1.1]))["ece"].round(4)
    np.float64(0.4)
    """
    count = np.asarray(count, dtype=np.float64)
    difference = np.abs(np.asarray(outcome_sum, dtype=np.float64) - np.asarray(confidence_sum, dtype=np.float64))
    total = count.sum(axis=-1)
    occupied = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(occupied, difference / np.where(occupied, count, 1.0), 0.0)
        ece = difference.sum(axis=-1) / total
        rmsce = np.sqrt((count * gap * gap).sum(axis=-1) / total)
    mce = np.where(total > 0, np.where(occupied, gap, -np.inf).max(axis=-1, initial=-np.inf), np.nan)
    return {"ece": ece, "rmsce": rmsce, "mce": mce}


def calibration_errors(bins: Sequence[BinRow]) -> dict[str, float]:
    """``ece``, ``rmsce`` and ``mce`` of a list of bins (``CalibrationBin`` or rows of a reliability CSV); NaN
    when there are none."""
    rows = [b.as_dict() if isinstance(b, CalibrationBin) else b for b in bins]
    count = np.array([float(r["count"]) for r in rows], dtype=np.float64)
    outcome = count * np.array([float(r["accuracy"]) for r in rows], dtype=np.float64)
    confidence = count * np.array([float(r["confidence"]) for r in rows], dtype=np.float64)
    return {name: float(value) for name, value in errors_from_sums(count, outcome, confidence).items()}


def summary_of_bins(bins: Sequence[BinRow]) -> dict[str, float]:
    """Total count, accuracy, mean confidence and ECE of a list of bins (count-weighted means)."""
    rows = [b.as_dict() if isinstance(b, CalibrationBin) else b for b in bins]
    total = sum(float(r["count"]) for r in rows)
    if not total:
        return {"count": 0.0, "accuracy": float("nan"), "confidence": float("nan"), "ece": float("nan")}
    return {
        "count": total,
        "accuracy": sum(float(r["count"]) * float(r["accuracy"]) for r in rows) / total,
        "confidence": sum(float(r["count"]) * float(r["confidence"]) for r in rows) / total,
        "ece": calibration_errors(rows)["ece"],
    }
