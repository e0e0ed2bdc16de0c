"""Every smoothing strategy against a reference formula written out here, in float64, over random logits."""

from __future__ import annotations

import copy
import math

import hydra
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from labelsmooth.cli.build import CONFIG_DIR
from labelsmooth.cli.train import unsmoothed_parameters
from labelsmooth.smoothing import (
    BinarySmoothing,
    ConfidencePenalty,
    CrossEntropy,
    DisturbLabel,
    GammaSmoothing,
    HardBootstrapping,
    KLUniformRegularizer,
    OnlineLabelSmoothing,
    PriorSmoothing,
    RealParameter,
    SchedulableParameters,
    SmoothingStrategy,
    SoftBootstrapping,
    TargetDistributionStrategy,
    TargetRange,
    UniformSmoothing,
    UsesClassPrior,
)
from tests.conftest import compose_train_config, run_training

EXAMPLES = settings(max_examples=20, deadline=None)


@st.composite
def logits_and_labels(draw, min_k: int = 2, max_k: int = 1000):
    """(N, K) float32 logits (scale up to 20, so some rows are near one-hot) and (N,) labels."""
    k = draw(st.integers(min_k, max_k))
    n = draw(st.integers(1, 8))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 20.0]))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = torch.randn(n, k, generator=generator) * scale
    return logits, torch.randint(0, k, (n,), generator=generator)


def onehot(labels: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(labels, k).double()


def cross_entropy_against(q: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    return -(q * torch.log_softmax(logits.double(), dim=-1)).sum(-1).mean()


def close(actual: torch.Tensor, expected: torch.Tensor, scale: float = 1.0) -> None:
    torch.testing.assert_close(actual.double(), expected.double(), rtol=2e-5, atol=2e-5 * scale)


def grad_of(loss_fn, logits: torch.Tensor) -> torch.Tensor:
    leaf = logits.detach().clone().requires_grad_(True)
    loss_fn(leaf).backward()
    return leaf.grad


# --- fixed-target strategies -------------------------------------------------------------------------------------


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 1.0, exclude_max=True))
def test_uniform_equals_torch_label_smoothing(data, epsilon: float) -> None:
    logits, labels = data
    ours = UniformSmoothing(logits.shape[1], epsilon)
    close(ours(logits, labels), F.cross_entropy(logits.double(), labels, label_smoothing=epsilon))
    close(
        grad_of(lambda z: ours(z, labels), logits),
        grad_of(lambda z: F.cross_entropy(z, labels, label_smoothing=epsilon), logits),
    )


@EXAMPLES
@given(logits_and_labels(), st.floats(0.01, 1.0))
def test_gamma_is_uniform_with_the_equivalent_epsilon(data, fraction: float) -> None:
    logits, labels = data
    k = logits.shape[1]
    gamma = 1.0 / k + fraction * (1.0 - 1.0 / k)
    strategy, uniform = GammaSmoothing(k, gamma), UniformSmoothing(k, k * (1 - gamma) / (k - 1))
    q = torch.full((len(labels), k), (1 - gamma) / (k - 1), dtype=torch.float64)
    q[torch.arange(len(labels)), labels] = gamma
    close(strategy(logits, labels), cross_entropy_against(q, logits))
    close(strategy(logits, labels), uniform(logits, labels))
    close(grad_of(lambda z: strategy(z, labels), logits), grad_of(lambda z: uniform(z, labels), logits))


@EXAMPLES
@given(logits_and_labels(max_k=300), st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 1000))
def test_prior_smoothing_against_its_formula(data, epsilon: float, seed: int) -> None:
    logits, labels = data
    k = logits.shape[1]
    prior = torch.rand(k, generator=torch.Generator().manual_seed(seed)).double()
    prior /= prior.sum()
    strategy = PriorSmoothing(k, epsilon, prior=prior.tolist())
    q = (1 - epsilon) * onehot(labels, k) + epsilon * prior
    close(strategy(logits, labels), cross_entropy_against(q, logits))
    close(strategy.target_distribution(labels), q)


def test_prior_defaults_to_the_class_frequencies_and_a_given_prior_wins() -> None:
    frequencies = torch.tensor([0.5, 0.3, 0.2])
    strategy = PriorSmoothing(3, 0.3)
    strategy.set_class_frequencies(frequencies)
    torch.testing.assert_close(strategy.target_distribution(torch.tensor([1]))[0], torch.tensor([0.15, 0.79, 0.06]))
    given_prior = PriorSmoothing(3, 0.3, prior=[0.2, 0.2, 0.6])
    given_prior.set_class_frequencies(frequencies)
    torch.testing.assert_close(given_prior.prior, torch.tensor([0.2, 0.2, 0.6]))
    restored = PriorSmoothing(3, 0.3)
    restored.load_state_dict(strategy.state_dict())
    torch.testing.assert_close(restored.prior, frequencies)
    with pytest.warns(UserWarning, match="set_class_frequencies"):
        PriorSmoothing(3)(torch.randn(2, 3), torch.tensor([0, 1]))


# --- sigmoid heads -----------------------------------------------------------------------------------------------


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 1.0), st.sampled_from(["uniform", "keras"]))
def test_binary_smoothing_against_bce(data, epsilon: float, convention: str) -> None:
    logits, labels = data
    k = logits.shape[1]
    y = onehot(labels, k)
    t = y * (1 - epsilon) + (0.5 * epsilon if convention == "keras" else epsilon / k)
    expected = F.binary_cross_entropy_with_logits(logits.double(), t, reduction="none").sum(-1).mean()
    strategy = BinarySmoothing(k, epsilon, convention=convention)
    close(strategy(logits, labels), expected, scale=k)
    close(strategy.sigmoid_targets(labels), t)


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 0.49), st.floats(0.51, 1.0))
def test_target_range_against_bce(data, low: float, high: float) -> None:
    logits, labels = data
    k = logits.shape[1]
    t = torch.full((len(labels), k), low, dtype=torch.float64)
    t[torch.arange(len(labels)), labels] = high
    expected = F.binary_cross_entropy_with_logits(logits.double(), t, reduction="none").sum(-1).mean()
    strategy = TargetRange(k, low, high)
    close(strategy(logits, labels), expected, scale=k)
    close(
        grad_of(lambda z: strategy(z, labels), logits),
        grad_of(lambda z: F.binary_cross_entropy_with_logits(z, t.float(), reduction="none").sum(-1).mean(), logits),
    )


@EXAMPLES
@given(
    logits_and_labels(max_k=50),
    st.floats(0.0, 1.0),
    st.sampled_from(["uniform", "keras"]),
    st.sampled_from(["multi_hot", "soft"]),
    st.integers(0, 2**31 - 1),
)
def test_binary_smoothing_multi_label_against_bce(data, epsilon: float, convention: str, kind: str, seed: int) -> None:
    """An (N, K) multi-hot or soft target ``h``: each output's target is ``off + (on - off)·h_k``, smoothed once."""
    logits, _ = data
    n, k = logits.shape
    generator = torch.Generator().manual_seed(seed)
    h = torch.rand(n, k, generator=generator, dtype=torch.float64)
    h = (h < 0.3).double() if kind == "multi_hot" else h
    off = 0.5 * epsilon if convention == "keras" else epsilon / k
    on = 1 - epsilon + off
    t = off + (on - off) * h

    def reference(z: torch.Tensor) -> torch.Tensor:  # mean over samples of Σ_k -[t log σ(z) + (1-t) log(1-σ(z))]
        return -(t * F.logsigmoid(z.double()) + (1 - t) * F.logsigmoid(-z.double())).sum(-1).mean()

    strategy = BinarySmoothing(k, epsilon, convention=convention)
    target = h.bool() if kind == "multi_hot" else h.float()
    close(strategy(logits, target), reference(logits), scale=k)
    close(strategy(logits, target), strategy.mixed_target_loss(logits, h.float()), scale=k)
    close(grad_of(lambda z: strategy(z, target), logits), grad_of(reference, logits))


@EXAMPLES
@given(logits_and_labels(max_k=50), st.floats(0.0, 0.49), st.floats(0.51, 1.0), st.integers(0, 2**31 - 1))
def test_target_range_multi_hot_against_bce(data, low: float, high: float, seed: int) -> None:
    logits, _ = data
    h = (torch.rand(logits.shape, generator=torch.Generator().manual_seed(seed)) < 0.3).long()
    t = torch.where(h.bool(), high, low).double()
    expected = -(t * F.logsigmoid(logits.double()) + (1 - t) * F.logsigmoid(-logits.double())).sum(-1).mean()
    close(TargetRange(logits.shape[1], low, high)(logits, h), expected, scale=logits.shape[1])


@EXAMPLES
@given(logits_and_labels(max_k=50), st.sampled_from([BinarySmoothing, TargetRange]))
def test_sigmoid_heads_class_indices_equal_their_one_hot_target(data, cls) -> None:
    """Indices (N,) and the same labels as an (N, K) one-hot target give the same loss: neither smooths twice."""
    logits, labels = data
    strategy = cls(logits.shape[1])
    close(strategy(logits, labels), strategy(logits, F.one_hot(labels, logits.shape[1])), scale=logits.shape[1])


@pytest.mark.parametrize("cls", [BinarySmoothing, TargetRange])
@pytest.mark.parametrize(
    "logits_shape,target_shape",
    [((4, 5), (4, 1)), ((4, 5), (4, 6)), ((4, 5), (3,)), ((4, 5), (4, 5, 1)), ((4, 5), ()), ((5,), (5,))],
)
def test_sigmoid_heads_refuse_other_target_shapes(cls, logits_shape: tuple, target_shape: tuple) -> None:
    strategy = cls(5)
    target = torch.zeros(target_shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"target has shape .*expected logits \(N, K\) with class indices \(N,\)"):
        strategy(torch.randn(logits_shape), target)


@EXAMPLES
@given(logits_and_labels(), st.sampled_from([BinarySmoothing, TargetRange]))
def test_sigmoid_heads_predict_the_normalised_one_vs_rest_probabilities(data, cls) -> None:
    """``softmax(prediction_logits(z)) = σ(z) / Σ_j σ(z_j)``, with the argmax of ``z``."""
    logits, _ = data
    prediction = cls(logits.shape[1]).prediction_logits(logits)
    assert prediction.dtype == torch.float32 and prediction.shape == logits.shape
    sigmoid = torch.sigmoid(logits.double())
    close(prediction.softmax(-1), sigmoid / sigmoid.sum(-1, keepdim=True))
    assert torch.equal(prediction.argmax(-1), logits.argmax(-1))


def test_sigmoid_prediction_logits_stay_exact_when_every_output_is_near_zero() -> None:
    logits = torch.tensor([[-200.0, -201.0, -205.0]])
    expected = torch.softmax(torch.tensor([[0.0, -1.0, -5.0]], dtype=torch.float64), -1)  # σ(z) ≈ e^z here
    close(TargetRange(3).prediction_logits(logits).softmax(-1), expected)


# --- regularizers -------------------------------------------------------------------------------------------------


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 5.0))
def test_kl_uniform_is_scaled_uniform_smoothing_plus_a_constant(data, beta: float) -> None:
    logits, labels = data
    k = logits.shape[1]
    strategy = KLUniformRegularizer(k, beta)
    log_p = torch.log_softmax(logits.double(), -1)
    kl_u_p = F.kl_div(log_p, torch.full_like(log_p, 1 / k), reduction="none").sum(-1)  # Σ u (log u - log p)
    close(strategy(logits, labels), F.cross_entropy(logits.double(), labels) + beta * kl_u_p.mean(), scale=1 + beta)
    uniform = UniformSmoothing(k, beta / (1 + beta))
    close(strategy(logits, labels), (1 + beta) * uniform(logits, labels) - beta * math.log(k), scale=(1 + beta) * 10)
    close(
        grad_of(lambda z: strategy(z, labels), logits),
        grad_of(lambda z: (1 + beta) * uniform(z, labels), logits),
        scale=1 + beta,
    )


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 5.0))
def test_confidence_penalty_against_its_formula(data, beta: float) -> None:
    logits, labels = data
    strategy = ConfidencePenalty(logits.shape[1], beta)

    def reference(z: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z, labels) - beta * torch.distributions.Categorical(logits=z).entropy().mean()

    close(strategy(logits, labels), reference(logits.double()), scale=1 + beta * 10)
    close(grad_of(lambda z: strategy(z, labels), logits), grad_of(reference, logits.double()), scale=1 + beta)


# --- bootstrapping ------------------------------------------------------------------------------------------------


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 1.0))
def test_soft_bootstrap_against_its_formula_and_gradients(data, beta: float) -> None:
    logits, labels = data
    k = logits.shape[1]
    p = torch.softmax(logits.double(), -1)
    q = beta * onehot(labels, k) + (1 - beta) * p
    detached, attached = SoftBootstrapping(k, beta, detach_prediction=True), SoftBootstrapping(k, beta)  # the paper's
    close(detached(logits, labels), cross_entropy_against(q, logits))
    close(attached(logits, labels), cross_entropy_against(q, logits))
    # Detached: the gradient of a cross entropy against a fixed q, (p - q)/N.
    close(grad_of(lambda z: detached(z, labels), logits), (p - q) / len(labels))

    # Attached: the loss is β·CE + (1-β)·H(p), entropy minimization included.
    def attached_reference(z: torch.Tensor) -> torch.Tensor:
        entropy = torch.distributions.Categorical(logits=z).entropy().mean()
        return beta * F.cross_entropy(z, labels) + (1 - beta) * entropy

    close(grad_of(lambda z: attached(z, labels), logits), grad_of(attached_reference, logits.double()))


@EXAMPLES
@given(logits_and_labels(), st.floats(0.0, 1.0))
def test_hard_bootstrap_against_its_formula(data, beta: float) -> None:
    logits, labels = data
    k = logits.shape[1]
    q = beta * onehot(labels, k) + (1 - beta) * onehot(logits.argmax(-1), k)
    strategy = HardBootstrapping(k, beta)
    close(strategy(logits, labels), cross_entropy_against(q, logits))
    close(strategy.target_distribution(labels, logits=logits), q)
    close(grad_of(lambda z: strategy(z, labels), logits), (torch.softmax(logits.double(), -1) - q) / len(labels))


# --- DisturbLabel -------------------------------------------------------------------------------------------------


@EXAMPLES
@given(logits_and_labels(max_k=50), st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_disturb_label_against_its_formula(data, alpha: float, seed: int) -> None:
    logits, labels = data
    k = logits.shape[1]
    strategy = DisturbLabel(k, alpha, seed=seed)
    generator = torch.Generator().manual_seed((seed * 6364136223846793005) % 2**63)  # rank 0, first draw
    replace = torch.rand(len(labels), generator=generator) < alpha
    disturbed = torch.where(replace, torch.randint(0, k, (len(labels),), generator=generator), labels)
    close(strategy(logits, labels), F.cross_entropy(logits.double(), disturbed))
    strategy.eval()
    close(strategy(logits, labels), F.cross_entropy(logits.double(), labels))


def test_disturb_label_rate_reproducibility_and_checkpointed_generator() -> None:
    k, alpha = 10, 0.3
    labels = torch.zeros(20000, dtype=torch.long)
    changed = (DisturbLabel(k, alpha, seed=1).disturb(labels) != labels).float().mean().item()
    assert changed == pytest.approx(alpha * (k - 1) / k, abs=0.015)
    first, same_seed, other_seed = (
        DisturbLabel(k, alpha, seed=1),
        DisturbLabel(k, alpha, seed=1),
        DisturbLabel(k, alpha, seed=2),
    )
    batch = torch.arange(64) % k
    assert torch.equal(first.disturb(batch), same_seed.disturb(batch))
    assert not torch.equal(first.disturb(batch), other_seed.disturb(batch))
    resumed = DisturbLabel(k, alpha, seed=1)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed.disturb(batch), first.disturb(batch))
    assert not torch.equal(DisturbLabel(k, alpha, seed=1).disturb(batch), first.disturb(batch))  # a later draw
    seeds = {DisturbLabel.draw_seed(0, rank, draw) for rank in range(8) for draw in range(1000)}
    assert len(seeds) == 8000  # every process and batch gets its own stream


# --- online label smoothing ---------------------------------------------------------------------------------------


def online_reference_targets(batches, k: int) -> torch.Tensor:
    """Row c: the mean softmax over the correctly classified samples of class c (1/K when there are none: a
    choice here, where the authors' CIFAR code leaves the row at zero)."""
    targets = torch.full((k, k), 1 / k, dtype=torch.float64)
    logits = torch.cat([b[0] for b in batches]).double()
    labels = torch.cat([b[1] for b in batches])
    p = torch.softmax(logits, -1)
    correct = p.argmax(-1) == labels
    for c in range(k):
        rows = p[correct & (labels == c)]
        if len(rows):
            targets[c] = rows.mean(0)
    return targets


@settings(max_examples=10, deadline=None)
@given(logits_and_labels(max_k=30), st.floats(0.0, 1.0), st.integers(0, 1000))
def test_online_label_smoothing_against_its_formula(data, alpha: float, seed: int) -> None:
    logits, labels = data
    k = logits.shape[1]
    strategy = OnlineLabelSmoothing(k, alpha)
    close(strategy(logits, labels), F.cross_entropy(logits.double(), labels))  # epoch 0: identity S
    generator = torch.Generator().manual_seed(seed)
    epoch = [(torch.randn(16, k, generator=generator) * 3, torch.randint(0, k, (16,), generator=generator))]
    epoch.append((logits, labels))  # already observed above
    strategy(*epoch[0])
    strategy.on_train_epoch_end()
    s = online_reference_targets(epoch, k)
    close(strategy.soft_targets, s)
    close(strategy.soft_targets.sum(-1), torch.ones(k))
    q = alpha * onehot(labels, k) + (1 - alpha) * s[labels]
    strategy.eval()  # no statistics gathered outside training
    close(strategy(logits, labels), cross_entropy_against(q, logits))
    close(strategy.target_distribution(labels), q)
    assert strategy.correct_counts.sum() == 0


def test_online_state_is_checkpointed_and_initial_epsilon_smooths_epoch_zero() -> None:
    strategy = OnlineLabelSmoothing(4, 0.5, initial_epsilon=0.2)
    torch.testing.assert_close(strategy.soft_targets[0], torch.tensor([0.85, 0.05, 0.05, 0.05]))
    strategy(torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0]]), torch.tensor([0, 1]))
    restored = OnlineLabelSmoothing(4, 0.5, initial_epsilon=0.2)
    restored.load_state_dict(strategy.state_dict())
    assert restored.correct_counts.tolist() == [1, 1, 0, 0]
    restored.on_train_epoch_end()
    strategy.on_train_epoch_end()
    torch.testing.assert_close(restored.soft_targets, strategy.soft_targets)
    torch.testing.assert_close(restored.soft_targets[2], torch.full((4,), 0.25))  # unseen: uniform (a choice here)


def test_online_targets_learnt_in_an_epoch_are_the_next_epochs_targets() -> None:
    """The module ends a criterion's epoch after its last batch and again at the next epoch's start: the second
    call, with nothing seen since, keeps the learnt S (and, before any batch, epoch 0's initial_epsilon targets)."""
    strategy = OnlineLabelSmoothing(4, 0.5, initial_epsilon=0.2)
    initial = strategy.soft_targets.clone()
    strategy.on_train_epoch_end()  # epoch 0's start
    torch.testing.assert_close(strategy.soft_targets, initial)
    epoch = [(torch.tensor([[5.0, 1, 0, 0], [0, 4.0, 0, 2], [3.0, 0, 0, 0]]), torch.tensor([0, 1, 2]))]
    strategy(*epoch[0])
    strategy.on_train_epoch_end()  # after the epoch's last batch
    strategy.on_train_epoch_end()  # the next epoch's start
    learnt = online_reference_targets(epoch, 4)
    torch.testing.assert_close(strategy.soft_targets.double(), learnt)
    assert strategy.soft_targets[0, 0] > 0.9 and strategy.soft_targets[1, 3] > 0.1
    restored = OnlineLabelSmoothing(4, 0.5, initial_epsilon=0.2)
    restored.load_state_dict(strategy.state_dict())  # a checkpoint written between the two calls
    restored.on_train_epoch_end()
    torch.testing.assert_close(restored.soft_targets, strategy.soft_targets)


def test_online_statistics_are_summed_across_processes() -> None:
    import socket

    import torch.multiprocessing as mp

    from tests.process_workers import online_statistics_of_one_process

    generator = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(40, 5, generator=generator) * 2, torch.randint(0, 5, (40,), generator=generator)) for _ in range(2)
    ]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.start_processes(online_statistics_of_one_process, args=(2, port, batches, queue), nprocs=2, start_method="spawn")
    results = dict(queue.get(timeout=60) for _ in range(2))
    expected = online_reference_targets(batches, 5)
    for rank in range(2):
        torch.testing.assert_close(torch.tensor(results[rank], dtype=torch.float64), expected, rtol=1e-6, atol=1e-6)


# --- properties shared by all strategies --------------------------------------------------------------------------


def target_strategies(k: int) -> list[TargetDistributionStrategy]:
    prior = torch.linspace(1, 2, k)
    return [
        CrossEntropy(k),
        UniformSmoothing(k, 0.3),
        GammaSmoothing(k, 0.7),
        PriorSmoothing(k, 0.4, prior=(prior / prior.sum()).tolist()),
        SoftBootstrapping(k, 0.6),
        HardBootstrapping(k, 0.6),
        OnlineLabelSmoothing(k, 0.5, initial_epsilon=0.3),
    ]


@settings(max_examples=10, deadline=None)
@given(logits_and_labels(max_k=200))
def test_target_distributions_sum_to_one_and_define_the_loss(data) -> None:
    logits, labels = data
    for strategy in target_strategies(logits.shape[1]):
        q = strategy.target_distribution(labels, logits=logits)
        assert (q >= 0).all(), strategy
        close(q.sum(-1), torch.ones(len(labels)))
        close(strategy(logits, labels), cross_entropy_against(q.double(), logits))


STRATEGY_OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "smoothing").glob("*.yaml"))
# Settings that make a strategy deterministic across two calls (the float32 test compares two of them).
DETERMINISTIC = {"disturb_label": {"alpha": 0.0}}


def configured_strategy(option: str, num_classes: int = 10):
    """``conf/smoothing/<option>.yaml`` instantiated with ``train.yaml``'s seed (a new strategy's YAML file is picked
    up here without editing the tests). Read from its file, not composed: these tests build every strategy in each
    pytest-xdist worker as it collects them; ``test_every_strategy_has_a_config_and_records_its_parameters`` and
    ``tests/test_configs.py`` compose each option as ``train.py smoothing=<option>`` does."""
    primary = OmegaConf.load(CONFIG_DIR / "train.yaml")
    option_node = OmegaConf.load(CONFIG_DIR / "smoothing" / f"{option}.yaml")
    cfg = OmegaConf.create({"seed": primary.seed, "smoothing": option_node})
    cfg.smoothing.merge_with(DETERMINISTIC.get(option, {}))
    strategy = hydra.utils.instantiate(cfg.smoothing, num_classes=num_classes)
    if isinstance(strategy, UsesClassPrior):
        strategy.set_class_frequencies(torch.full((num_classes,), 1.0 / num_classes))
    return strategy


ALL_STRATEGIES = [configured_strategy(option) for option in STRATEGY_OPTIONS]


@pytest.mark.parametrize("strategy", ALL_STRATEGIES, ids=lambda s: type(s).__name__)
def test_float32_under_bf16_autocast(strategy) -> None:
    """Under mixed precision the loss is computed in float32 from the (half-precision) logits."""
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(16, 10)
    inputs, labels = torch.randn(32, 16, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(inputs)
        loss = strategy(logits, labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, strategy(logits.float(), labels), rtol=1e-6, atol=1e-6)


SOFTMAX_STRATEGIES = [s for s in ALL_STRATEGIES if not isinstance(s, (BinarySmoothing, TargetRange))]


@pytest.mark.parametrize("strategy", SOFTMAX_STRATEGIES, ids=lambda s: type(s).__name__)
def test_softmax_strategies_predict_softmax_of_the_logits(strategy) -> None:
    """The base ``prediction_logits`` is the identity (in float32), also under autocast and in training mode,
    and leaves a stateful strategy's statistics alone."""
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(1))
    strategy.train()
    before = copy.deepcopy(strategy.state_dict())  # buffers and extra state (online's statistics, a generator)
    assert torch.equal(strategy.prediction_logits(logits), logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = logits.bfloat16()
        prediction = strategy.prediction_logits(half)
    assert prediction.dtype == torch.float32 and torch.equal(prediction, half.float())
    torch.testing.assert_close(strategy.state_dict(), before, rtol=0, atol=0)


@pytest.mark.parametrize("strategy", [TargetRange(10), BinarySmoothing(10, 0.2)], ids=lambda s: type(s).__name__)
def test_sigmoid_prediction_logits_are_float32_under_bf16_autocast(strategy) -> None:
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(2)).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        prediction = strategy.prediction_logits(logits)
    assert prediction.dtype == torch.float32
    torch.testing.assert_close(prediction, F.logsigmoid(logits.float()))


INVALID = [
    (UniformSmoothing, {"epsilon": -0.1}, r"epsilon=-0\.1.*\[0, 1\)\.$"),  # the reason is of ε = 1 alone
    (UniformSmoothing, {"epsilon": 1.0}, r"epsilon=1\.0.*\[0, 1\)\. At ε = 1 the target is the same for every label"),
    (GammaSmoothing, {"gamma": 0.05}, r"gamma=0\.05.*1/K"),
    (GammaSmoothing, {"gamma": 1.2}, r"gamma=1\.2 is out of range: it must lie in \(0\.1, 1\]\.$"),
    (PriorSmoothing, {"epsilon": 2.0}, r"epsilon=2"),
    (PriorSmoothing, {"epsilon": 1.0}, r"epsilon=1\.0.*\[0, 1\)"),
    (PriorSmoothing, {"prior": [0.5, 0.5]}, r"prior has 2 entries.*K=10"),
    (PriorSmoothing, {"prior": [0.2] * 10}, r"prior sums to 2"),
    (PriorSmoothing, {"prior": [-0.1, 0.3] + [0.1] * 8}, r"prior=.*\[0, 1\]"),
    (TargetRange, {"low": -0.01}, r"low=-0\.01.*\[0, 1\)"),
    (TargetRange, {"low": 0.6, "high": 0.4}, r"high=0\.4.*\(0\.6, 1\]"),
    (TargetRange, {"high": 1.1}, r"high=1\.1"),
    (KLUniformRegularizer, {"beta": -1.0}, r"beta=-1\.0.*\[0, inf\)"),
    (KLUniformRegularizer, {"beta": math.inf}, r"beta=inf is out of range.*\[0, inf\)"),
    (ConfidencePenalty, {"beta": math.inf}, r"beta=inf is out of range.*\[0, inf\)"),
    (ConfidencePenalty, {"beta": float("nan")}, r"beta=nan"),
    (SoftBootstrapping, {"beta": 1.1}, r"beta=1\.1.*\[0, 1\]"),
    (SoftBootstrapping, {"detach_prediction": "yes"}, r"detach_prediction='yes'"),
    (HardBootstrapping, {"beta": -0.5}, r"beta=-0\.5"),
    (DisturbLabel, {"alpha": 1.5}, r"alpha=1\.5.*\[0, 1\]"),
    (DisturbLabel, {"seed": 1.5}, r"seed=1\.5"),
    (OnlineLabelSmoothing, {"alpha": 2.0}, r"alpha=2\.0"),
    (OnlineLabelSmoothing, {"initial_epsilon": -1.0}, r"initial_epsilon=-1\.0"),
    (BinarySmoothing, {"epsilon": 1.01}, r"epsilon=1\.01"),
    (BinarySmoothing, {"convention": "tf"}, r"convention='tf'.*uniform.*keras"),
]


@pytest.mark.parametrize("cls,kwargs,message", INVALID, ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in INVALID])
def test_every_invalid_parameter_is_refused_by_name(cls, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(10, **kwargs)


@pytest.mark.parametrize("cls", [type(s) for s in ALL_STRATEGIES], ids=lambda c: c.__name__)
def test_every_strategy_refuses_fewer_than_two_classes(cls) -> None:
    with pytest.raises(ValueError, match="num_classes=1"):
        cls(1)


class Toy(SmoothingStrategy):
    """A strategy declared as the library's are: two real-valued parameters, the second bounded by the first."""

    rate = RealParameter(0.0, 2.0, high_inclusive=False, unsmoothed=0.0)
    width = RealParameter("rate", 5.0, low_inclusive=False, why="width must exceed rate.", fixed=True)
    options = ("mode",)

    def __init__(self, num_classes: int, rate: float = 1.0, width: float = 3.0, mode: str = "a") -> None:
        super().__init__(num_classes)
        self.rate = rate
        self.width = width
        self.mode = mode

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target) * self.rate


def test_the_declared_parameters_drive_repr_unsmoothed_and_the_record() -> None:
    toy = Toy(3, rate=1)
    assert list(Toy.real_parameters) == ["rate", "width"] and Toy.unsmoothed == {"rate": 0.0}
    assert toy.numeric_parameters() == {"rate": 1.0, "width": 3.0} and isinstance(toy.rate, float)
    assert toy.hyperparameters() == {"rate": 1.0, "width": 3.0, "mode": "a"}
    assert repr(toy) == "Toy(num_classes=3, rate=1.0, width=3.0, mode=a)"
    assert unsmoothed_parameters(Toy) == {"unsmoothed.smoothing.rate": 0.0}
    assert unsmoothed_parameters(torch.nn.CrossEntropyLoss) == {} and unsmoothed_parameters(None) == {}
    with pytest.raises(ValueError, match=r"^smoothing\.rate=2\.0 is out of range: it must lie in \[0, 2\)\.$"):
        Toy(3, rate=1.5, width=2.0).set_parameter("rate", 2.0)
    narrow = Toy(3, rate=1.0, width=1.5)
    with pytest.raises(ValueError, match=r"^smoothing\.width=1\.5 is out of range: it must lie in \(1\.8, 5\]\. width"):
        narrow.set_parameter("rate", 1.8)  # rate is in range, but width must exceed it
    assert narrow.rate == 1.0
    with pytest.raises(ValueError, match=r"^Toy\.width sets up the strategy's state when it is built"):
        Toy(3).set_parameter("width", 4.0)  # fixed once built


@pytest.mark.parametrize("strategy", ALL_STRATEGIES, ids=lambda s: type(s).__name__)
def test_every_strategy_declares_its_real_valued_parameters(strategy) -> None:
    cls = type(strategy)
    declared = cls.real_parameters
    assert list(strategy.numeric_parameters()) == list(declared)
    assert all(isinstance(value, float) for value in strategy.numeric_parameters().values())
    assert dict(cls.unsmoothed) == {n: d.unsmoothed for n, d in declared.items() if d.unsmoothed is not None}
    assert unsmoothed_parameters(cls) == {f"unsmoothed.smoothing.{n}": v for n, v in cls.unsmoothed.items()}
    for name, value in strategy.hyperparameters().items():
        assert f"{name}={value}" in repr(strategy)
    assert isinstance(strategy, SchedulableParameters)
    assert isinstance(strategy, UsesClassPrior) == isinstance(strategy, PriorSmoothing)


def test_check_parameters_checks_configured_values_without_building_the_strategy(monkeypatch) -> None:
    monkeypatch.setattr(SmoothingStrategy, "__init__", lambda *args: pytest.fail("a strategy was built"))
    assert UniformSmoothing.check_parameters(None, epsilon=0.3) == {"epsilon": 0.3}
    with pytest.raises(
        ValueError, match=r"^smoothing\.epsilon=1\.5 is out of range: it must lie in \[0, 1\)\. At ε = 1 "
    ):
        UniformSmoothing.check_parameters(None, epsilon=1.5)
    assert GammaSmoothing.check_parameters(None, gamma=0.05) == {"gamma": 0.05}  # 1/K needs K
    with pytest.raises(ValueError, match=r"gamma=0\.05 is out of range.*With K=10 classes"):
        GammaSmoothing.check_parameters(10, gamma=0.05)
    with pytest.raises(ValueError, match=r"high=0\.4 is out of range: it must lie in \(0\.6, 1\]"):
        TargetRange.check_parameters(None, low=0.6, high=0.4)
    with pytest.raises(ValueError, match=r"high=0\.005 is out of range: it must lie in \(0\.01, 1\]"):
        TargetRange.check_parameters(None, high=0.005)  # against the default low
    assert TargetRange.check_parameters(10, high=0.9, loss="bce") == {"high": 0.9}  # other options: the constructor's
    with pytest.raises(ValueError, match=r"smoothing\.beta='x' must be a number"):
        ConfidencePenalty.check_parameters(None, beta="x")
    with pytest.raises(ValueError, match=r"smoothing\.gamma: UniformSmoothing has no such parameter.*epsilon"):
        UniformSmoothing.check_parameters(10, gamma=0.9)
    with pytest.raises(ValueError, match="num_classes=1"):
        GammaSmoothing.check_parameters(1, gamma=0.9)


ISSUE_STRATEGIES = {
    "none", "uniform", "gamma", "prior", "target_range", "kl_uniform", "confidence_penalty", "bootstrap_soft",
    "bootstrap_hard", "disturb_label", "online", "binary",
}  # fmt: skip


def test_every_strategy_has_a_config_and_records_its_parameters(tmp_path) -> None:
    assert set(STRATEGY_OPTIONS) >= ISSUE_STRATEGIES, sorted(ISSUE_STRATEGIES - set(STRATEGY_OPTIONS))
    for option in STRATEGY_OPTIONS:
        cfg = compose_train_config([f"smoothing={option}", "seed=7"], output_dir=tmp_path)
        strategy = hydra.utils.instantiate(cfg.smoothing, num_classes=10)
        for name, value in strategy.hyperparameters().items():
            assert cfg.smoothing[name] == value, (option, name)


# none, uniform and gamma train in tests/test_training.py; online gets a two-epoch run below.
@pytest.mark.parametrize("option", sorted(set(STRATEGY_OPTIONS) - {"none", "uniform", "gamma", "online"}))
def test_every_strategy_trains(tmp_path, option: str) -> None:
    quick = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0"]
    summary = run_training(tmp_path, [f"smoothing={option}", "model=mlp", *quick])
    assert summary["status"] == "completed"
    assert summary["smoothing"] == option
    assert 0.0 <= summary["test/acc"] <= 1.0 and math.isfinite(summary["test/nll"])


def test_online_smoothing_learns_its_targets_in_training_and_checkpoints_them(tmp_path) -> None:
    overrides = ["smoothing=online", "model=mlp", "trainer.max_epochs=2", "trainer.limit_train_batches=4"]
    summary = run_training(tmp_path, [*overrides, "optimizer.lr=0.01"])
    assert summary["status"] == "completed"
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    soft_targets = state["criterion.soft_targets"]
    torch.testing.assert_close(soft_targets.sum(-1), torch.ones(10))
    assert not torch.equal(soft_targets, torch.eye(10)), "epoch 1 must use the targets learnt in epoch 0"
    # The targets were updated after the epoch's last batch, before its checkpoint: no per-process statistics
    # are left in it (under DDP only rank 0's would be saved), so a resumed run continues exactly.
    assert state["criterion._extra_state"]["correct_counts"].sum() == 0
    assert state["criterion._extra_state"]["prediction_sums"].abs().sum() == 0
