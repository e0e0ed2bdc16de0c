"""The calibration losses (focal, FLSD-53, MbLS, LogitNorm, label relaxation, MaxSup) against their formulas
written out here in float64, value and input gradient, plus their refusals, mixing and predictions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from labelsmooth.mixing import BatchMixing
from labelsmooth.module import LabelSmoothingClassifier
from labelsmooth.smoothing import (
    AdaptiveFocalLoss,
    FocalLoss,
    LabelRelaxation,
    LogitNormalization,
    MarginLabelSmoothing,
    MaxSuppression,
    MixableStrategy,
)
from tests.conftest import run_training

EXAMPLES = settings(max_examples=25, deadline=None)


@st.composite
def logits_and_labels(draw, max_k: int = 500):
    """(N, K) float32 logits (scale up to 20, so some rows are near one-hot) and (N,) labels."""
    k = draw(st.integers(2, max_k))
    n = draw(st.integers(1, 8))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 20.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.randn(n, k, generator=generator) * scale, torch.randint(0, k, (n,), generator=generator)


def value_and_grad(loss_fn, logits: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = logits.detach().to(dtype).requires_grad_(True)
    loss = loss_fn(leaf)
    loss.backward()
    return loss.detach().double(), leaf.grad.double()


def check_against_reference(strategy, reference, logits: torch.Tensor, labels: torch.Tensor, scale: float = 1.0):
    """The strategy on float32 logits vs ``reference(z64, labels)`` on float64 logits: loss and input gradient."""
    ours, ours_grad = value_and_grad(lambda z: strategy(z, labels), logits, torch.float32)
    expected, expected_grad = value_and_grad(lambda z: reference(z, labels), logits, torch.float64)
    assert torch.isfinite(ours_grad).all()
    torch.testing.assert_close(ours, expected, rtol=5e-5, atol=5e-5 * scale)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=5e-4, atol=2e-5 * scale)


def one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(labels, k).bool()


def true_probability_and_rest(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``p_y`` and ``1 - p_y`` as the sum of the other probabilities (accurate where ``p_y`` rounds to 1)."""
    p = torch.softmax(z, -1)
    is_label = one_hot(labels, z.shape[-1])
    return p[is_label], p.masked_fill(is_label, 0).sum(-1)


# --- the losses against their formulas -------------------------------------------------------------------------


def focal_reference(gamma: torch.Tensor | float):
    def loss(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p_y, miss = true_probability_and_rest(z, labels)
        return (-(miss**gamma) * torch.log(p_y)).mean()

    return loss


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 6.0))
def test_focal_loss_against_its_formula(data, gamma: float) -> None:
    logits, labels = data
    check_against_reference(FocalLoss(logits.shape[1], gamma), focal_reference(gamma), logits, labels)


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 6.0), st.floats(0.0, 6.0), st.floats(0.0, 1.0))
def test_adaptive_focal_loss_against_its_formula(data, low: float, gamma: float, threshold: float) -> None:
    logits, labels = data

    def reference(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p_y, _ = true_probability_and_rest(z, labels)
        sample_gamma = torch.where(p_y.detach() < threshold, low, gamma)
        return focal_reference(sample_gamma)(z, labels)

    p_y = torch.softmax(logits.double(), -1)[one_hot(labels, logits.shape[1])]
    if ((p_y - threshold).abs() < 1e-5).any():  # float32 and float64 could choose different γ
        return
    check_against_reference(AdaptiveFocalLoss(logits.shape[1], low, gamma, threshold), reference, logits, labels)


def test_adaptive_focal_loss_uses_the_low_confidence_gamma_below_the_threshold() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0], [6.0, 0.0, 0.0, 0.0, 0.0]])  # p_y = 0.2 - 0 and ~0.99
    labels = torch.tensor([0, 0])
    p_y = torch.softmax(logits.double(), -1)[:, 0]
    strategy = AdaptiveFocalLoss(5, gamma_low_confidence=5.0, gamma=3.0, threshold=0.25)
    expected = (-((1 - p_y) ** torch.tensor([5.0, 3.0], dtype=torch.float64)) * p_y.log()).mean()
    torch.testing.assert_close(strategy(logits, labels).double(), expected)
    assert strategy.sample_gamma(p_y.log().float()).tolist() == [5.0, 3.0]


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 20.0), st.floats(0.0, 2.0))
def test_margin_label_smoothing_against_its_formula(data, margin: float, alpha: float) -> None:
    logits, labels = data

    def reference(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distances = z.max(-1, keepdim=True).values - z
        return F.cross_entropy(z, labels) + alpha * torch.clamp(distances - margin, min=0).mean()

    check_against_reference(MarginLabelSmoothing(logits.shape[1], margin, alpha), reference, logits, labels, 1 + alpha)


@EXAMPLES
@given(logits_and_labels(), st.floats(0.01, 2.0))
def test_logit_norm_against_its_formula(data, temperature: float) -> None:
    logits, labels = data

    def reference(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z / (temperature * (z.norm(dim=-1, keepdim=True) + 1e-7)), labels)

    check_against_reference(
        LogitNormalization(logits.shape[1], temperature), reference, logits, labels, 1 / temperature
    )


def relaxation_reference(alpha: float):
    def loss(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        is_label = one_hot(labels, z.shape[-1])
        p = torch.softmax(z, -1)
        with torch.no_grad():
            p_y, rest = true_probability_and_rest(z, labels)
            q = torch.where(is_label, 1 - alpha, alpha * p / rest.unsqueeze(-1))
        divergence = (torch.xlogy(q, q) - q * torch.log(p)).sum(-1)
        return torch.where(p_y >= 1 - alpha, 0.0, divergence).mean()

    return loss


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 0.99))
def test_label_relaxation_against_its_formula(data, alpha: float) -> None:
    logits, labels = data
    p = torch.softmax(logits.double(), -1)
    p_y = p[one_hot(labels, logits.shape[1])]
    if ((p_y - (1 - alpha)).abs() < 1e-5).any():  # on the credal set's border float32 may round either way
        return
    strategy = LabelRelaxation(logits.shape[1], alpha)
    check_against_reference(strategy, relaxation_reference(alpha), logits, labels)
    # The analytic gradient: (p - q)/N on the samples outside the credal set, 0 inside.
    _, grad = value_and_grad(lambda z: strategy(z, labels), logits, torch.float32)
    rest = 1 - p_y
    q = torch.where(one_hot(labels, logits.shape[1]), 1 - alpha, alpha * p / rest.unsqueeze(-1))
    expected = torch.where((p_y < 1 - alpha).unsqueeze(-1), (p - q) / len(labels), 0.0)
    torch.testing.assert_close(grad, expected, rtol=5e-4, atol=2e-5)


def test_label_relaxation_is_zero_inside_the_credal_set() -> None:
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # p_y ≈ 0.965 and 1/3
    strategy = LabelRelaxation(3, alpha=0.1)
    leaf = logits.clone().requires_grad_(True)
    loss = strategy(leaf, torch.tensor([0, 0]))
    loss.backward()
    assert leaf.grad[0].abs().max() == 0 and leaf.grad[1].abs().max() > 0
    torch.testing.assert_close(loss.double(), relaxation_reference(0.1)(logits.double()[1:], torch.tensor([0])) / 2)


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 2.0))
def test_max_suppression_against_its_formula(data, alpha: float) -> None:
    logits, labels = data

    def reference(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z, labels) + alpha * (z.max(-1).values - z.mean(-1)).mean()

    check_against_reference(MaxSuppression(logits.shape[1], alpha), reference, logits, labels, 1 + alpha)


def test_focal_gradient_is_finite_where_the_true_probability_rounds_to_one() -> None:
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    for gamma in (0.0, 0.3, 1.0, 3.0):
        leaf = logits.clone().requires_grad_(True)
        FocalLoss(3, gamma)(leaf, torch.tensor([0, 2])).backward()
        assert torch.isfinite(leaf.grad).all(), gamma
        assert leaf.grad[0].abs().max() == 0, gamma


UNSMOOTHED = [
    FocalLoss(10, 0.0),
    AdaptiveFocalLoss(10, 0.0, 0.0, 0.2),
    MarginLabelSmoothing(10, 10.0, 0.0),
    LabelRelaxation(10, 0.0),
    MaxSuppression(10, 0.0),
]


@pytest.mark.parametrize("strategy", UNSMOOTHED, ids=lambda s: type(s).__name__)
def test_the_declared_unsmoothed_values_are_cross_entropy(strategy) -> None:
    cls = type(strategy)
    assert {name: getattr(strategy, name) for name in cls.unsmoothed} == dict(cls.unsmoothed)
    logits, labels = torch.randn(16, 10) * 4, torch.randint(0, 10, (16,))
    ours, ours_grad = value_and_grad(lambda z: strategy(z, labels), logits, torch.float32)
    expected, expected_grad = value_and_grad(lambda z: F.cross_entropy(z, labels), logits, torch.float32)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=1e-5, atol=1e-7)


def test_logit_norm_declares_no_unsmoothed_value() -> None:
    assert LogitNormalization.unsmoothed == {}
    with pytest.raises(ValueError, match="LogitNormalization declares no unsmoothed value for 'temperature'"):
        LogitNormalization.unsmoothed_value("temperature")


INVALID = [
    (FocalLoss, {"gamma": -0.5}, r"gamma=-0\.5.*\[0, inf\)"),
    (FocalLoss, {"gamma": math.inf}, r"gamma=inf is out of range"),
    (FocalLoss, {"gamma": "3"}, r"gamma='3' must be a number"),
    (AdaptiveFocalLoss, {"gamma_low_confidence": -1.0}, r"gamma_low_confidence=-1\.0.*\[0, inf\)"),
    (AdaptiveFocalLoss, {"gamma": float("nan")}, r"gamma=nan"),
    (AdaptiveFocalLoss, {"threshold": 1.5}, r"threshold=1\.5.*\[0, 1\]"),
    (MarginLabelSmoothing, {"margin": -1.0}, r"margin=-1\.0.*\[0, inf\)"),
    (MarginLabelSmoothing, {"alpha": -0.1}, r"alpha=-0\.1.*\[0, inf\)"),
    (LogitNormalization, {"temperature": 0.0}, r"temperature=0\.0.*\(0, inf\)"),
    (LogitNormalization, {"temperature": -1.0}, r"temperature=-1\.0"),
    (LabelRelaxation, {"alpha": 1.0}, r"alpha=1\.0.*\[0, 1\)"),
    (LabelRelaxation, {"alpha": -0.1}, r"alpha=-0\.1"),
    (MaxSuppression, {"alpha": -2.0}, r"alpha=-2\.0.*\[0, inf\)"),
    (MaxSuppression, {"alpha": math.inf}, r"alpha=inf"),
]


@pytest.mark.parametrize("cls,kwargs,message", INVALID, ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in INVALID])
def test_invalid_parameters_are_refused_by_name(cls, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(10, **kwargs)


# --- mixing -------------------------------------------------------------------------------------------------------

MIXABLE = [
    FocalLoss(7, 2.0),
    AdaptiveFocalLoss(7, 5.0, 3.0, 0.3),
    MarginLabelSmoothing(7, 1.0, 0.3),
    LogitNormalization(7, 0.1),
    MaxSuppression(7, 0.2),
]


def soft_reference(strategy: MixableStrategy, q: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Each loss's soft-target form, written out for a (mixed) target ``q``, in float64."""
    log_p = torch.log_softmax(z, -1)
    cross_entropy = -(q * log_p).sum(-1).mean()
    match strategy:
        case FocalLoss(gamma=g):
            return -(q * (1 - log_p.exp()) ** g * log_p).sum(-1).mean()
        case AdaptiveFocalLoss():
            g = torch.where(log_p.exp() < strategy.threshold, strategy.gamma_low_confidence, strategy.gamma)
            return -(q * (1 - log_p.exp()) ** g * log_p).sum(-1).mean()
        case MarginLabelSmoothing(margin=m, alpha=a):
            return cross_entropy + a * torch.clamp(z.max(-1, keepdim=True).values - z - m, min=0).mean()
        case LogitNormalization(temperature=t):
            normalized = z / (t * (z.norm(dim=-1, keepdim=True) + 1e-7))
            return -(q * torch.log_softmax(normalized, -1)).sum(-1).mean()
        case MaxSuppression(alpha=a):
            return cross_entropy + a * (z.max(-1).values - z.mean(-1)).mean()
    raise AssertionError(strategy)


@pytest.mark.parametrize("strategy", MIXABLE, ids=lambda s: type(s).__name__)
def test_mixed_targets_against_the_soft_target_formula(strategy) -> None:
    generator = torch.Generator().manual_seed(3)
    logits, labels = torch.randn(12, 7, generator=generator) * 3, torch.randint(0, 7, (12,), generator=generator)
    lam = torch.rand(12, 1, generator=generator)
    mixed = lam * F.one_hot(labels, 7) + (1 - lam) * F.one_hot(labels.roll(1), 7)
    ours, ours_grad = value_and_grad(lambda z: strategy.mixed_target_loss(z, mixed.float()), logits, torch.float32)
    expected, expected_grad = value_and_grad(
        lambda z: soft_reference(strategy, mixed.double(), z), logits, torch.float64
    )
    torch.testing.assert_close(ours, expected, rtol=5e-5, atol=5e-5)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=5e-4, atol=2e-5)
    # A one-hot "mixture" is the unmixed loss.
    torch.testing.assert_close(
        strategy.mixed_target_loss(logits, F.one_hot(labels, 7).float()), strategy(logits, labels)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = strategy.mixed_target_loss(logits.bfloat16(), mixed.float())
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, strategy.mixed_target_loss(logits.bfloat16().float(), mixed.float()))


def test_label_relaxation_refuses_mixing() -> None:
    assert not isinstance(LabelRelaxation(10), MixableStrategy)
    with pytest.raises(ValueError, match="LabelRelaxation has no target distribution.*augment=none"):
        LabelSmoothingClassifier(
            net=torch.nn.Flatten(),
            criterion=LabelRelaxation(10),
            optimizer=torch.optim.SGD,
            num_classes=10,
            augment=BatchMixing(10, mixup_alpha=0.2),
        )


def test_focal_trains_with_mixup(tmp_path: Path) -> None:
    summary = run_training(tmp_path, ["smoothing=focal", "augment=mixup", "model=mlp", "trainer.limit_train_batches=2"])
    assert summary["status"] == "completed" and math.isfinite(summary["test/nll"])


# --- LogitNorm's predictions ----------------------------------------------------------------------------------------


def test_logit_norm_normalises_the_loss_alone_and_predicts_from_the_raw_logits() -> None:
    """The authors evaluate calibration and confidence on ``softmax(net(x))`` (their ``common/ood_tools.py``):
    the normalisation belongs to the training loss."""
    strategy = LogitNormalization(10, 0.05)
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(4)) * 3
    assert torch.equal(strategy.prediction_logits(logits), logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = strategy.prediction_logits(logits.bfloat16())
    assert prediction.dtype == torch.float32
    module = LabelSmoothingClassifier(
        net=torch.nn.Identity(), criterion=strategy, optimizer=torch.optim.SGD, num_classes=10
    )
    torch.testing.assert_close(module.prediction_logits(logits), logits)
    normalized = logits / (0.05 * (logits.norm(dim=-1, keepdim=True) + 1e-7))
    torch.testing.assert_close(
        strategy(logits, torch.arange(6)), torch.nn.functional.cross_entropy(normalized, torch.arange(6))
    )
