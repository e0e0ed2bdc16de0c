"""Independent reference implementations of the calibration and selective metrics: plain numpy and Python loops,
float64, written from the definitions (not from ``labelsmooth.calibration``), for the tests to compare with."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def softmax64(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax32(logits: np.ndarray) -> np.ndarray:
    """Softmax of float32 logits in float32 (what the logged binned metrics read)."""
    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def equal_width_ece(values: np.ndarray, outcomes: np.ndarray, n_bins: int = 15) -> float:
    """ECE over the M bins [m/M, (m+1)/M) and [(M-1)/M, 1] (a value of exactly 1 in the last), the edges exact
    (``fractions.Fraction`` of each value)."""
    counts, outcome_sums, value_sums = [0] * n_bins, [0.0] * n_bins, [0.0] * n_bins
    for value, outcome in zip(values.astype(np.float32).tolist(), outcomes.tolist(), strict=True):
        m = min(math.floor(Fraction(value) * n_bins), n_bins - 1)
        counts[m] += 1
        outcome_sums[m] += float(outcome)
        value_sums[m] += float(value)
    n = sum(counts)
    return sum(abs(a - c) for a, c in zip(outcome_sums, value_sums, strict=True)) / n


def classwise_ece(logits: np.ndarray, targets: np.ndarray, n_bins: int = 15) -> float:
    probs = softmax32(logits)
    classes = probs.shape[1]
    return sum(equal_width_ece(probs[:, k], (targets == k).astype(float), n_bins) for k in range(classes)) / classes


def top1(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max-softmax confidence in float64 and correctness of the float32 argmax."""
    confidence = softmax64(logits).max(axis=1)
    correct = (softmax32(logits).argmax(axis=1) == targets).astype(float)
    return confidence, correct


def errors_among_most_confident(confidence: np.ndarray, correct: np.ndarray) -> list[float]:
    """E_i for i = 1..N: errors among the i most confident, a group of tied confidences contributing its errors
    in proportion to how many of its members are taken (the mean over the orderings of the tied samples)."""
    groups: dict[float, list[float]] = {}
    for c, a in zip(confidence.tolist(), correct.tolist(), strict=True):
        groups.setdefault(c, []).append(1.0 - a)
    result, errors_before = [], 0.0
    for c in sorted(groups, reverse=True):
        members = groups[c]
        for taken in range(1, len(members) + 1):
            result.append(errors_before + taken * sum(members) / len(members))
        errors_before += sum(members)
    return result


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    errors = errors_among_most_confident(confidence, correct)
    return sum(e / i for i, e in enumerate(errors, start=1)) / len(errors)


def augrc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Trapezoids under the generalised risk E_i / N over the coverages 0, 1/N, ..., 1 from (0, 0) (Traub et al.
    2024)."""
    errors = [0.0, *errors_among_most_confident(confidence, correct)]
    n = len(errors) - 1
    return sum((errors[i - 1] + errors[i]) / (2 * n) / n for i in range(1, n + 1))
