"""The functional formulas of ``labelsmooth.calibration`` against independent float64 implementations
(``tests.reference_metrics``), the reliability CSV's round trip, the package's doctests."""

from __future__ import annotations

import doctest
import importlib
import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from labelsmooth.calibration.binning import binned_calibration_errors, binned_statistics, confidences_and_correct
from labelsmooth.calibration.bins import CalibrationBin, calibration_errors, errors_from_sums
from labelsmooth.calibration.bins_csv import BIN_COLUMNS, bins_by_split, bins_csv_text, read_bins_csv
from labelsmooth.calibration.classwise import classwise_calibration_error
from labelsmooth.calibration.scores import brier_score, negative_log_likelihood
from labelsmooth.calibration.selective import augrc, aurc, risk_coverage_curve
from labelsmooth.calibration.smooth import smooth_ece
from labelsmooth.calibration.temperature import temperature_scaled_metrics
from tests import reference_metrics as reference
from tests.conftest import REPO_ROOT

SOURCES = REPO_ROOT / "src"
# Every module with an example that runs (a ``>>>`` line not marked ``+SKIP``): a new doctest cannot go unrun.
MODULES = sorted(
    ".".join(path.relative_to(SOURCES).with_suffix("").parts).removesuffix(".__init__")
    for path in (SOURCES / "labelsmooth").rglob("*.py")
    if any(">>>" in line and "+SKIP" not in line for line in path.read_text().splitlines())
)


def random_logits(n: int = 600, k: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=generator) * torch.linspace(0.2, 9, n).unsqueeze(-1)
    logits[:15, 0] = 50.0  # float32 confidence exactly 1, in the last bin
    logits[15:25] = logits[25:35]  # duplicated rows: tied confidences
    return logits, torch.randint(0, k, (n,), generator=generator)


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_binned_errors_match_float64_loops() -> None:
    logits, target = random_logits()
    confidence, correct = confidences_and_correct(logits, target)
    errors = binned_calibration_errors(confidence, correct)
    c, a = confidence.numpy(), correct.numpy().astype(np.float64)
    assert errors["ece"] == pytest.approx(reference.equal_width_ece(c, a), rel=1e-12)
    # MCE and RMSCE from the same bins, written out.
    index = np.array([min(math.floor(Fraction(float(v)) * 15), 14) for v in c])  # [m/15, (m+1)/15), [14/15, 1]
    gaps = {m: abs(a[index == m].mean() - c[index == m].astype(np.float64).mean()) for m in set(index.tolist())}
    weights = {m: (index == m).mean() for m in gaps}
    assert (c == 1).any() and (c[index == 14] < 1).any()  # the saturated samples share the last bin
    assert errors["mce"] == pytest.approx(max(gaps.values()), rel=1e-12)
    assert errors["rmsce"] == pytest.approx(math.sqrt(sum(weights[m] * gaps[m] ** 2 for m in gaps)), rel=1e-12)
    # The bins of the diagram give the same numbers.
    assert calibration_errors(binned_statistics(confidence, correct)) == pytest.approx(errors, rel=1e-12)


def test_equal_mass_ece_matches_a_float64_loop() -> None:
    logits, target = random_logits(n=500, seed=1)
    confidence, correct = confidences_and_correct(logits, target)
    c, a = confidence.numpy(), correct.numpy()
    order = np.argsort(c, kind="stable")
    expected = sum(abs(a[g].sum() - c[g].astype(np.float64).sum()) for g in np.array_split(order, 15)) / len(c)
    assert binned_calibration_errors(confidence, correct, equal_mass=True)["ece"] == pytest.approx(expected, rel=1e-12)
    bins = binned_statistics(confidence, correct, equal_mass=True)
    assert [b.count for b in bins] == [34] * 5 + [33] * 10


def test_empty_bins_give_nan() -> None:
    empty = torch.zeros(0)
    for equal_mass in (False, True):
        assert all(math.isnan(v) for v in binned_calibration_errors(empty, empty, equal_mass=equal_mass).values())
    assert all(math.isnan(v) for v in calibration_errors([]).values())
    assert np.isnan(errors_from_sums(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)))["mce"]).all()


def test_classwise_ece_matches_a_float64_loop() -> None:
    logits, target = random_logits(n=400, k=5, seed=2)
    expected = reference.classwise_ece(logits.numpy(), target.numpy())
    assert classwise_calibration_error(logits, target) == pytest.approx(expected, rel=1e-6)  # float32 softmaxes


def test_nll_and_brier_match_float64() -> None:
    logits, target = random_logits(n=300, k=6, seed=3)
    probs = reference.softmax64(logits.numpy())
    rows = np.arange(len(target))
    onehot = np.eye(6)[target.numpy()]
    assert float(negative_log_likelihood(logits, target)) == pytest.approx(-np.log(probs[rows, target]).mean(), 1e-5)
    assert float(brier_score(logits, target)) == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-5)


def test_aurc_and_augrc_match_float64_loops_and_ignore_sample_order() -> None:
    logits, target = random_logits(n=300, k=5, seed=4)
    confidence, correct = reference.top1(logits.numpy(), target.numpy())
    assert len(np.unique(confidence)) < len(confidence)  # ties are exercised
    assert aurc(confidence, correct) == pytest.approx(reference.aurc(confidence, correct), rel=1e-12)
    assert augrc(confidence, correct) == pytest.approx(reference.augrc(confidence, correct), rel=1e-12)
    shuffled = np.random.default_rng(0).permutation(len(confidence))
    assert aurc(confidence[shuffled], correct[shuffled]) == pytest.approx(aurc(confidence, correct), rel=1e-12)
    coverage, risk = risk_coverage_curve(confidence, correct)
    assert coverage[-1] == 1.0 and risk[-1] == pytest.approx(1 - correct.mean())
    assert aurc(confidence, correct) == pytest.approx(risk.mean())


def test_ties_count_as_the_mean_over_their_orderings() -> None:
    confidence = np.array([0.9, 0.7, 0.7, 0.7, 0.5, 0.5])
    correct = np.array([1, 0, 1, 1, 0, 1])

    def without_ties(order: tuple[int, ...]) -> tuple[float, float]:
        errors = np.cumsum(1 - correct[list(order)])
        i, n = np.arange(1, len(order) + 1), len(order)
        # AUGRC: trapezoids under E_i / N from (0, 0) (Traub et al. 2024)
        return float(np.mean(errors / i)), float(np.sum((np.r_[0, errors[:-1]] + errors) / 2 / n) / n)

    orderings = [
        (0, *a, *b) for a in itertools.permutations([1, 2, 3]) for b in itertools.permutations([4, 5])
    ]  # every order of the tied samples, the confidences descending
    mean_aurc, mean_augrc = np.mean([without_ties(o) for o in orderings], axis=0)
    assert aurc(confidence, correct) == pytest.approx(mean_aurc, rel=1e-12)
    assert augrc(confidence, correct) == pytest.approx(mean_augrc, rel=1e-12)


def test_a_prediction_is_the_logits_argmax_for_every_measure() -> None:
    """Two logits a float32 rounding apart have equal float32 probabilities, whose argmax is the lower class: the
    calibration errors and the selective risks counted such a sample wrong where accuracy counted it right."""
    from labelsmooth.calibration.metrics import ClassificationMetrics

    logits = torch.tensor([[-0.014973640441894531, -0.014973639510571957, -1.0], [3.0, 0.0, 0.0]])
    target = torch.tensor([1, 0])
    assert logits.softmax(dim=-1).argmax(dim=-1).tolist() == [0, 0] and logits.argmax(dim=-1).tolist() == [1, 0]
    confidence, correct = confidences_and_correct(logits, target)
    assert correct.tolist() == [1.0, 1.0]
    metrics = ClassificationMetrics(num_classes=3)
    metrics.update(logits, target)
    values = {key: float(value) for key, value in metrics.compute().items()}
    assert values["acc"] == 1.0 and values["aurc"] == 0.0 and values["augrc"] == 0.0
    assert values["ece"] == pytest.approx(float((1 - confidence).mean()), abs=1e-7)  # two bins, both all right


def test_selective_inputs_are_checked() -> None:
    assert math.isnan(aurc(np.zeros(0), np.zeros(0))) and math.isnan(augrc(np.zeros(0), np.zeros(0)))
    assert math.isnan(aurc(np.array([0.5, np.nan]), np.array([1, 0])))
    with pytest.raises(ValueError, match="same length"):
        aurc(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="0/1"):
        aurc(np.zeros(2), np.array([0.5, 1.0]))


def test_temperature_keeps_the_ranking_for_two_classes_only() -> None:
    generator = torch.Generator().manual_seed(5)
    logits, target = 3 * torch.randn(400, 2, generator=generator), torch.randint(0, 2, (400,), generator=generator)
    confidence, correct = reference.top1(logits.numpy(), target.numpy())
    for temperature in (0.3, 3.0):  # (saturated confidences would tie at some temperatures only)
        scaled = temperature_scaled_metrics(logits, target, temperature)
        assert scaled["aurc"] == pytest.approx(reference.aurc(confidence, correct), rel=1e-6)
        assert scaled["augrc"] == pytest.approx(reference.augrc(confidence, correct), rel=1e-6)
    many = torch.tensor([[1.0] + [0.0] * 10, [0.5, 0.0] + [-100.0] * 9])
    confidences = [(many / t).softmax(-1).max(-1).values for t in (1.0, 0.2)]
    assert confidences[0][0] < confidences[0][1] and confidences[1][0] > confidences[1][1]


@pytest.mark.parametrize("size", [1, 2, 7, 269, 5000])
def test_smooth_ece_is_relplots_value(size: int) -> None:
    """The authors' relplot is the reference: the same bandwidth search, grid, reflection and sums, to 1e-12
    relative, for confidences spread, crowded near 1 (a small bandwidth: a finer grid), constant, and at 0 and 1."""
    import relplot

    rng = np.random.default_rng(size)
    spread = rng.uniform(0, 1, size)
    crowded = rng.beta(50, 1, size)
    cases = [
        (spread, rng.uniform(size=size) < spread),  # calibrated
        (spread, rng.uniform(size=size) < spread**3),  # overconfident
        (crowded, rng.uniform(size=size) < crowded),  # well calibrated and confident: smECE ~0.01 or less
        (np.full(size, 0.8), rng.uniform(size=size) < 0.6),
        (rng.choice([0.0, 1.0, 0.5], size), rng.uniform(size=size) < 0.5),
    ]
    for confidence, correct in cases:
        reference = float(relplot.smECE(confidence, correct.astype(float)))
        assert smooth_ece(confidence, correct) == pytest.approx(reference, rel=1e-12, abs=1e-15)


def test_smooth_ece_of_constant_confidence_is_the_gap_and_ignores_order() -> None:
    correct = np.r_[np.ones(700), np.zeros(300)]
    assert smooth_ece(np.full(1000, 0.8), correct) == pytest.approx(0.1, abs=1e-3)
    rng = np.random.default_rng(1)
    confidence = rng.uniform(0.3, 1.0, 2000)
    outcome = (rng.uniform(size=2000) < confidence**2).astype(float)
    order = rng.permutation(2000)
    assert smooth_ece(confidence[order], outcome[order]) == pytest.approx(smooth_ece(confidence, outcome), abs=1e-12)
    assert math.isnan(smooth_ece(np.zeros(0), np.zeros(0)))


def test_bins_csv_round_trip(tmp_path: Path) -> None:
    logits, target = random_logits(n=200, seed=6)
    confidence, correct = confidences_and_correct(logits, target)
    rows = {"test": binned_statistics(confidence, correct), "test_ts": binned_statistics(confidence**2, correct)}
    path = tmp_path / "reliability_test.csv"
    path.write_text(bins_csv_text(rows), encoding="utf-8")
    read = read_bins_csv(path)
    assert list(read[0]) == list(BIN_COLUMNS)
    assert bins_by_split(read) == {split: [b.as_dict() for b in bins] for split, bins in rows.items()}
    assert all(isinstance(r["count"], int) for r in read)
    assert calibration_errors(bins_by_split(read)["test"]) == calibration_errors(rows["test"])


def test_bins_csv_reader_names_the_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("split,lower,upper,count\ntest,0,1,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv.*confidence"):
        read_bins_csv(path)
    path.write_text(bins_csv_text({"test": [CalibrationBin(0.0, 0.5, 2, 1.0, 0.4)]}).replace(",2,", ",two,"))
    with pytest.raises(ValueError, match=r"bad\.csv, line 2"):
        read_bins_csv(path)
