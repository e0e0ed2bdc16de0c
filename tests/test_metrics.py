"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy

from labelsmooth.calibration.binning import binned_statistics, confidences_and_correct
from labelsmooth.calibration.bins import calibration_errors
from labelsmooth.calibration.metrics import (
    AdaptiveCalibrationError,
    BrierScore,
    NegativeLogLikelihood,
    classification_metrics,
)
from tests import reference_metrics as reference


def test_nll_and_brier_match_their_formulas() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.4, 0.3]])
    target = torch.tensor([0, 1, 2])
    logits = probs.log()
    nll, brier = NegativeLogLikelihood(), BrierScore()
    nll.update(logits[:2], target[:2])
    nll.update(logits[2:], target[2:])
    brier.update(logits, target)
    expected_nll = -(math.log(0.7) + math.log(0.1) + math.log(0.3)) / 3
    expected_brier = ((0.09 + 0.04 + 0.01) + (0.01 + 0.81 + 0.64) + (0.09 + 0.16 + 0.49)) / 3
    assert math.isclose(nll.compute().item(), expected_nll, rel_tol=1e-5)
    assert math.isclose(brier.compute().item(), expected_brier, rel_tol=1e-5)


def test_ece_and_mce_on_a_hand_computed_example() -> None:
    # Confidences 0.9 (correct), 0.9 (wrong), 0.6 (correct), 0.6 (correct) in 15 equal-width bins:
    # bin of 0.9: accuracy 0.5, confidence 0.9, weight 1/2; bin of 0.6: accuracy 1, confidence 0.6, weight 1/2.
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    target = torch.tensor([0, 1, 0, 1])
    metrics = classification_metrics(2, prefix="val/")
    metrics.update(probs.log(), target)
    values = {k: v.item() for k, v in metrics.compute().items()}
    assert math.isclose(values["val/acc"], 0.75)
    assert math.isclose(values["val/ece"], 0.5 * 0.4 + 0.5 * 0.4, rel_tol=1e-5)
    assert math.isclose(values["val/mce"], 0.4, rel_tol=1e-5)


def test_logits_inside_unit_interval_are_not_taken_for_probabilities() -> None:
    logits = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    target = torch.tensor([0, 1])
    metrics = classification_metrics(2, prefix="test/")
    metrics.update(logits, target)
    confidence = logits.softmax(-1).max(-1).values.mean().item()  # both correct: ECE = 1 - mean confidence
    assert math.isclose(metrics.compute()["test/ece"].item(), 1 - confidence, rel_tol=1e-5)


def test_collection_has_the_calibration_metrics_on_a_hand_computed_example() -> None:
    # Top-1 confidences 0.9 (correct), 0.81 (wrong), 0.61 (correct), 0.55 (correct), sent in two batches.
    probs = torch.tensor([[0.9, 0.1], [0.81, 0.19], [0.39, 0.61], [0.55, 0.45]])
    target = torch.tensor([0, 1, 1, 0])
    metrics = classification_metrics(2, prefix="test/")
    metrics.update(probs[:3].log(), target[:3])
    metrics.update(probs[3:].log(), target[3:])
    values = {k: v.item() for k, v in metrics.compute().items()}
    gaps = [0.1, 0.81, 0.39, 0.45]  # one sample per bin with 15 bins, equal-width or equal-mass
    assert math.isclose(values["test/ece"], sum(gaps) / 4, rel_tol=1e-5)
    assert math.isclose(values["test/ace"], sum(gaps) / 4, rel_tol=1e-5)
    assert math.isclose(values["test/rmsce"], math.sqrt(sum(g * g for g in gaps) / 4), rel_tol=1e-5)
    assert math.isclose(values["test/confidence"], (0.9 + 0.81 + 0.61 + 0.55) / 4, rel_tol=1e-5)
    entropy = -sum(p * math.log(p) for row in probs.tolist() for p in row) / 4
    assert math.isclose(values["test/entropy"], entropy, rel_tol=1e-5)


def test_adaptive_ece_uses_equal_mass_bins() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.81, 0.19], [0.39, 0.61], [0.55, 0.45]])
    target = torch.tensor([0, 1, 1, 0])
    ace = AdaptiveCalibrationError(n_bins=2)
    ace.update(probs.log(), target)
    # {0.55, 0.61}: accuracy 1, confidence 0.58; {0.81, 0.9}: accuracy 0.5, confidence 0.855.
    assert math.isclose(ace.compute().item(), 0.5 * 0.42 + 0.5 * 0.355, rel_tol=1e-5)


def histogram_calibration_errors(confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 15) -> dict:
    """ECE, MCE and RMSCE over ``np.histogram``'s bins of [0, 1] (``[m/M, (m+1)/M)``, the last closed at 1:
    netcal's binning, and torchmetrics' but for its extra bin of exactly 1)."""
    c, a = confidence.numpy().astype(np.float64), correct.numpy().astype(np.float64)
    count, outcome_sum, confidence_sum = (
        np.histogram(c, bins=n_bins, range=(0.0, 1.0), weights=w)[0] for w in (None, a, c)
    )
    occupied = count > 0
    gap = np.abs(outcome_sum - confidence_sum)[occupied] / count[occupied]
    return {
        "ece": float((count[occupied] * gap).sum() / len(c)),
        "mce": float(gap.max()),
        "rmsce": float(np.sqrt((count[occupied] * gap**2).sum() / len(c))),
    }


def separate_metrics(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """The nine metrics one at a time, as before they shared a softmax: torchmetrics' accuracy, the binned
    calibration errors over ``np.histogram``'s bins, the NLL, Brier score, confidence and entropy formulas,
    ``binned_statistics`` for the ACE."""
    probs = logits.softmax(-1)
    confidence, correct = confidences_and_correct(logits, target)
    return {
        "acc": multiclass_accuracy(logits, target, num_classes, average="micro").item(),
        "nll": F.cross_entropy(logits, target).item(),
        **histogram_calibration_errors(confidence, correct),
        "brier": (probs - F.one_hot(target, num_classes)).square().sum(-1).mean().item(),
        "ace": calibration_errors(binned_statistics(confidence, correct, 15, equal_mass=True))["ece"],
        "confidence": confidence.mean().item(),
        "entropy": -(probs * logits.log_softmax(-1)).sum(-1).mean().item(),
        **new_metrics(logits.numpy(), target.numpy()),
    }


def new_metrics(logits: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Class-wise ECE, smooth ECE, AURC and AUGRC by the independent float64 code of ``tests.reference_metrics``
    (smooth ECE: relplot, the reference implementation, on the float64 confidences)."""
    import relplot

    confidence, correct = reference.top1(logits, target)
    return {
        "classwise_ece": reference.classwise_ece(logits, target),
        "smooth_ece": float(relplot.smECE(confidence, correct)),
        "aurc": reference.aurc(confidence, correct),
        "augrc": reference.augrc(confidence, correct),
    }


def test_one_softmax_for_all_nine_gives_the_values_of_the_separate_metrics() -> None:
    generator = torch.Generator().manual_seed(0)
    k = 10
    logits = torch.randn(1000, k, generator=generator) * torch.linspace(0.1, 8, 1000).unsqueeze(-1)
    logits[:20, 0] = 60.0  # confidence exactly 1.0 in float32: in the last bin (not torchmetrics' extra one)
    target = torch.randint(0, k, (1000,), generator=generator)
    metrics = classification_metrics(k, prefix="val/")
    for part in range(4):  # several batches
        metrics.update(logits[part * 250 : (part + 1) * 250], target[part * 250 : (part + 1) * 250])
    values = {name.removeprefix("val/"): value.item() for name, value in metrics.compute().items()}
    expected = separate_metrics(logits, target, k)
    assert list(values) == sorted(expected)
    for name, value in expected.items():
        assert math.isclose(values[name], value, rel_tol=1e-5, abs_tol=1e-6), (name, values[name], value)


def test_states_merged_as_across_processes_give_the_whole_sets_values() -> None:
    """DDP reduction: sums are summed and the per-sample confidences concatenated (``merge_state`` applies each
    state's ``dist_reduce_fx`` as the synchronisation across processes does)."""
    generator = torch.Generator().manual_seed(1)
    logits, target = torch.randn(300, 5, generator=generator) * 3, torch.randint(0, 5, (300,), generator=generator)
    whole, first, second = (classification_metrics(5, prefix="test/") for _ in range(3))
    whole.update(logits, target)
    first.update(logits[:170], target[:170])
    second.update(logits[170:], target[170:])
    first.merge_state(second)
    merged, expected = first.compute(), whole.compute()
    for name, value in expected.items():
        assert math.isclose(merged[name].item(), value.item(), rel_tol=1e-6), name
