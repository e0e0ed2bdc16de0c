"""Building a run's parts from its composed config: the config itself (``compose_config``), the data module, the
LightningModule and the Trainer with its callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from labelsmooth.cli.resolvers import register_resolvers

CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str] | None = None, output_dir: str | Path | None = None) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as ``python train.py <overrides>`` would, outside a Hydra
    app (tests, benchmarks, notebooks); ``output_dir`` replaces the run directory Hydra would have made."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir)
    return cfg


def build_datamodule(dataset_cfg: DictConfig) -> Any:
    """The data module of ``dataset_cfg``, with its files read (downloaded where allowed) and split."""
    datamodule = hydra.utils.instantiate(dataset_cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_module(cfg: DictConfig, datamodule: Any):
    """The LightningModule of a run config: network, strategy, batch augment, optimizer and scheduler, sized by
    the data module (classes, channels, image size, class prior); with ``teacher_ckpt``, the teacher and the
    distillation loss (``labelsmooth.cli.teacher``)."""
    from labelsmooth.cli.teacher import load_teacher
    from labelsmooth.module import LabelSmoothingClassifier

    num_classes = datamodule.num_classes
    net = hydra.utils.instantiate(
        cfg.model, num_classes=num_classes, in_channels=datamodule.in_channels, image_size=datamodule.image_size
    )
    criterion = hydra.utils.instantiate(cfg.smoothing, num_classes=num_classes)
    if callable(getattr(criterion, "set_class_frequencies", None)):  # strategies that use the class prior
        criterion.set_class_frequencies(datamodule.class_frequencies)
    augment = hydra.utils.instantiate(cfg.augment, num_classes=num_classes) if cfg.get("augment") else None
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    teacher, teacher_record = load_teacher(cfg.teacher_ckpt, datamodule) if cfg.get("teacher_ckpt") else (None, {})
    return LabelSmoothingClassifier(
        net=net,
        criterion=criterion,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=scheduler,
        num_classes=num_classes,
        augment=augment,
        teacher=teacher,
        distillation=hydra.utils.instantiate(cfg.distill) if teacher is not None else None,
        teacher_record=teacher_record,
    )


def instantiate_callbacks(callbacks_cfg: DictConfig | None, progress_bar: bool, has_logger: bool) -> list:
    """The configured callbacks, less progress bars under ``trainer.enable_progress_bar=false`` and the
    learning-rate monitor when there is no logger to write to."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar

    if not callbacks_cfg:
        return []
    callbacks = [hydra.utils.instantiate(entry) for entry in callbacks_cfg.values() if entry and "_target_" in entry]
    unusable = (() if progress_bar else (ProgressBar,)) + (() if has_logger else (LearningRateMonitor,))
    return [c for c in callbacks if not isinstance(c, unusable)]


def build_trainer(cfg: DictConfig, logger: Any, **overrides: Any) -> Any:
    """The Trainer of ``cfg.trainer`` with the configured callbacks and ``logger``."""
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"), cfg.trainer.get("enable_progress_bar", True), has_logger=bool(logger)
    )
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger, **overrides)
