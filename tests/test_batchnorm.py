"""BatchNorm: the momentum option of the networks and the recipes, and precise BN (statistics recomputed from training
batches before each evaluation)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from labelsmooth.callbacks.precise_bn import PreciseBatchNorm, batch_norm_layers, recompute_batch_norm_statistics
from labelsmooth.cli.build import build_datamodule, build_module
from labelsmooth.errors import ConfigurationError
from labelsmooth.models import ResNetV1, ResNetV2
from tests.conftest import compose_train_config, run_training


def momenta(net: nn.Module) -> set[float | None]:
    return {layer.momentum for layer in batch_norm_layers(net)}


@pytest.mark.parametrize("cls,depth", [(ResNetV1, 8), (ResNetV2, 11)])
def test_resnets_take_pytorchs_momentum_by_default_and_any_other(cls, depth: int) -> None:
    assert momenta(cls(10, 3, 8, depth=depth)) == {0.1}
    assert momenta(cls(10, 3, 8, depth=depth, bn_momentum=0.01)) == {0.01}
    assert {layer.eps for layer in batch_norm_layers(cls(10, 3, 8, depth=depth))} == {1e-3}  # Keras' epsilon


@pytest.mark.parametrize("value", [0.0, 1.5, -0.1, True, "0.1"])
def test_an_impossible_momentum_names_the_parameter_and_the_convention(value) -> None:
    with pytest.raises(ConfigurationError, match=r"model.bn_momentum=.* must lie in \(0, 1\], in PyTorch's convention"):
        ResNetV1(10, 3, 8, depth=8, bn_momentum=value)


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ([], 0.1),
        (["model=resnet_v2"], 0.1),
        (["model=resnet20_v1"], 0.1),
        (["model=resnet83_v2"], 0.1),
        (["experiment=mezzini2019"], 0.01),  # Keras' momentum 0.99
        (["experiment=mezzini2019", "dataset=cifar10"], 0.01),
        (["experiment=mezzini2019_imagenet"], 0.01),
        (["model=mezzini2019/resnet83_v2"], 0.01),
        (["experiment=mezzini2019", "model.bn_momentum=0.1"], 0.1),
    ],
)
def test_plain_models_use_pytorchs_momentum_and_the_recipes_keras(overrides, expected, tmp_path: Path) -> None:
    import hydra

    cfg = compose_train_config(overrides, output_dir=tmp_path)
    assert cfg.model.bn_momentum == expected
    net = hydra.utils.instantiate(cfg.model, num_classes=10, in_channels=1, image_size=(8, 8))
    assert momenta(net) == {expected}


class TinyBatchNormNet(nn.Sequential):
    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.01), nn.ReLU(),
            nn.Flatten(), nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 3),
        )  # fmt: skip


def layer_inputs(net: nn.Module, batches: list[torch.Tensor]) -> dict[nn.Module, list[torch.Tensor]]:
    """Every BatchNorm layer's input on each batch, in train mode (batch statistics), on a copy of ``net``."""
    import copy

    probe = copy.deepcopy(net).train()
    seen: dict[nn.Module, list[torch.Tensor]] = {layer: [] for layer in batch_norm_layers(probe)}
    hooks = [layer.register_forward_hook(lambda m, a, _: seen[m].append(a[0].detach())) for layer in seen]
    torch.manual_seed(0)
    with torch.no_grad():
        for batch in batches:
            probe(batch)
    for hook in hooks:
        hook.remove()
    return {original: seen[copied] for original, copied in zip(batch_norm_layers(net), seen, strict=True)}


def per_channel(values: torch.Tensor) -> torch.Tensor:
    """(N, C, ...) → (C, N·...): the values each channel normalises over."""
    return values.transpose(0, 1).reshape(values.shape[1], -1)


def test_recomputed_statistics_are_the_training_statistics_of_the_whole_data_set() -> None:
    torch.manual_seed(0)
    net = TinyBatchNormNet().eval()
    net[6].p = 0.0  # no dropout: the activations of a whole-set batch are then those of the batches (test below)
    data = torch.randn(48, 2, 5, 5) * 3 + 1
    expected = layer_inputs(net, [data])
    assert recompute_batch_norm_statistics(net, [data]) == 1
    for layer, (inputs,) in expected.items():
        values = per_channel(inputs)
        torch.testing.assert_close(layer.running_mean, values.mean(1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.running_var, values.var(1, unbiased=True), rtol=1e-5, atol=1e-6)


def test_several_batches_give_the_cumulative_average_of_their_statistics() -> None:
    torch.manual_seed(1)
    net = TinyBatchNormNet().train()
    net[4].eval()  # a submodule in another mode than its parent keeps its own
    batches = [torch.randn(16, 2, 5, 5) + shift for shift in (0.0, 1.0, -2.0, 0.5)]
    expected = layer_inputs(net, batches)
    torch.manual_seed(0)  # the same dropout draws as layer_inputs
    assert recompute_batch_norm_statistics(net, iter(batches)) == 4
    for layer, inputs in expected.items():
        means = torch.stack([per_channel(x).mean(1) for x in inputs])
        variances = torch.stack([per_channel(x).var(1, unbiased=True) for x in inputs])
        torch.testing.assert_close(layer.running_mean, means.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.running_var, variances.mean(0), rtol=1e-5, atol=1e-6)
        assert int(layer.num_batches_tracked) == 4
    assert momenta(net) == {0.01, 0.1}  # put back
    assert net.training and not net[4].training and net[1].training


@pytest.mark.parametrize("value", [-1, 1.5, True, "50"])
def test_precise_bn_refuses_a_number_of_batches_that_is_not_a_count(value) -> None:
    with pytest.raises(ConfigurationError, match=r"precise_bn=.* must be an integer >= 0"):
        PreciseBatchNorm(value)


def test_precise_bn_refuses_a_model_without_batchnorm_when_training_starts() -> None:
    """Where the data set declares no image shape (its files tell), the model is first built after the data: the
    callback refuses at set-up, before training, as the check before the data does for a declared shape."""
    with pytest.raises(ConfigurationError, match=r"^precise_bn=3: the model \(Sequential\) has no BatchNorm layer"):
        PreciseBatchNorm(3).setup(pl.Trainer(logger=False), nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), "fit")
    PreciseBatchNorm(0).setup(pl.Trainer(logger=False), nn.Linear(4, 2), "fit")  # off
    PreciseBatchNorm(3).setup(pl.Trainer(logger=False), nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)), "fit")


def digits_setup(tmp_path: Path, *overrides: str):
    cfg = compose_train_config(
        ["logger=none", "model.bn_momentum=0.01", "dataset.batch_size=2000", *overrides], output_dir=tmp_path
    )
    datamodule = build_datamodule(cfg.dataset)
    pl.seed_everything(0)
    return cfg, datamodule, build_module(cfg, datamodule)


def trainer(tmp_path: Path, callbacks: list, **options) -> pl.Trainer:
    settings = {
        "accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
        "enable_model_summary": False, "num_sanity_val_steps": 0, "default_root_dir": tmp_path, **options,
    }  # fmt: skip
    return pl.Trainer(callbacks=callbacks, **settings)


def test_final_evaluation_recomputes_the_statistics_of_the_loaded_checkpoint(tmp_path: Path) -> None:
    """Fit without precise BN (Keras' momentum: stale statistics), then validate and test the checkpoint with it: the
    statistics are those of the checkpoint's weights on the whole training split (one batch), not the checkpoint's
    running averages nor those of the weights fit ended with."""
    _, datamodule, module = digits_setup(tmp_path, "dataset.batch_size=64")
    fit = trainer(tmp_path, [], max_epochs=2, limit_train_batches=4, enable_checkpointing=True)
    fit.fit(module, datamodule=datamodule)
    checkpoint = fit.checkpoint_callback.best_model_path
    stored = torch.load(checkpoint, weights_only=True)["state_dict"]

    _, whole, reference = digits_setup(tmp_path)  # one training batch: the whole split
    reference.load_state_dict(stored)
    inputs = whole.preprocess_batch(next(iter(whole.train_dataloader())), train=True)[0]
    expected = layer_inputs(reference.net, [inputs])

    layers = {name: m for name, m in module.net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    evaluation = trainer(tmp_path, [PreciseBatchNorm(num_batches=5)])
    for run in (evaluation.validate, evaluation.test):
        with torch.no_grad():  # other weights and garbage statistics, which loading and recomputing must replace
            for parameter in module.net.parameters():
                parameter.add_(0.5)
            for layer in layers.values():
                layer.running_mean.fill_(7.0)
        run(module, datamodule=whole, ckpt_path=checkpoint, verbose=False)
        for (name, layer), (values,) in zip(layers.items(), expected.values(), strict=True):
            torch.testing.assert_close(layer.running_mean, per_channel(values).mean(1), rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(layer.running_var, per_channel(values).var(1), rtol=1e-4, atol=1e-5)
            assert (layer.running_mean - stored[f"net.{name}.running_mean"]).abs().max() > 1e-3  # not the stale ones


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def trained_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The network's parameters in a checkpoint (no buffers: BatchNorm's statistics)."""
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("net.") and not k.endswith(BUFFERS)}


def test_precise_bn_leaves_training_unchanged_and_evaluation_reproducible(tmp_path: Path) -> None:
    common = ["trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=null",
              "trainer.limit_test_batches=null", "model.bn_momentum=0.01", "dataset.shift=0.1",
              "dataset.hflip=true"]  # fmt: skip
    plain = run_training(tmp_path / "plain", common)
    precise = run_training(tmp_path / "precise", [*common, "precise_bn=3"])
    assert plain["precise_bn"] == 0 and precise["precise_bn"] == 3
    plain_weights, precise_weights = (
        trained_weights(tmp_path / run / "checkpoints" / "last.ckpt") for run in ("plain", "precise")
    )
    assert plain_weights.keys() == precise_weights.keys()
    for name, value in plain_weights.items():  # the same data order, augmentation and steps
        torch.testing.assert_close(precise_weights[name], value, rtol=0, atol=0, msg=name)
    # The best checkpoint evaluated again gets the statistics its own validation had: the same accuracy.
    assert precise["val/acc"] == precise["val/acc_best"]


@pytest.mark.slow
def test_precise_bn_under_ddp_averages_the_processes_and_stays_reproducible(tmp_path: Path) -> None:
    """Two DDP processes (gloo on CPU), each recomputing from the first batches of its own shard, then averaging:
    the best checkpoint holds the average of the two processes' statistics, and evaluated after fit it gets the
    statistics its own validation had."""
    import copy
    import json
    from itertools import islice

    from torch.utils.data import DataLoader, DistributedSampler

    from tests.conftest import run_cli

    run = tmp_path / "run"
    result = run_cli(
        ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "precise_bn=3", "debug=fast",
         "trainer.max_epochs=2", "logger=none", "trainer.enable_progress_bar=false", "model.bn_momentum=0.01",
         f"hydra.run.dir={run}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((run / "metrics.json").read_text())
    assert recorded["world_size"] == 2 and recorded["precise_bn"] == 3
    assert recorded["val/acc"] == recorded["val/acc_best"]

    cfg = compose_train_config(["logger=none", "model.bn_momentum=0.01"], output_dir=tmp_path)
    datamodule = build_datamodule(cfg.dataset)
    module = build_module(cfg, datamodule)
    stored = torch.load(recorded["checkpoint"], weights_only=True)["state_dict"]
    module.load_state_dict(stored)
    loader = datamodule.train_dataloader()
    statistics = []
    for rank in (0, 1):
        shard = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        batches = DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=shard, collate_fn=loader.collate_fn)
        inputs = [datamodule.preprocess_batch(batch, train=True)[0] for batch in islice(batches, 3)]
        net = copy.deepcopy(module.net)
        recompute_batch_norm_statistics(net, inputs)
        statistics.append({n: b for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var"))})
    assert statistics[0].keys() == statistics[1].keys() and statistics[0]
    for name in statistics[0]:
        average = (statistics[0][name] + statistics[1][name]) / 2
        torch.testing.assert_close(stored[f"net.{name}"], average, rtol=1e-4, atol=1e-5, msg=name)
