"""The recipes (``conf/experiment/``): each composes with each data set, and builds a network for it."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch

from labelsmooth.cli.build import CONFIG_DIR
from labelsmooth.data.preprocess import BatchPreprocessor
from labelsmooth.models import MLP
from tests.conftest import compose_train_config, run_training
from tests.datasets_on_disk import relax_checksums, write_cifar10, write_mnist

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
DATA_SETS = sorted(p.stem for p in (CONFIG_DIR / "dataset").glob("*.yaml"))


def test_the_three_recipes_exist() -> None:
    assert {"mezzini2019", "mezzini2019_imagenet", "seed_mnist_mlp", "szegedy_lsr"} <= set(PRESETS)


@pytest.mark.parametrize("dataset", DATA_SETS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_every_data_set(preset: str, dataset: str, tmp_path: Path) -> None:
    """It builds its network, its strategy and its batch preprocessing; a recipe that sets an input range turns
    normalisation off (``tests/test_preprocess_ranges.py`` says why)."""
    cfg = compose_train_config([f"experiment={preset}", f"dataset={dataset}"], output_dir=tmp_path)
    if [float(v) for v in cfg.dataset.input_range] != [0.0, 1.0]:
        assert cfg.dataset.normalize == "none"
    BatchPreprocessor(cfg.dataset.input_range, cfg.dataset.normalize)  # the pair the data module builds
    channels = cfg.dataset.get("channels", 1)
    size = cfg.dataset.get("image_size", 8)
    assert cfg.dataset._target_.startswith("labelsmooth.data.")
    net = hydra.utils.instantiate(cfg.model, num_classes=5, in_channels=channels, image_size=(size, size))
    probe = size if isinstance(net, MLP) else min(size, 16)  # the ResNets pool globally: any size works
    assert net.eval()(torch.rand(1, channels, probe, probe)).shape == (1, 5)
    hydra.utils.instantiate(cfg.smoothing, num_classes=5)


@pytest.mark.parametrize("dataset", DATA_SETS)
def test_mezzini2019_is_the_papers_recipe(dataset: str, tmp_path: Path) -> None:
    cfg = compose_train_config(["experiment=mezzini2019", f"dataset={dataset}"], output_dir=tmp_path)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 1e-3
    assert cfg.optimizer.eps == 1e-7  # Keras' K.epsilon()
    assert cfg.scheduler.milestones == [80, 120, 160, 180]
    assert cfg.scheduler.factors == [0.1, 0.01, 0.001, 0.0005]
    assert cfg.trainer.max_epochs == 200 and cfg.dataset.batch_size == 32
    assert cfg.dataset.shift == 0.1 and cfg.dataset.hflip and cfg.dataset.normalize == "pixel_mean"
    assert cfg.optimized_metric == "val/acc_best"
    v1_20 = dataset in {"mnist", "imagenet", "decathlon_imagenet12", "digits"}
    assert cfg.model.depth == (20 if v1_20 else 83)
    assert cfg.model._target_.endswith("ResNetV1" if v1_20 else "ResNetV2")


@pytest.mark.parametrize("dataset,target", [(None, "DecathlonDataModule"), ("imagenet", "ImageNetDataModule")])
def test_mezzini2019_imagenet_has_the_papers_imagenet_exceptions(dataset, target, tmp_path: Path) -> None:
    overrides = ["experiment=mezzini2019_imagenet", *([f"dataset={dataset}"] if dataset else [])]
    cfg = compose_train_config(overrides, output_dir=tmp_path)
    assert cfg.dataset._target_.endswith(target) and (dataset or cfg.dataset.domain == "imagenet12")
    assert cfg.dataset.batch_size == 64 and cfg.dataset.normalize == "none"  # §4: no mean subtraction, batch 64
    assert cfg.model._target_.endswith("ResNetV1") and cfg.model.depth == 20 and cfg.trainer.max_epochs == 200
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.scheduler.milestones == [80, 120, 160, 180]
    assert cfg.dataset.shift == 0.1 and cfg.dataset.hflip and cfg.smoothing._target_.endswith("GammaSmoothing")
    smaller = compose_train_config([*overrides, "dataset.batch_size=8"], output_dir=tmp_path)
    assert smaller.dataset.batch_size == 8  # the command line still wins


def test_command_line_choices_win_over_the_recipe(tmp_path: Path) -> None:
    cfg = compose_train_config(["experiment=mezzini2019", "dataset=cifar10", "model=timm"], output_dir=tmp_path)
    assert cfg.model._target_ == "labelsmooth.models.timm_model"


def test_seed_recipe_is_the_seeds_network(tmp_path: Path) -> None:
    cfg = compose_train_config(["experiment=seed_mnist_mlp"], output_dir=tmp_path)
    assert cfg.dataset._target_ == "labelsmooth.data.MNISTDataModule" and cfg.dataset.batch_size == 1
    assert cfg.dataset.val_size == 0  # all 60,000 training images, as the seeds' numbers
    assert list(cfg.dataset.input_range) == [0.01, 1.0] and cfg.model.hidden_sizes == [100]
    assert cfg.model.activation == "sigmoid" and cfg.optimizer._target_ == "torch.optim.SGD"
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.momentum == 0.0 and cfg.trainer.max_epochs == 1
    assert cfg.smoothing._target_.endswith("TargetRange") and not cfg.scheduler


def test_szegedy_recipe_is_uniform_epsilon_0_1(tmp_path: Path) -> None:
    cfg = compose_train_config(["experiment=szegedy_lsr"], output_dir=tmp_path)
    assert cfg.smoothing._target_.endswith("UniformSmoothing") and cfg.smoothing.epsilon == 0.1


def test_mezzini2019_trains_on_cifar10_files(tmp_path: Path, monkeypatch) -> None:
    """The recipe end to end on a CIFAR-10 copy (a smaller v2 to keep it short): shift, flip, pixel mean."""
    relax_checksums(monkeypatch)
    write_cifar10(tmp_path / "data")
    summary = run_training(
        tmp_path / "run",
        ["experiment=mezzini2019", "dataset=cifar10", f"dataset.root={tmp_path / 'data'}", "dataset.download=false",
         "dataset.val_size=0.2", "model.depth=11", "trainer.max_epochs=1"],
    )  # fmt: skip
    assert summary["status"] == "completed" and 0.0 <= summary["val/acc_best"] <= 1.0
    assert list((tmp_path / "data" / ".labelsmooth_cache").glob("*.pt"))


def test_seed_recipe_trains_on_mnist_files(tmp_path: Path) -> None:
    write_mnist(tmp_path / "data")
    summary = run_training(
        tmp_path / "run",
        ["experiment=seed_mnist_mlp", f"dataset.root={tmp_path / 'data'}", "dataset.download=false",
         "dataset.val_size=0.34", "trainer.limit_train_batches=20"],
    )  # fmt: skip
    assert summary["status"] == "completed" and 0.0 <= summary["test/acc"] <= 1.0


def test_a_recipe_picked_model_is_named_by_class_and_depth(tmp_path: Path) -> None:
    from labelsmooth.runs.record import model_name

    for dataset, expected in (("cifar10", "ResNetV2-83"), ("mnist", "ResNetV1-20")):
        cfg = compose_train_config(["experiment=mezzini2019", f"dataset={dataset}"], output_dir=tmp_path)
        assert model_name(f"mezzini2019/{dataset}", cfg.model) == expected  # Hydra's choice: the recipe's file
    assert model_name("resnet_v1", compose_train_config([], output_dir=tmp_path).model) == "resnet_v1"
