"""The seeds' from-scratch MNIST network: its initialisation, its squared-error loss, and its SGD step, trained by
the pipeline (``experiment=seed_mnist_mlp``) beside a numpy implementation of the update written out here: the
seeds' own rule (``model.backprop=seed_numpy``, the recipe's) and the squared error's gradient
(``model.backprop=gradient``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from scipy import stats

from labelsmooth.cli.build import build_datamodule, build_module, run_specification
from labelsmooth.cli.schema import validate_run_config
from labelsmooth.errors import ConfigurationError
from labelsmooth.models import MLP, seed_linear
from labelsmooth.smoothing import BinarySmoothing, TargetRange
from tests.conftest import compose_train_config

STEPS = 300


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def linear_weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach() for m in net.modules() if isinstance(m, torch.nn.Linear)]


def test_seed_initialisation_is_a_standard_normal_truncated_to_one_over_sqrt_fan_in() -> None:
    torch.manual_seed(0)
    net = MLP(10, 1, 28, hidden_sizes=[100], activation="sigmoid", bias=False, init="seed_truncated_normal")
    hidden, output = (
        m.weight.detach().double().numpy().ravel() for m in net.modules() if isinstance(m, torch.nn.Linear)
    )
    for weights, fan_in in ((hidden, 784), (output, 100)):
        radius = fan_in**-0.5
        assert np.abs(weights).max() <= radius and np.abs(weights).max() > 0.99 * radius
        reference = stats.truncnorm(-radius, radius, loc=0.0, scale=1.0)  # the seeds' truncated_normal(0, 1, -r, r)
        assert stats.kstest(weights, reference.cdf).pvalue > 1e-3
    assert not any(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Linear))


def test_unknown_initialisation_names_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"model.init='xavier' is not one of \['default', 'seed_truncated"):
        MLP(10, 1, 8, init="xavier")


@pytest.mark.parametrize(
    "strategy", [TargetRange(10, 0.01, 0.99, loss="squared_error"), BinarySmoothing(10, 0.1, loss="squared_error")]
)
def test_squared_error_and_its_gradient(strategy) -> None:
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = torch.tensor([0, 3, 9, 2, 2, 7])
    t = strategy.off_value + (strategy.on_value - strategy.off_value) * torch.nn.functional.one_hot(target, 10)
    o = torch.sigmoid(logits.detach())
    loss = strategy(logits, target)
    assert loss.item() == pytest.approx((0.5 * (t - o).square().sum(-1)).mean().item(), rel=1e-6)
    loss.backward()
    # d/dz of mean_n ½·Σ_k (t - σ(z))²: the seeds' delta -(t - o)·o(1 - o), over the batch size.
    torch.testing.assert_close(logits.grad, -(t - o) * o * (1 - o) / 6, rtol=1e-5, atol=1e-7)
    mixed = strategy.mixed_target_loss(logits, torch.nn.functional.one_hot(target, 10).float())
    assert mixed.item() == pytest.approx(loss.item(), rel=1e-6)


def test_unknown_loss_names_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"smoothing.loss='mse' must be one of \['bce', 'squared_error'\]"):
        TargetRange(10, loss="mse")


class RecordBatches(Callback):
    """Each training batch as the network receives it (moved, scaled to the input range)."""

    def __init__(self) -> None:
        self.batches: list[tuple[np.ndarray, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        inputs, target = batch
        self.batches.append((inputs.detach().double().numpy().reshape(-1), int(target.item())))


def seed_update(w_hidden: np.ndarray, w_out: np.ndarray, x: np.ndarray, label: int, lr: float, low: float,
                high: float, published_hidden_rule: bool = False) -> None:  # fmt: skip
    """One step of the seeds' numpy network, in place: ``o = σ(W2·σ(W1·x))``, ``e = t - o``,
    ``W2 += lr·(e·o(1 - o))·hᵀ``, ``W1 += lr·(δ·h(1 - h))·xᵀ`` with the back-propagated delta
    ``δ = W2ᵀ·(e·o(1 - o))`` (the gradient of ½·Σ(t - o)²). ``published_hidden_rule``: the seeds' published code
    instead, ``δ = W2_newᵀ·e`` (the raw error through the already updated output weights)."""
    target = np.full(w_out.shape[0], low)
    target[label] = high
    hidden = sigmoid(w_hidden @ x)
    output = sigmoid(w_out @ hidden)
    error = target - output
    output_delta = error * output * (1.0 - output)
    back = w_out.T @ output_delta
    w_out += lr * np.outer(output_delta, hidden)
    if published_hidden_rule:
        back = w_out.T @ error
    w_hidden += lr * np.outer(back * hidden * (1.0 - hidden), x)


def train_seed_recipe(
    tmp_path: Path, overrides: tuple[str, ...] = ()
) -> tuple[pl.LightningModule, list[np.ndarray], RecordBatches, dict]:
    cfg = compose_train_config(
        ["experiment=seed_mnist_mlp", "dataset=digits", "logger=none", *overrides], output_dir=tmp_path
    )
    datamodule = build_datamodule(cfg.dataset)
    pl.seed_everything(3)
    module = build_module(cfg, datamodule)
    initial = [
        m.weight.detach().double().numpy().copy() for m in module.net.modules() if isinstance(m, torch.nn.Linear)
    ]
    recorder = RecordBatches()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=STEPS, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[recorder],
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    settings = {"lr": cfg.optimizer.lr, "low": cfg.smoothing.low, "high": cfg.smoothing.high}
    return module, initial, recorder, settings


def test_the_seed_recipe_with_the_gradient_rule_steps_as_the_squared_errors_gradient(tmp_path: Path) -> None:
    module, (w_hidden, w_out), recorder, settings = train_seed_recipe(tmp_path, ("model.backprop=gradient",))
    assert len(recorder.batches) == STEPS and settings == {"lr": 0.1, "low": 0.01, "high": 0.99}
    assert w_hidden.shape == (100, 64) and w_out.shape == (10, 100)  # 8x8 digits, no bias terms
    inputs = np.stack([x for x, _ in recorder.batches])
    assert inputs.min() == pytest.approx(0.01) and inputs.max() == pytest.approx(1.0)  # the seeds' [0.01, 1] scaling
    published = (w_hidden.copy(), w_out.copy())
    for x, label in recorder.batches:
        seed_update(w_hidden, w_out, x, label, **settings)
        seed_update(*published, x, label, **settings, published_hidden_rule=True)
    trained = [weight.double().numpy() for weight in linear_weights(module.net)]
    np.testing.assert_allclose(trained[0], w_hidden, rtol=0, atol=1e-6)
    np.testing.assert_allclose(trained[1], w_out, rtol=0, atol=1e-6)
    # The published code's hidden-layer rule (raw error, updated output weights) is not this loss's gradient.
    assert np.abs(trained[0] - published[0]).max() > 1e-4


def test_the_seed_recipe_steps_as_the_seeds_numpy_code(tmp_path: Path) -> None:
    """``experiment=seed_mnist_mlp`` (``model.backprop=seed_numpy``): 300 steps of the pipeline, weight for weight
    the seeds' published loop (raw error through the already updated output weights)."""
    module, (w_hidden, w_out), recorder, settings = train_seed_recipe(tmp_path)
    assert len(recorder.batches) == STEPS and settings == {"lr": 0.1, "low": 0.01, "high": 0.99}
    assert module.net.backprop == "seed_numpy" and module.net.backprop_lr == 0.1
    gradient = (w_hidden.copy(), w_out.copy())
    for x, label in recorder.batches:
        seed_update(w_hidden, w_out, x, label, **settings, published_hidden_rule=True)
        seed_update(*gradient, x, label, **settings)
    trained = [weight.double().numpy() for weight in linear_weights(module.net)]
    np.testing.assert_allclose(trained[0], w_hidden, rtol=0, atol=1e-6)
    np.testing.assert_allclose(trained[1], w_out, rtol=0, atol=1e-6)
    assert np.abs(trained[0] - gradient[0]).max() > 1e-4  # not the squared error's gradient


def seeds_numpy_train(wih: np.ndarray, who: np.ndarray, input_vector: np.ndarray, target_vector: np.ndarray,
                      learning_rate: float, hidden_errors_first: bool = False) -> None:  # fmt: skip
    """The seeds' numpy ``train`` statement by statement (column vectors, in place). ``hidden_errors_first``: the
    hidden errors computed before the output weights' update (the order of Rashid's book)."""
    input_vector = np.array(input_vector, ndmin=2).T
    target_vector = np.array(target_vector, ndmin=2).T
    output_hidden = sigmoid(wih @ input_vector)
    output_network = sigmoid(who @ output_hidden)
    output_errors = target_vector - output_network
    if hidden_errors_first:
        hidden_errors = who.T @ output_errors
    who += learning_rate * (output_errors * output_network * (1.0 - output_network)) @ output_hidden.T
    if not hidden_errors_first:
        hidden_errors = who.T @ output_errors
    wih += learning_rate * (hidden_errors * output_hidden * (1.0 - output_hidden)) @ input_vector.T


@pytest.mark.parametrize("lr, backprop_lr", [(0.1, 0.1), (0.3, 0.3), (0.1, 0.0)])
def test_seed_numpy_backprop_is_the_seeds_loop_in_float64(lr: float, backprop_lr: float) -> None:
    """The 784-100-10 network on 300 random images in [0.01, 1]: ``MLP(backprop="seed_numpy")`` with the squared
    error ``½·Σ_k (t_k - σ(z_k))²`` (in float64 here; the strategies compute their losses in float32) and plain SGD,
    one sample a step, is the seeds' loop to float64 rounding; ``backprop_lr=0`` is the book's order (hidden errors
    through the output weights before their update)."""
    generator = torch.Generator().manual_seed(0)
    images = 0.01 + 0.99 * torch.rand(STEPS, 1, 28, 28, generator=generator, dtype=torch.float64)
    targets = 0.01 + 0.98 * torch.nn.functional.one_hot(torch.randint(0, 10, (STEPS,), generator=generator), 10)
    torch.manual_seed(0)
    net = MLP(10, 1, 28, hidden_sizes=[100], activation="sigmoid", bias=False, init="seed_truncated_normal",
              backprop="seed_numpy", backprop_lr=backprop_lr).double()  # fmt: skip
    wih, who = (weight.numpy().copy() for weight in linear_weights(net))
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.0)
    for image, target in zip(images, targets, strict=True):
        optimizer.zero_grad()
        (0.5 * (target - torch.sigmoid(net(image[None]))).square().sum()).backward()
        optimizer.step()
        seeds_numpy_train(wih, who, image.numpy().ravel(), target.numpy(), lr, hidden_errors_first=backprop_lr == 0)
    trained = [weight.numpy() for weight in linear_weights(net)]
    np.testing.assert_allclose(trained[0], wih, rtol=0, atol=1e-12)
    np.testing.assert_allclose(trained[1], who, rtol=0, atol=1e-12)


def test_seed_linear_forward_and_output_gradients_are_the_linear_layers() -> None:
    """Only the error sent to the features differs: logits, weight and bias gradients are ``F.linear``'s (a batch
    of 4, with a bias); the features get ``∂loss/∂o`` through ``W - lr·∂loss/∂W``."""
    generator = torch.Generator().manual_seed(1)
    features = torch.rand(4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    logits = seed_linear(features, weight, bias, lr=0.5)
    torch.testing.assert_close(logits, torch.nn.functional.linear(features, weight, bias))
    (0.5 * (target - torch.sigmoid(logits)).square().sum(-1).mean()).backward()
    reference = torch.nn.functional.linear(features.detach(), weight.detach().requires_grad_(), bias.detach())
    o = torch.sigmoid(reference.detach())
    grad_logits = -(target - o) * o * (1 - o) / 4
    torch.testing.assert_close(weight.grad, grad_logits.T @ features.detach())
    torch.testing.assert_close(bias.grad, grad_logits.sum(0))
    updated = weight.detach() - 0.5 * grad_logits.T @ features.detach()
    torch.testing.assert_close(features.grad, -(target - o) / 4 @ updated)


def test_backprop_choices_and_the_look_ahead_learning_rate_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"model.backprop='numpy' is not one of \['gradient', 'seed_numpy'\]"):
        MLP(10, 1, 8, backprop="numpy")
    with pytest.raises(ConfigurationError, match=r"model.backprop=seed_numpy needs model.backprop_lr >= 0"):
        MLP(10, 1, 8, backprop="seed_numpy")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["smoothing.loss=bce"], "TargetRange with loss=bce"),  # 10 % accuracy on digits after one epoch
        (["smoothing=uniform", "~smoothing.loss"], "UniformSmoothing would train to chance"),
        (["teacher_ckpt=/any/teacher.ckpt"], "and a teacher"),
    ],
)
def test_the_seeds_rule_with_another_loss_is_refused_before_the_data(overrides: list[str], named: str) -> None:
    from labelsmooth.cli.checks import check_seed_backprop

    check_seed_backprop(compose_train_config(["experiment=seed_mnist_mlp"]))  # the recipe's squared error
    check_seed_backprop(
        compose_train_config(["experiment=seed_mnist_mlp", "smoothing.loss=bce", "model.backprop=gradient"])
    )
    with pytest.raises(ConfigurationError, match=rf"^model.backprop=seed_numpy is the seeds' update .*{named}"):
        check_seed_backprop(compose_train_config(["experiment=seed_mnist_mlp", *overrides]))


def test_the_recipe_uses_the_seeds_rule_and_the_gradient_is_one_override_away(tmp_path: Path) -> None:
    def network(overrides: list[str]) -> tuple[MLP, dict]:
        cfg = compose_train_config(["dataset=digits", "logger=none", *overrides], output_dir=tmp_path)
        validate_run_config(cfg)
        datamodule = build_datamodule(cfg.dataset)
        return run_specification(cfg, datamodule).build_network(), cfg

    seeds, cfg = network(["experiment=seed_mnist_mlp"])
    assert (seeds.backprop, seeds.backprop_lr) == ("seed_numpy", 0.1) and cfg.model.backprop == "seed_numpy"
    gradient, _ = network(["experiment=seed_mnist_mlp", "model.backprop=gradient"])
    assert gradient.backprop == "gradient"
    slower, _ = network(["experiment=seed_mnist_mlp", "optimizer.lr=0.05"])
    assert slower.backprop_lr == 0.05  # the look-ahead follows the optimizer's learning rate
    for mapping, low in (("zero_one", 0.0), ("seeds", 0.01)):  # both arms of sweep=seed_000, under the seeds' rule
        arm = compose_train_config(["sweep=seed_000", "experiment=seed_mnist_mlp", f"seed_000_mapping={mapping}"])
        assert arm.model.backprop == "seed_numpy" and arm.smoothing.low == low
