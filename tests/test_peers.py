"""The strategies and metrics against the peers' own implementations, where a peer implements the same quantity:
timm's losses and MixUp targets, and torch-uncertainty's losses and calibration and selective-classification
metrics. The strategies compute in float32, so the agreement asked is float32's (relative 1e-6 on values, 1e-5 on
gradients); where a peer's convention differs, the test states the relation (a sum over outputs against a mean, a
constant, torch-uncertainty's AURC over the coverages 1/N … 1).

torch-uncertainty imports Lightning's ``lightning`` package (~4 s), so it is imported inside the two tests that use
it, not when the suite is collected."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import labelsmooth.smoothing as ls
from labelsmooth.calibration.binning import binned_calibration_errors, confidences_and_correct
from labelsmooth.calibration.classwise import classwise_calibration_error
from labelsmooth.calibration.scores import brier_score
from labelsmooth.calibration.selective import augrc, aurc, cumulative_errors, risk_coverage_curve
from labelsmooth.calibration.smooth import smooth_ece

K = 10


def example(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 logits of a network that is sometimes right and sometimes over- or under-confident (so bins differ
    in the sign of accuracy − confidence, and the binned errors depend on the binning), with distinct confidences."""
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, K, (n,), generator=generator)
    logits = torch.randn(n, K, generator=generator, dtype=torch.float64) * torch.linspace(0.3, 3, n).unsqueeze(-1)
    logits[torch.arange(n), target] += 4 * torch.rand(n, generator=generator, dtype=torch.float64)
    return logits, target


def equal(ours: torch.Tensor | float, theirs: torch.Tensor | float, rtol: float = 1e-6) -> None:
    assert float(ours) == pytest.approx(float(theirs), rel=rtol, abs=1e-9)


def assert_same_loss(ours, our_target, theirs, their_target, logits: torch.Tensor, scale=1.0, shift=0.0) -> None:
    """``ours(z, our_target) + shift`` equals ``scale · theirs(z, their_target)`` in value and in gradient with
    respect to the logits ``z``."""
    values, gradients = [], []
    for loss in (lambda z: ours(z, our_target) + shift, lambda z: scale * theirs(z, their_target)):
        leaf = logits.detach().clone().requires_grad_(True)
        value = loss(leaf)
        value.backward()
        values.append(value.detach())
        gradients.append(leaf.grad)
    equal(values[0], values[1])
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-5, atol=1e-8)


def test_the_strategies_equal_the_losses_of_timm_and_torch_uncertainty() -> None:
    from timm.data.mixup import mixup_target
    from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    from torch_uncertainty.losses import BCEWithLogitsLSLoss, ConfidencePenaltyLoss, CrossEntropyMaxSupLoss, FocalLoss

    logits, target = example()
    one_hot = F.one_hot(target, K)
    for epsilon in (0.05, 0.1, 0.3):
        # Szegedy's uniform smoothing is timm's LabelSmoothingCrossEntropy; Mezzini's γ is it at ε = (1 - γ)·K/(K - 1)
        timm_smoothed = LabelSmoothingCrossEntropy(smoothing=epsilon)
        assert_same_loss(ls.UniformSmoothing(K, epsilon), target, timm_smoothed, target, logits)
        gamma = 1 - epsilon * (K - 1) / K
        assert_same_loss(ls.GammaSmoothing(K, gamma), target, timm_smoothed, target, logits)
        # Under MixUp, smoothing the mixed target is timm's mixup_target with its smoothing (SoftTargetCrossEntropy)
        mixed, timm_mixed = mixup_target(target, K, 0.7, smoothing=0.0), mixup_target(target, K, 0.7, smoothing=epsilon)
        uniform = ls.UniformSmoothing(K, epsilon)
        assert_same_loss(uniform.mixed_target_loss, mixed, SoftTargetCrossEntropy(), timm_mixed, logits)
        # Sigmoid heads: the loss here sums the K outputs' BCE where timm and torch-uncertainty average them.
        binary, timm_bce = ls.BinarySmoothing(K, epsilon), BinaryCrossEntropy(smoothing=epsilon)
        assert_same_loss(binary, target, timm_bce, target, logits, scale=K)
        keras, tu_bce = ls.BinarySmoothing(K, epsilon, convention="keras"), BCEWithLogitsLSLoss(label_smoothing=epsilon)
        assert_same_loss(keras, target, tu_bce, one_hot, logits, scale=K)
    for gamma in (1.0, 3.0):
        assert_same_loss(ls.FocalLoss(K, gamma), target, FocalLoss(gamma=gamma), target, logits)
    for weight in (0.1, 1.0):
        # torch-uncertainty adds the constant β·log K (its penalty is >= 0); its ε inside the logarithm is set to 0
        penalty = ConfidencePenaltyLoss(reg_weight=weight, eps=0.0)
        ours = ls.ConfidencePenalty(K, weight)
        assert_same_loss(ours, target, penalty, target, logits, shift=weight * math.log(K))
        max_sup = CrossEntropyMaxSupLoss(max_sup=weight)
        assert_same_loss(ls.MaxSuppression(K, weight), target, max_sup, target, logits)


def test_the_metrics_equal_torch_uncertainty() -> None:
    from torch_uncertainty import metrics as tu

    def theirs(metric, probs: torch.Tensor, target: torch.Tensor) -> float:
        metric.update(probs, target)
        return float(metric.compute())

    logits, target = example(n=500, seed=1)
    probs = logits.softmax(-1)
    confidence, correct = confidences_and_correct(logits.log_softmax(-1), target)
    assert len(torch.unique(confidence)) == len(confidence)  # no ties: torch-uncertainty splits them by input order
    for n_bins in (10, 15):
        errors = binned_calibration_errors(confidence, correct, n_bins)
        for norm, key in (("l1", "ece"), ("l2", "rmsce"), ("max", "mce")):
            ece = tu.CalibrationError(task="multiclass", num_classes=K, num_bins=n_bins, norm=norm)
            equal(errors[key], theirs(ece, probs, target))
        adaptive = tu.AdaptiveCalibrationError(task="multiclass", num_classes=K, num_bins=n_bins)
        equal(
            binned_calibration_errors(confidence, correct, n_bins, equal_mass=True)["ece"],
            theirs(adaptive, probs, target),
        )
        classwise = tu.ClasswiseCalibrationError(num_classes=K, num_bins=n_bins)
        equal(classwise_calibration_error(logits, target, n_bins), theirs(classwise, probs, target))
    assert binned_calibration_errors(confidence, correct, 10)["ece"] != pytest.approx(
        binned_calibration_errors(confidence, correct, 15)["ece"], rel=1e-3
    )  # the binning matters for these logits
    equal(brier_score(logits, target), theirs(tu.BrierScore(num_classes=K), probs, target))

    # AURC and AUGRC: torch-uncertainty takes the trapezoids over the coverages 1/N … 1 and divides by 1 - 1/N.
    confidence_np, correct_np = confidence.numpy().astype(np.float64), correct.numpy().astype(np.float64)
    n = len(confidence_np)
    _, risk = risk_coverage_curve(confidence_np, correct_np)
    errors = cumulative_errors(confidence_np, correct_np)
    equal((risk.sum() - (risk[0] + risk[-1]) / 2) / (n - 1), theirs(tu.AURC(), probs, target))
    equal((errors.sum() - (errors[0] + errors[-1]) / 2) / (n * (n - 1)), theirs(tu.AUGRC(), probs, target))
    assert aurc(confidence_np, correct_np) == pytest.approx(theirs(tu.AURC(), probs, target), rel=2 / n)
    assert augrc(confidence_np, correct_np) == pytest.approx(theirs(tu.AUGRC(), probs, target), rel=2 / n)

    # smECE: this project's is relplot's (tests/test_formulas.py); torch-uncertainty's has its own bandwidth search.
    ours_smooth = smooth_ece(confidence_np, correct_np)
    assert ours_smooth == pytest.approx(theirs(tu.SmoothCalibrationError(), probs.float(), target), rel=1e-2)
