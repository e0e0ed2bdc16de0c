"""Selective classification: the risk–coverage curve, AURC and AUGRC of a confidence score (numpy only).

A selective classifier answers only on the samples it is most confident about. Sort the N samples by confidence,
most confident first; at coverage ``i/N`` it answers the first ``i`` of them, and with ``E_i`` the number of errors
among those ``i``:

* selective risk ``r_i = E_i / i`` (the risk–coverage curve, Geifman & El-Yaniv 2017, "Selective classification
  for deep neural networks");
* AURC ``= 1/N Σ_{i=1..N} E_i / i``, the area under the risk–coverage curve (Geifman et al. 2019, "Bias-reduced
  uncertainty estimation for deep neural classifiers"), as a mean over the N operating points;
* AUGRC ``= 1/N Σ_{i=1..N} E_i / N``, the area under the generalised risk–coverage curve: the generalised risk
  ``E_i / N`` is the probability that a sample is both answered and wrong (Traub et al. 2024, "Overcoming common
  flaws in the evaluation of selective classification systems").

Lower is better for both. Temperature scaling keeps each prediction but not, for K > 2 classes, the ranking of
the max-softmax confidences across samples: ``max_k softmax(z / T)_k = 1 / Σ_k exp(-(z_max - z_k) / T)`` weighs
the margins differently at each T (eleven classes: logits (1, 0, …, 0) against (0.5, 0, -100, …, -100) have
confidences 0.21 < 0.62 at T = 1 but 0.94 > 0.92 at T = 0.2). So AURC and AUGRC do change under temperature
scaling (for K = 2 they do not: the confidence is then increasing in the one margin).

Ties in confidence (common when float32 softmax saturates at 1): the samples of a group of equal confidence enter
together, and ``E_i`` inside the group is interpolated linearly, i.e. the group's errors are spread evenly over its
positions. This is the expectation over all orderings of the tied samples, so every value here depends on the
multiset of ``(confidence, correct)`` pairs only, not on the order the samples arrive in (under DDP they arrive
interleaved). torchmetrics has neither AURC nor AUGRC, hence they are written here.

Imports numpy only (no torch), so the report can use it.

>>> import numpy as np
>>> coverage, risk = risk_coverage_curve(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, True]))
>>> coverage.tolist(), risk.round(4).tolist()
([0.25, 0.5, 0.75, 1.0], [0.0, 0.5, 0.3333, 0.25])
>>> round(aurc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 1])), 6)  # (0 + 1/2 + 1/3 + 1/4) / 4
0.270833
>>> augrc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 1]))  # (0 + 1 + 1 + 1) / 4 / 4
0.1875
>>> augrc(np.array([0.5, 0.5]), np.array([1, 0]))  # a tie: E = (1/2, 1), so (1/2 + 1) / 2 / 2
0.375
"""

from __future__ import annotations

import numpy as np


def _as_pairs(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct)
    if confidence.ndim != 1 or correct.shape != confidence.shape:
        raise ValueError(
            f"confidence and correct must be 1-D arrays of the same length, got shapes {confidence.shape} and "
            f"{correct.shape}"
        )
    if correct.dtype != np.bool_ and not np.isin(correct, (0, 1)).all():
        raise ValueError("correct must hold booleans or 0/1 values")
    return confidence, correct.astype(np.float64)


def cumulative_errors(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``E_i`` for ``i = 1..N``: the number of errors among the ``i`` most confident samples (float64), ties
    interpolated as the module docstring says. NaN everywhere if a confidence is NaN."""
    confidence, correct = _as_pairs(confidence, correct)
    n = confidence.size
    if np.isnan(confidence).any():
        return np.full(n, np.nan)
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence, errors = confidence[order], 1.0 - correct[order]
    starts = np.flatnonzero(np.r_[True, sorted_confidence[1:] != sorted_confidence[:-1]])
    sizes = np.diff(np.r_[starts, n])
    errors_before = np.r_[0.0, np.cumsum(errors)][starts]  # errors of the more confident groups
    group_errors = np.add.reduceat(errors, starts) if n else np.zeros(0)
    group = np.repeat(np.arange(starts.size), sizes)
    position_in_group = np.arange(n) - starts[group] + 1  # 1..size
    return errors_before[group] + position_in_group * group_errors[group] / sizes[group]


def risk_coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage ``i/N`` and selective risk ``E_i / i`` for ``i = 1..N`` (the most confident answered first).

    ``confidence`` (N,) is any score where higher means more confident (max softmax here); ``correct`` (N,) is
    boolean or 0/1. Both returned arrays are float64 of length N (empty for N = 0).
    """
    errors = cumulative_errors(confidence, correct)
    answered = np.arange(1, errors.size + 1, dtype=np.float64)
    return answered / max(errors.size, 1), errors / answered


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk–coverage curve, ``1/N Σ_i E_i / i`` (Geifman & El-Yaniv 2017); NaN for N = 0."""
    _, risk = risk_coverage_curve(confidence, correct)
    return float(risk.mean()) if risk.size else float("nan")


def augrc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the generalised risk–coverage curve, ``1/N Σ_i E_i / N`` (Traub et al. 2024); NaN for N = 0."""
    errors = cumulative_errors(confidence, correct)
    return float(errors.mean() / errors.size) if errors.size else float("nan")
