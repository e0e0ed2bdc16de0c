"""Every option of every config group composes, and its objects instantiate."""

from __future__ import annotations

import hydra
import pytest
import torch

from labelsmooth.cli.build import CONFIG_DIR
from tests.conftest import compose_train_config

GROUPS = [
    "dataset", "model", "smoothing", "augment", "optimizer", "scheduler", "trainer", "callbacks", "logger", "debug"
]  # fmt: skip


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group: str, option: str, tmp_path) -> None:
    """... and passes the checks made before any data. The schema checks a data set's keys against its base
    classes too (``**kwargs``): decathlon's ``in_memory: null``, which its class resolves, was refused until the
    class declared it."""
    from labelsmooth.cli.checks import check_callbacks
    from labelsmooth.cli.schema import validate_run_config

    cfg = compose_train_config([f"{group}={option}"], output_dir=tmp_path)
    assert cfg.seed == 0
    assert cfg.paths.output_dir == str(tmp_path)
    validate_run_config(cfg)
    check_callbacks(cfg)


@pytest.mark.parametrize("option", options("smoothing"))
def test_every_strategy_instantiates_as_a_loss(option: str, tmp_path) -> None:
    cfg = compose_train_config([f"smoothing={option}"], output_dir=tmp_path)
    strategy = hydra.utils.instantiate(cfg.smoothing, num_classes=10)
    loss = strategy(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    assert loss.dim() == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("option", options("model"))
def test_every_model_instantiates_for_digits(option: str, tmp_path) -> None:
    cfg = compose_train_config([f"model={option}"], output_dir=tmp_path)
    net = hydra.utils.instantiate(cfg.model, num_classes=10, in_channels=1, image_size=(8, 8))
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_optimizers_are_partials(tmp_path) -> None:
    for option in options("optimizer"):
        cfg = compose_train_config([f"optimizer={option}"], output_dir=tmp_path)
        factory = hydra.utils.instantiate(cfg.optimizer)
        assert isinstance(factory([torch.nn.Parameter(torch.zeros(1))]), torch.optim.Optimizer)


def test_unknown_option_names_the_valid_ones(tmp_path) -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="gamma"):
        compose_train_config(["smoothing=gama"], output_dir=tmp_path)


def test_a_class_of_yours_with_kwargs_keeps_them_and_lightning_reads_its_choices_in_any_case(tmp_path) -> None:
    """A class of the project passes ``**kwargs`` to its base, whose keys the schema then checks; a class of yours
    may send them elsewhere, so its keys are not refused. ``gradient_clip_algorithm`` is read as Lightning reads it."""
    from labelsmooth.cli.schema import validate_run_config
    from labelsmooth.cli.signatures import check_target_node
    from labelsmooth.errors import ConfigurationError

    check_target_node("dataset", {"_target_": "tests.test_configs.DataOfYours", "root": ".", "split": "train"})
    with pytest.raises(ConfigurationError, match="dataset.split=train is not a setting: DigitsDataModule"):
        check_target_node("dataset", {"_target_": "labelsmooth.data.DigitsDataModule", "split": "train"})
    clipping = ["+trainer.gradient_clip_val=1", "+trainer.gradient_clip_algorithm=NORM"]
    cfg = compose_train_config(clipping, output_dir=tmp_path)
    validate_run_config(cfg)


class DataOfYours:
    def __init__(self, root: str = ".", **dataset_kwargs) -> None:
        self.dataset_kwargs = dataset_kwargs


@pytest.mark.parametrize(
    "overrides",
    [
        ["smoothing=gamma", "smoothing.gamma=0.8", "trainer.max_epochs=3", "seed=4"],
        ["experiment=mezzini2019", "dataset=cifar10", "smoothing.gamma=0.7"],
        ["+teacher=resnet_v1", "model=mlp", "~callbacks.lr_monitor", "++trainer.deterministic=true"],
        ["+model@teacher=mlp", "model=mlp", "+trainer.limit_predict_batches=2", "callbacks=none"],
        ["debug=fast", "dataset.batch_size=7", "dataset.batch_size=9", "optimizer.lr=1e-2", "optimizer=sgd"],
        ["hydra.run.dir=/tmp/x", "logger=csv", "smoothing=uniform", "smoothing.epsilon=0.2", "~smoothing.epsilon"],
        ["sweep=strategies", "n_bins=10", "trainer.precision=bf16-mixed", "dataset=mnist", "model=timm"],
        ["seed=1", "trainer.max_epochs=${seed}"],
        ["model@teacher=mlp"],  # refused: an option in a package needs "+"
        ["smoothing=gamma", "smoothing.gammma=0.8"],  # refused: no such key
    ],
)
def test_the_tests_two_step_composition_is_hydras(overrides: list[str]) -> None:
    """The tests compose the overrides that choose options once per process and set the others on a copy
    (``tests/conftest.py::_composed``): the result is Hydra's one-step composition, in values and in flags."""
    from omegaconf import OmegaConf

    from labelsmooth.cli.build import compose_config
    from tests.conftest import _composed

    try:
        whole = compose_config(overrides)
    except Exception as error:
        with pytest.raises(type(error)):
            _composed.__wrapped__(tuple(overrides), "")
        return
    two_steps = _composed.__wrapped__(tuple(overrides), "")
    assert OmegaConf.to_yaml(two_steps) == OmegaConf.to_yaml(whole)
    assert OmegaConf.is_struct(two_steps) and OmegaConf.is_struct(whole)


@pytest.mark.parametrize(("scheduler", "max_epochs", "warned"), [("keras_step", 30, True), ("multistep", 81, False)])
def test_milestones_that_the_run_never_reaches_are_named(tmp_path, caplog, scheduler, max_epochs, warned) -> None:
    """scheduler=keras_step with the default 30 epochs kept the learning rate constant, unsaid."""
    import logging

    from labelsmooth.cli.schema import validate_run_config

    cfg = compose_train_config([f"scheduler={scheduler}", f"trainer.max_epochs={max_epochs}"], output_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="labelsmooth.cli.schema"):
        validate_run_config(cfg)
    expected = "scheduler.milestones=[80, 120, 160, 180]: none comes before trainer.max_epochs=30, so the learning"
    assert (expected in caplog.text) is warned and ("never changes" in caplog.text) is warned
