"""The published definitions of AUGRC, the Brier score, the adaptive ECE and the equal-width bins, recomputed from
raw predictions by code written here (pure Python and numpy, float64, never ``labelsmooth.calibration``):

* AUGRC (Traub et al. 2024): trapezoids under the generalised risk ``E_i / N`` from coverage 0, built as their
  reference code builds the curve (one point per distinct confidence, then ``(0, 0)``);
* the Brier score ``Σ_k (p_k - [k = y])²`` of float64 probabilities, against the float32 computation on confident
  predictions;
* the adaptive ECE over equal-mass bins whose membership depends on the confidence values only;
* the equal-width ECE / MCE / RMSCE over M bins, a confidence of exactly 1 in the last.
"""

from __future__ import annotations

import importlib
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from labelsmooth.calibration.binning import binned_calibration_errors, binned_statistics
from labelsmooth.calibration.classwise import classwise_calibration_error
from labelsmooth.calibration.metrics import AdaptiveCalibrationError, BrierScore, classification_metrics
from labelsmooth.calibration.scores import brier_score
from labelsmooth.calibration.selective import augrc, aurc

# --- independent implementations ------------------------------------------------------------------------------


def softmax(logits: np.ndarray, dtype: type) -> np.ndarray:
    z = np.asarray(logits, dtype=dtype)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(dtype)


def traub_augrc(confidence: list[float], correct: list[float]) -> float:
    """The generalised risk–coverage curve as Traub et al.'s reference code builds it (FD-Shifts,
    ``generalized_risk_stats``): from the least confident up, one point (coverage, errors answered / N) at each
    distinct confidence, then (0, 0); the area by trapezoids."""
    n = len(confidence)
    pairs = sorted(zip(confidence, correct, strict=True))  # ascending confidence
    errors_answered = sum(1.0 - a for _, a in pairs)
    points = [(1.0, errors_answered / n)]
    for i in range(n - 1):
        errors_answered -= 1.0 - pairs[i][1]
        if pairs[i][0] != pairs[i + 1][0]:
            points.append(((n - 1 - i) / n, errors_answered / n))
    points.append((0.0, 0.0))
    return sum((c0 - c1) * (r0 + r1) / 2 for (c0, r0), (c1, r1) in zip(points, points[1:], strict=False))


def brier64(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``Σ_k (p_k - [k = y])²`` per sample, float64 probabilities."""
    probs = softmax(logits, np.float64)
    return ((probs - np.eye(probs.shape[1])[target]) ** 2).sum(axis=1)


def equal_mass_ece(confidence: list[float], correct: list[float], n_bins: int) -> float:
    """Equal-mass bins: nominal groups of the sorted confidences of sizes ⌊N/G⌋ (the first N mod G one larger);
    the smallest confidence of each group but the first is an edge, and a confidence's bin is the number of edges
    at or below it."""
    n = len(confidence)
    groups = min(n_bins, n)
    ordered = sorted(confidence)
    sizes = [n // groups + (1 if g < n % groups else 0) for g in range(groups)]
    starts = [sum(sizes[:g]) for g in range(groups)]
    edges = [ordered[s] for s in starts[1:]]
    outcome_sums, confidence_sums = [0.0] * groups, [0.0] * groups
    for c, a in zip(confidence, correct, strict=True):
        b = sum(1 for e in edges if e <= c)
        outcome_sums[b] += a
        confidence_sums[b] += c
    return sum(abs(s - c) for s, c in zip(outcome_sums, confidence_sums, strict=True)) / n


def rank_split_ece(confidence: list[float], correct: list[float], n_bins: int) -> float:
    """The equal-mass ECE of a split of the sorted samples by rank, ties in input order (``torch.tensor_split``
    of a stable sort: torch-uncertainty's, and this project's before): the order-dependent one."""
    order = sorted(range(len(confidence)), key=lambda i: confidence[i])
    groups = np.array_split(np.array(order), min(n_bins, len(order)))
    return sum(abs(sum(correct[i] - confidence[i] for i in g)) for g in groups) / len(order)


def equal_width_errors(confidence: list[float], outcome: list[float], n_bins: int) -> dict[str, float]:
    """ECE, MCE, RMSCE over the M bins [m/M, (m+1)/M), the last [(M-1)/M, 1], edges exact (Fractions)."""
    bins: dict[int, list[tuple[float, float]]] = {}
    for c, a in zip(confidence, outcome, strict=True):
        bins.setdefault(min(math.floor(Fraction(c) * n_bins), n_bins - 1), []).append((c, a))
    n = len(confidence)
    gaps = {m: abs(sum(a - c for c, a in rows)) / len(rows) for m, rows in bins.items()}
    return {
        "ece": sum(len(bins[m]) * g for m, g in gaps.items()) / n,
        "mce": max(gaps.values()),
        "rmsce": math.sqrt(sum(len(bins[m]) * g * g for m, g in gaps.items()) / n),
    }


def logits_with_ties(n: int = 300, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 logits with saturated rows (float32 confidence exactly 1) and blocks of duplicated rows (ties), the
    blocks longer than an equal-mass bin."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, k)) * np.linspace(0.3, 6, n)[:, None]).astype(np.float32)
    target = rng.integers(0, k, n)
    logits[:30, 0] = 60.0
    target[:12] = 0  # some of the saturated predictions right
    logits[40:75] = logits[40]
    target[40:55] = logits[40].argmax()
    logits[100:140] = logits[100]
    target[100:118] = logits[100].argmax()
    return logits, target


def orders(n: int) -> list[np.ndarray]:
    return [np.arange(n), np.arange(n)[::-1], np.random.default_rng(7).permutation(n)]


# --- AUGRC ------------------------------------------------------------------------------------------------------


def test_augrc_is_the_trapezoid_from_coverage_zero_for_seven_samples() -> None:
    confidence = [0.97, 0.93, 0.9, 0.85, 0.8, 0.7, 0.6]
    correct = [1, 1, 0, 1, 1, 0, 0]  # E_i = 0, 0, 1, 1, 1, 2, 3
    paper = (0 + 0 + 1 + 1 + 1 + 2 + 3 - 3 / 2) / 49  # Σ_i (E_{i-1} + E_i) / 2 / N², from (0, 0)
    assert paper == pytest.approx(0.1327, abs=5e-5)
    assert traub_augrc(confidence, correct) == pytest.approx(paper, rel=1e-12)
    assert augrc(np.array(confidence), np.array(correct)) == pytest.approx(paper, rel=1e-12)
    right_riemann = 8 / 49  # the mean of E_i / N, 0.1633: the paper's plus err / (2N)
    assert right_riemann - paper == pytest.approx((3 / 7) / 14, rel=1e-12)


@pytest.mark.parametrize("n", [7, 500])
def test_augrc_matches_the_reference_curve_with_ties_in_any_order(n: int) -> None:
    rng = np.random.default_rng(n)
    confidence = np.round(rng.uniform(0.3, 1.0, n), 2)  # two decimals: many ties at N = 500
    correct = (rng.uniform(size=n) < confidence).astype(float)
    if n == 7:
        confidence[[1, 4, 5]] = confidence[2]
    assert len(np.unique(confidence)) < n
    expected = traub_augrc(confidence.tolist(), correct.tolist())
    for order in orders(n):
        assert augrc(confidence[order], correct[order]) == pytest.approx(expected, rel=1e-12)
    # Without ties, the mean of E_i / N (a right Riemann sum) is the paper's value plus err / (2N).
    distinct = rng.uniform(0.3, 1.0, n)
    errors = np.cumsum(1 - correct[np.argsort(-distinct)])
    right_riemann = errors.mean() / n
    assert right_riemann - traub_augrc(distinct.tolist(), correct.tolist()) == pytest.approx(
        (1 - correct.mean()) / (2 * n), rel=1e-9
    )
    assert augrc(distinct, correct) == pytest.approx(right_riemann - (1 - correct.mean()) / (2 * n), rel=1e-12)


def test_torch_uncertainty_convention_is_the_documented_closed_form() -> None:
    """torch-uncertainty's AURC / AUGRC: trapezoids over the coverages 1/N … 1, divided by 1 - 1/N (no ties)."""
    rng = np.random.default_rng(3)
    n = 40
    confidence, correct = rng.uniform(size=n), (rng.uniform(size=n) < 0.7).astype(float)
    errors = np.cumsum(1 - correct[np.argsort(-confidence)])
    coverage = np.arange(1, n + 1) / n
    risk = errors / np.arange(1, n + 1)

    def trapezoid(y: np.ndarray) -> float:
        return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(coverage)))

    tu_aurc, tu_augrc = trapezoid(risk) / (1 - 1 / n), trapezoid(errors / n) / (1 - 1 / n)
    assert tu_aurc == pytest.approx((risk.sum() - (risk[0] + risk[-1]) / 2) / (n - 1), rel=1e-12)
    assert tu_augrc == pytest.approx((errors.sum() - (errors[0] + errors[-1]) / 2) / (n * (n - 1)), rel=1e-12)
    assert aurc(confidence, correct) == pytest.approx(risk.mean(), rel=1e-12)
    assert augrc(confidence, correct) == pytest.approx((errors.sum() - errors[-1] / 2) / n**2, rel=1e-12)


# --- Brier score ------------------------------------------------------------------------------------------------


def confident_logits(n: int = 400, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 0.3, (n, k)).astype(np.float32)
    target = rng.integers(0, k, n)
    logits[np.arange(n), target] = 9 + rng.uniform(0, 1, n)  # p_y ≈ 1 - 1e-3: a Brier score near 7e-7
    return logits, target


def test_brier_of_confident_float32_predictions_keeps_its_precision() -> None:
    logits, target = confident_logits()
    expected = float(brier64(logits, target).mean())
    assert 1e-7 < expected < 1e-5
    z, y = torch.from_numpy(logits), torch.from_numpy(target)
    metric = BrierScore()
    metric.update(z, y)
    collection = classification_metrics(10, prefix="test/")
    collection.update(z, y)
    for value in (float(brier_score(z, y)), float(metric.compute()), float(collection.compute()["test/brier"])):
        assert value == pytest.approx(expected, rel=1e-3)
    # The expanded form Σ p² - 2 p_y + 1 in float32 misses by more than that on the same predictions.
    p = softmax(logits, np.float32)
    expanded = (p**2).sum(axis=1) - 2 * p[np.arange(len(target)), target] + np.float32(1)
    assert abs(float(expanded.astype(np.float64).mean()) / expected - 1) > 1e-3


def test_brier_of_ordinary_predictions_is_the_definition() -> None:
    logits, target = logits_with_ties()
    expected = float(brier64(logits, target).mean())
    assert float(brier_score(torch.from_numpy(logits), torch.from_numpy(target))) == pytest.approx(expected, rel=1e-5)


# --- adaptive ECE -----------------------------------------------------------------------------------------------


def test_adaptive_ece_keeps_straddling_ties_together_in_any_order() -> None:
    # 10 samples, 3 bins of nominal sizes 4, 3, 3: the tie at 0.7 (ranks 2..5) straddles the first edge.
    confidence = [0.55, 0.6, 0.7, 0.7, 0.7, 0.7, 0.8, 0.85, 0.9, 0.95]
    correct = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    expected = equal_mass_ece(confidence, correct, 3)
    c, a = np.array(confidence, dtype=np.float32), np.array(correct)
    reordered = [rank_split_ece(c[o].astype(float).tolist(), a[o].tolist(), 3) for o in orders(10)]
    assert max(reordered) - min(reordered) > 1e-3  # a split by rank depends on the order of the tied samples
    for order in orders(10):
        value = binned_calibration_errors(torch.from_numpy(c[order]), torch.from_numpy(a[order]), 3, equal_mass=True)
        assert value["ece"] == pytest.approx(equal_mass_ece(c.astype(float).tolist(), correct, 3), rel=1e-12)
        assert value["ece"] == pytest.approx(expected, rel=1e-6)
    bins = binned_statistics(torch.from_numpy(c), torch.from_numpy(a), 3, equal_mass=True)
    assert [b.count for b in bins] == [2, 5, 3]  # edges 0.7 and 0.85: {0.55, 0.6}, the four 0.7s and 0.8, the rest
    assert (bins[1].lower, bins[1].upper) == pytest.approx((0.7, 0.8))


def test_adaptive_ece_of_logits_with_saturated_and_tied_confidences() -> None:
    logits, target = logits_with_ties()
    probs = softmax(logits, np.float32)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == target).astype(float)
    ordered = np.sort(confidence)
    starts = np.cumsum([20] * 15)[:-1]  # 300 samples, 15 bins of 20
    assert (ordered[starts - 1] == ordered[starts]).sum() >= 3  # ties straddle several nominal edges
    expected = equal_mass_ece(confidence.astype(float).tolist(), correct.tolist(), 15)
    by_rank = [rank_split_ece(confidence[o].astype(float).tolist(), correct[o].tolist(), 15) for o in orders(300)]
    assert max(by_rank) - min(by_rank) > 1e-3  # a split by rank would depend on the order here
    for order in orders(len(target)):
        z, y = torch.from_numpy(logits[order]), torch.from_numpy(target[order])
        metric, collection = AdaptiveCalibrationError(n_bins=15), classification_metrics(10, prefix="test/")
        for part in np.array_split(np.arange(len(y)), 4):  # batches
            metric.update(z[part], y[part])
            collection.update(z[part], y[part])
        assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)
        assert float(collection.compute()["test/ace"]) == pytest.approx(expected, rel=1e-5)


# --- equal-width bins and the confidence of exactly 1 -----------------------------------------------------------


def test_a_confidence_of_exactly_one_is_in_the_last_bin() -> None:
    # 0.95 (right) and 1.0 (wrong) share the last of 10 bins: |1/2 - 0.975| = 0.475 (a bin [1, 1] of their own
    # would give ECE (0.05 + 1) / 2 = 0.525 and MCE 1).
    confidence, correct = torch.tensor([0.95, 1.0]), torch.tensor([1.0, 0.0])
    errors = binned_calibration_errors(confidence, correct, n_bins=10)
    assert errors == pytest.approx({"ece": 0.475, "mce": 0.475, "rmsce": 0.475}, rel=1e-6)
    assert errors == pytest.approx(equal_width_errors([0.95, 1.0], [1.0, 0.0], 10), rel=1e-6)
    (only,) = binned_statistics(confidence, correct, n_bins=10)
    assert (only.lower, only.upper, only.count) == (0.9, 1.0, 2)
    # Interior edges are closed on the left: 0.25, 0.5, 0.75 open their bins of 4.
    edges = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    assert [(b.lower, b.count) for b in binned_statistics(edges, torch.ones(5), n_bins=4)] == [
        (0.0, 1),
        (0.25, 1),
        (0.5, 1),
        (0.75, 2),
    ]


def test_equal_width_errors_of_logits_with_saturated_confidences() -> None:
    logits, target = logits_with_ties()
    probs = softmax(logits, np.float32)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == target).astype(float)
    assert (confidence == 1).sum() >= 30
    expected = equal_width_errors(confidence.astype(float).tolist(), correct.tolist(), 15)
    collection = classification_metrics(10, prefix="test/")
    collection.update(torch.from_numpy(logits), torch.from_numpy(target))
    values = {name: float(value) for name, value in collection.compute().items()}
    for name in ("ece", "mce", "rmsce"):
        assert values[f"test/{name}"] == pytest.approx(expected[name], rel=1e-5), name
    # Class-wise: probabilities of exactly 1 (and 0) in the first and last of the M bins.
    classwise = np.mean(
        [
            equal_width_errors(probs[:, k].astype(float).tolist(), (target == k).astype(float).tolist(), 15)["ece"]
            for k in range(10)
        ]
    )
    assert values["test/classwise_ece"] == pytest.approx(classwise, rel=1e-5)
    assert classwise_calibration_error(torch.from_numpy(logits), torch.from_numpy(target)) == pytest.approx(
        classwise, rel=1e-5
    )


def test_equal_width_errors_do_not_use_torchmetrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unsaturated confidences give torchmetrics' values; its binning itself is never called, so what it does
    next with a confidence of 1 cannot change them."""
    generator = torch.Generator().manual_seed(1)
    logits, target = torch.randn(500, 6, generator=generator) * 3, torch.randint(0, 6, (500,), generator=generator)
    probs = logits.softmax(-1)
    assert probs.max() < 1
    expected = {
        name: float(multiclass_calibration_error(probs, target, 6, n_bins=15, norm=norm))
        for name, norm in (("ece", "l1"), ("mce", "max"), ("rmsce", "l2"))
    }

    def refuse(*args, **kwargs):
        raise AssertionError("torchmetrics' binning was used")

    binning = importlib.import_module("torchmetrics.functional.classification.calibration_error")
    monkeypatch.setattr(binning, "_binning_bucketize", refuse)
    collection = classification_metrics(6, prefix="")
    collection.update(logits, target)
    values = collection.compute()
    for name, value in expected.items():
        assert float(values[name]) == pytest.approx(value, rel=1e-5), name
