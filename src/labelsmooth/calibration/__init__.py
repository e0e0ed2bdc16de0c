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
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # the same names, typed and exported for type checkers (tests/test_package.py compares)
    from labelsmooth.calibration.binning import (
        bin_sums as bin_sums,
    )
    from labelsmooth.calibration.binning import (
        binned_calibration_errors as binned_calibration_errors,
    )
    from labelsmooth.calibration.binning import (
        binned_statistics as binned_statistics,
    )
    from labelsmooth.calibration.binning import (
        confidences_and_correct as confidences_and_correct,
    )
    from labelsmooth.calibration.binning import (
        expected_calibration_error as expected_calibration_error,
    )
    from labelsmooth.calibration.bins import (
        DEFAULT_BINS as DEFAULT_BINS,
    )
    from labelsmooth.calibration.bins import (
        CalibrationBin as CalibrationBin,
    )
    from labelsmooth.calibration.bins import (
        calibration_errors as calibration_errors,
    )
    from labelsmooth.calibration.bins import (
        errors_from_sums as errors_from_sums,
    )
    from labelsmooth.calibration.bins import (
        summary_of_bins as summary_of_bins,
    )
    from labelsmooth.calibration.bins_csv import (
        BIN_COLUMNS as BIN_COLUMNS,
    )
    from labelsmooth.calibration.bins_csv import (
        bins_by_split as bins_by_split,
    )
    from labelsmooth.calibration.bins_csv import (
        bins_csv_text as bins_csv_text,
    )
    from labelsmooth.calibration.bins_csv import (
        read_bins_csv as read_bins_csv,
    )
    from labelsmooth.calibration.classwise import (
        classwise_calibration_error as classwise_calibration_error,
    )
    from labelsmooth.calibration.metrics import (
        ClassificationMetrics as ClassificationMetrics,
    )
    from labelsmooth.calibration.metrics import (
        classification_metrics as classification_metrics,
    )
    from labelsmooth.calibration.reliability import (
        reliability_figure as reliability_figure,
    )
    from labelsmooth.calibration.scores import (
        brier_score as brier_score,
    )
    from labelsmooth.calibration.scores import (
        negative_log_likelihood as negative_log_likelihood,
    )
    from labelsmooth.calibration.selective import (
        augrc as augrc,
    )
    from labelsmooth.calibration.selective import (
        aurc as aurc,
    )
    from labelsmooth.calibration.selective import (
        risk_coverage_curve as risk_coverage_curve,
    )
    from labelsmooth.calibration.smooth import (
        smooth_ece as smooth_ece,
    )
    from labelsmooth.calibration.temperature import (
        fit_temperature as fit_temperature,
    )
    from labelsmooth.calibration.temperature import (
        temperature_scaled_metrics as temperature_scaled_metrics,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
