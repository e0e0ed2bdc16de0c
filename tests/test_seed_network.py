"""The seeds' from-scratch MNIST network: its initialisation, its squared-error loss, and its SGD step, trained by
the pipeline (``experiment=seed_mnist_mlp``) beside a numpy implementation of the update written out here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from scipy import stats

from labelsmooth.cli.build import build_datamodule, build_module, compose_config
from labelsmooth.errors import ConfigurationError
from labelsmooth.models import MLP
from labelsmooth.smoothing import BinarySmoothing, TargetRange

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


def train_seed_recipe(tmp_path: Path) -> tuple[pl.LightningModule, list[np.ndarray], RecordBatches, dict]:
    cfg = compose_config(["experiment=seed_mnist_mlp", "dataset=digits", "logger=none"], output_dir=tmp_path)
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


def test_the_seed_recipe_steps_as_the_seeds_numpy_network(tmp_path: Path) -> None:
    module, (w_hidden, w_out), recorder, settings = train_seed_recipe(tmp_path)
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
