"""The public API (``labelsmooth.calibration``, ``labelsmooth.smoothing``) on inputs it cannot give a number for:
refused by name, or NaN, never a plausible number."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import labelsmooth.calibration as C
import labelsmooth.smoothing as S
from labelsmooth.calibration.metrics import AdaptiveCalibrationError, BrierScore, NegativeLogLikelihood

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.3, 0.2, 0.1], [-1.0, 0.0, 3.0]])
TARGET = torch.tensor([0, 1, 2, 2])


@pytest.mark.parametrize("metric", [NegativeLogLikelihood, BrierScore])
def test_a_mean_over_no_sample_is_nan(metric) -> None:
    """It was 0.0, a perfect score; the functions and ``ClassificationMetrics`` give NaN."""
    m = metric()
    m.update(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    assert math.isnan(float(m.compute()))


def test_a_nan_logit_makes_the_entropy_nan() -> None:
    """A NaN row added 0 to the mean entropy, which stayed finite beside a NaN NLL and ECE."""
    m = C.ClassificationMetrics(3)
    logits = LOGITS.clone()
    logits[0, 0] = float("nan")
    m.update(logits, TARGET)
    assert math.isnan(float(m.compute()["entropy"]))


def test_confidences_and_correct_refuses_what_it_would_broadcast() -> None:
    with pytest.raises(ValueError, match=r"^confidences_and_correct: target has shape \(4, 1\); expected \(4,\)"):
        C.confidences_and_correct(LOGITS, TARGET[:, None])  # gave a (4, 4) correctness
    with pytest.raises(ValueError, match=r"^confidences_and_correct: target holds class 3; class indices must lie"):
        C.confidences_and_correct(LOGITS, torch.tensor([0, 1, 2, 3]))  # counted as a wrong prediction


@pytest.mark.parametrize(
    ("confidence", "correct", "message"),
    [
        ([2.0, 0.5], [1, 0], r"confidences must lie in \[0, 1\], these reach 2 \(logits or scores"),
        ([0.5, 0.5], [2, 0], "correct must hold booleans or 0/1 values"),
    ],
)
def test_confidences_given_directly_must_be_probabilities(confidence, correct, message) -> None:
    """Logits given as confidences gave an ECE of 2.09, a smooth ECE of 1.5, a reliability bin of accuracy 1.26."""
    with pytest.raises(ValueError, match=f"^binned_calibration_errors: {message}"):
        C.binned_calibration_errors(torch.tensor(confidence), torch.tensor(correct, dtype=torch.float32))
    with pytest.raises(ValueError, match=f"^binned_statistics: {message}"):
        C.binned_statistics(torch.tensor(confidence), torch.tensor(correct, dtype=torch.float32))
    with pytest.raises(ValueError, match=f"^smooth_ece: {message}"):
        C.smooth_ece(np.array(confidence), np.array(correct))
    assert math.isnan(C.binned_calibration_errors(torch.tensor([float("nan")]), torch.tensor([1.0]))["ece"])


@pytest.mark.parametrize("n_bins", [2.5, True, "15", 0])
def test_a_bin_count_that_is_not_a_count_is_refused_by_name(n_bins) -> None:
    """2.5 and "15" were ``TypeError``s from inside torch, True one bin, and the metric took 0 until ``compute``."""
    with pytest.raises(ValueError, match=rf"^n_bins={n_bins!r} must be an integer >= 1"):
        C.expected_calibration_error(LOGITS, TARGET, n_bins=n_bins)
    with pytest.raises(ValueError, match=rf"^n_bins={n_bins!r} must be an integer >= 1"):
        AdaptiveCalibrationError(n_bins=n_bins)


def test_fit_temperature_checks_its_labels_and_claims_no_temperature_for_non_finite_logits() -> None:
    """A label of -100 was dropped (torch's ignore_index), and NaN logits gave T = 0.01 (the search's bound)."""
    with pytest.raises(ValueError, match=r"^fit_temperature: target holds class -100"):
        C.fit_temperature(LOGITS, torch.tensor([0, 1, 2, -100]))
    nan = LOGITS.clone()
    nan[1, 1] = float("nan")
    temperature = C.fit_temperature(nan, TARGET)
    assert math.isnan(temperature)
    assert all(math.isnan(v) for v in C.temperature_scaled_metrics(nan, TARGET, temperature).values())
    with pytest.raises(ValueError, match="temperature must be a positive finite number, got inf"):
        C.temperature_scaled_metrics(LOGITS, TARGET, math.inf)  # the metrics of uniform predictions
    as_tensor = C.temperature_scaled_metrics(LOGITS, TARGET, torch.tensor(1.5))
    assert as_tensor == C.temperature_scaled_metrics(LOGITS, TARGET, 1.5)
    with pytest.raises(ValueError, match=r"^fit_temperature: bounds=\(0, 10\) must be two temperatures"):
        C.fit_temperature(LOGITS, TARGET, bounds=(0, 10))  # math domain error


def test_disturb_label_refuses_a_label_out_of_range_whatever_its_draw() -> None:
    """The draw replaced the label 5 of K = 5 half the time, and the loss then took it."""
    strategy = S.DisturbLabel(5, 0.5)
    for _ in range(8):
        with pytest.raises(IndexError, match="Target 5 is out of bounds"):
            strategy(torch.randn(4, 5), torch.tensor([0, 1, 2, 5]))


def test_distillation_refuses_logits_that_are_not_a_batch() -> None:
    """Of (K,) logits, ``batchmean`` took K for the batch: the KL term was divided by K."""
    loss = S.DistillationLoss(1.0, 1.0)
    with pytest.raises(ValueError, match=r"^the logits must be \(N, K\), got shape \(5,\)"):
        loss(torch.tensor(0.0), torch.tensor([2.0, 0, 0, 0, 0]), torch.tensor([0.0, 2, 0, 0, 0]))


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (S.ConfidencePenalty(3, 0.1), 0.090395),
        (S.SoftBootstrapping(3), 0.138848),
        (S.LabelRelaxation(3, 0.3), S.LabelRelaxation(2, 0.3)),  # the two unmasked classes alone
    ],
)
def test_a_class_masked_by_a_logit_of_minus_infinity_adds_nothing(strategy, expected) -> None:
    """``0 · log 0 = 0``: the loss and its gradient were NaN (and the NaN gradient reached the weights)."""
    logits = torch.tensor([[3.0, 1.0, float("-inf")]], requires_grad=True)
    loss = strategy(logits, torch.tensor([0]))
    loss.backward()
    if isinstance(expected, torch.nn.Module):
        expected = float(expected(logits[:, :2].detach(), torch.tensor([0])))
    assert float(loss) == pytest.approx(expected, rel=1e-5) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("strategy", [S.FocalLoss(3, 2.0), S.AdaptiveFocalLoss(3), S.CrossEntropy(3)])
def test_a_masked_class_adds_nothing_under_mixing(strategy) -> None:
    """A mixed target without weight on a class masked by -inf: the loss is that of the two other classes alone
    (the focal losses gave NaN, 0 · log 0)."""
    logits = torch.tensor([[2.0, 0.5, float("-inf")]], requires_grad=True)
    loss = strategy.mixed_target_loss(logits, torch.tensor([[0.7, 0.3, 0.0]]))
    loss.backward()
    unmasked = type(strategy)(2, *strategy.numeric_parameters().values())
    expected = unmasked.mixed_target_loss(logits[:, :2].detach(), torch.tensor([[0.7, 0.3]]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5) and torch.isfinite(logits.grad).all()


def test_a_strategy_computes_shapes_on_the_meta_device() -> None:
    """Its autocast check raised "unknown device type for autocast" (``F.cross_entropy`` itself runs there)."""
    logits = torch.zeros(4, 5, device="meta")
    assert S.UniformSmoothing(5)(logits, torch.zeros(4, dtype=torch.long, device="meta")).device.type == "meta"


def test_numpy_inputs_to_the_tensor_metrics_are_named_not_an_attribute_error() -> None:
    """NumPy arrays given to a metric of torch tensors failed with "'numpy.ndarray' object has no attribute 'dim'"."""
    with pytest.raises(TypeError, match=r"^expected_calibration_error: logits is a ndarray; expected a torch.Tensor"):
        C.expected_calibration_error(LOGITS.numpy(), TARGET)
    with pytest.raises(TypeError, match=r"^NegativeLogLikelihood: target is a list; expected a torch.Tensor"):
        NegativeLogLikelihood().update(LOGITS, [0, 1, 2, 2])


def test_probabilities_given_for_logits_are_named_by_every_way_into_the_metrics() -> None:
    """The functions warned; the metric classes and temperature_scaled_metrics took them silently (an ECE of 0.05
    instead of 0.30)."""
    probabilities = LOGITS.softmax(-1)
    with pytest.warns(UserWarning, match="^ClassificationMetrics: every row of the logits is non-negative"):
        C.ClassificationMetrics(num_classes=3).update(probabilities, TARGET)
    with pytest.warns(UserWarning, match="^temperature_scaled_metrics: every row of the logits is non-negative"):
        C.temperature_scaled_metrics(probabilities, TARGET, 1.5)
