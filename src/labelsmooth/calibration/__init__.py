"""labelsmooth.calibration: the evaluation formulas, each written once, and what wraps them.

Owns the metrics of a classifier's predictions: binned calibration errors (``bins``: the formula over bin sums;
``binning``: confidences and their equal-width / equal-mass bins), scores (``scores``: NLL, Brier), class-wise ECE
(``classwise``), smooth ECE (``smooth``), selective classification (``selective``: risk–coverage, AURC, AUGRC),
temperature scaling (``temperature``), the torchmetrics collection that computes all of them during validation and
test (``metrics``), reliability diagrams (``reliability``: figures only) and the reliability CSV (``bins_csv``: its
writer and reader).

May import torch, numpy, scipy, torchmetrics, and matplotlib when a figure is drawn; never the training
code, ``labelsmooth.runs`` or Lightning. ``bins``, ``bins_csv``, ``selective`` and ``reliability`` do not import
torch (the report uses them), and the names below are imported lazily, on first use, for the same reason.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_BINS": "bins",
    "CalibrationBin": "bins",
    "calibration_errors": "bins",
    "errors_from_sums": "bins",
    "summary_of_bins": "bins",
    "BIN_COLUMNS": "bins_csv",
    "bins_csv_text": "bins_csv",
    "read_bins_csv": "bins_csv",
    "bins_by_split": "bins_csv",
    "confidences_and_correct": "binning",
    "bin_sums": "binning",
    "binned_statistics": "binning",
    "binned_calibration_errors": "binning",
    "expected_calibration_error": "binning",
    "negative_log_likelihood": "scores",
    "brier_score": "scores",
    "classwise_calibration_error": "classwise",
    "smooth_ece": "smooth",
    "risk_coverage_curve": "selective",
    "aurc": "selective",
    "augrc": "selective",
    "fit_temperature": "temperature",
    "temperature_scaled_metrics": "temperature",
    "ClassificationMetrics": "metrics",
    "classification_metrics": "metrics",
    "reliability_figure": "reliability",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
