"""The skeleton strategies against reference formulas written out here."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from labelsmooth.smoothing import (
    BinarySmoothing,
    CrossEntropy,
    GammaSmoothing,
    PriorSmoothing,
    TargetRange,
    UniformSmoothing,
    UsesClassPrior,
)


def reference_loss(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return -(q * torch.log_softmax(logits.double(), dim=-1)).sum(-1).mean()


def batch(n: int = 16, k: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=generator) * 3, torch.randint(0, k, (n,), generator=generator)


@pytest.mark.parametrize("k", [2, 10, 100, 1000])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 0.99])
def test_uniform_equals_torch_label_smoothing(k: int, epsilon: float) -> None:
    logits, target = batch(k=k)
    ours = UniformSmoothing(k, epsilon=epsilon)(logits, target)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, label_smoothing=epsilon))


@pytest.mark.parametrize("k", [2, 10, 1000])
@pytest.mark.parametrize("gamma", [0.6, 0.8, 0.95, 1.0])
def test_gamma_matches_its_target_and_uniform(k: int, gamma: float) -> None:
    logits, target = batch(k=k)
    strategy = GammaSmoothing(k, gamma=gamma)
    q = torch.full((len(target), k), (1 - gamma) / (k - 1), dtype=torch.float64)
    q[torch.arange(len(target)), target] = gamma
    torch.testing.assert_close(strategy(logits, target).double(), reference_loss(logits, q), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(strategy.target_distribution(target).double(), q)
    uniform = UniformSmoothing(k, epsilon=k * (1 - gamma) / (k - 1))
    torch.testing.assert_close(strategy(logits, target), uniform(logits, target))


def test_target_distributions_sum_to_one() -> None:
    _, target = batch(k=7)
    for strategy in (CrossEntropy(7), UniformSmoothing(7, 0.3), GammaSmoothing(7, 0.5)):
        rows = strategy.target_distribution(target).sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))
        logits, _ = batch(k=7)
        torch.testing.assert_close(
            strategy(logits, target).double(),
            reference_loss(logits, strategy.target_distribution(target).double()),
            rtol=1e-5,
            atol=1e-6,
        )


def test_none_is_cross_entropy() -> None:
    logits, target = batch()
    torch.testing.assert_close(CrossEntropy(10)(logits, target), F.cross_entropy(logits, target))


def test_gamma_at_or_below_one_over_k_is_refused_with_k_named() -> None:
    with pytest.raises(ValueError, match=r"gamma=0\.1 .*K=10.*1/K=0\.1"):
        GammaSmoothing(10, gamma=0.1)
    with pytest.raises(ValueError, match="gamma"):
        GammaSmoothing(10, gamma=1.01)
    GammaSmoothing(10, gamma=0.1001)


@pytest.mark.parametrize("epsilon", [-0.01, 1.0, 1.01])
def test_epsilon_out_of_range_is_refused(epsilon: float) -> None:
    with pytest.raises(ValueError, match=r"epsilon=.*\[0, 1\)"):
        UniformSmoothing(10, epsilon=epsilon)


def test_fewer_than_two_classes_is_refused() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        UniformSmoothing(1)


class OutputShapeRecorder(TorchDispatchMode):
    """Records (op name, output shape) of every aten op run under it."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.outputs.append((func.overloadpacket.__name__, tuple(out.shape)))
        return out


@pytest.mark.parametrize(
    "strategy", [UniformSmoothing(100, 0.1), GammaSmoothing(100, 0.9), PriorSmoothing(100, 0.1, prior=[0.01] * 100)]
)
def test_no_dense_target_on_the_hot_path(strategy) -> None:
    """The forward pass allocates exactly one (N, K) tensor: the log-probabilities."""
    logits, target = batch(n=64, k=100)
    with OutputShapeRecorder() as recorder:
        strategy(logits, target)
    dense = [name for name, shape in recorder.outputs if shape == (64, 100) and name not in {"detach", "alias"}]
    assert dense == ["_log_softmax"], recorder.outputs


@pytest.mark.parametrize("strategy", [BinarySmoothing(100, 0.1), TargetRange(100)], ids=lambda s: type(s).__name__)
def test_sigmoid_strategies_build_no_dense_target(strategy) -> None:
    """The only (N, K) tensor is softplus of the logits: the targets enter through reductions."""
    logits, target = batch(n=64, k=100)
    with OutputShapeRecorder() as recorder:
        strategy(logits, target)
    dense = [name for name, shape in recorder.outputs if shape == (64, 100) and name not in {"detach", "alias"}]
    assert dense == ["softplus"], recorder.outputs


@functools.cache
def strategy_configs() -> tuple:
    """Each strategy's config as ``python train.py smoothing=<name>`` composes it (``conf/smoothing/*.yaml``)."""
    from labelsmooth.conf import CONFIG_DIR

    from tests.conftest import compose_train_config

    names = sorted(path.stem for path in (CONFIG_DIR / "smoothing").glob("*.yaml"))
    return tuple(compose_train_config([f"smoothing={name}"]).smoothing for name in names)


def every_strategy(num_classes: int) -> list:
    """One of each strategy, as its config builds it."""
    from hydra.utils import instantiate

    return [instantiate(node, num_classes=num_classes) for node in strategy_configs()]


@pytest.mark.parametrize(
    ("logits_shape", "target", "message"),
    [
        ((6, 4), [0, 1, 2, 3, 4, 0], r"logits have shape \(6, 4\); expected \(N, K\) with K = 5 classes"),
        ((6, 5), [[0], [1], [2], [3], [4], [0]], r"target has shape \(6, 1\)"),
        ((6, 5), [0, 1, 2], r"target has shape \(3,\)"),
        ((6, 5), [0.0, 1.7, 2.0, 3.0, 4.0, 0.0], r"target has dtype torch.float32; expected integer class indices"),
    ],
)
def test_every_strategy_refuses_logits_and_targets_it_would_broadcast(
    logits_shape: tuple, target: list, message: str
) -> None:
    """A wrong number of classes, an (N, 1) column, a target of another length and float "indices" (which a gather
    truncates) gave a number for some strategies, an error for others."""
    logits = torch.randn(logits_shape)
    for strategy in every_strategy(num_classes=5):
        with pytest.raises(ValueError, match=f"^{type(strategy).__name__}: {message}"):
            strategy(logits, torch.tensor(target))


@pytest.mark.parametrize("label", [-100, -1, 5])
def test_every_strategy_refuses_a_label_outside_its_classes(label: int) -> None:
    """torch's cross entropy left a -100 out of the mean (ignore_index) while the other strategies raised: the
    strategies were compared on different samples."""
    logits, target = torch.randn(4, 5), torch.tensor([0, 1, label, 3])
    for strategy in every_strategy(num_classes=5):
        strategy.eval()  # DisturbLabel would redraw the label in training mode
        with pytest.raises((IndexError, RuntimeError, ValueError)):
            strategy(logits, target)
            raise AssertionError(f"{type(strategy).__name__} took the label {label}")


def test_every_strategy_takes_any_integer_type_of_class_indices() -> None:
    logits, target = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    for strategy in every_strategy(num_classes=5):
        if isinstance(strategy, UsesClassPrior):
            strategy.set_class_frequencies(torch.full((5,), 0.2))
        strategy.eval()  # DisturbLabel draws in training mode
        assert torch.equal(strategy(logits, target.int()), strategy(logits, target)), type(strategy).__name__


def test_parameters_take_numpy_numbers_and_name_other_types() -> None:
    """``np.float32(0.8)`` was refused as "not in the range 0.1..1"; ``num_classes=None`` was a raw TypeError."""
    import numpy as np

    assert GammaSmoothing(10, np.float32(0.75)).gamma == 0.75
    with pytest.raises(ValueError, match=r"^smoothing.gamma=tensor\(0.8000\) must be a number, not Tensor\.$"):
        GammaSmoothing(10, torch.tensor(0.8))
    with pytest.raises(ValueError, match=r"^num_classes=None: label smoothing needs an integer number of classes"):
        GammaSmoothing(None, 0.8)
