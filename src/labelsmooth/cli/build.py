"""Building a run's parts from its composed config: the config itself (``compose_config``), the data module, the
LightningModule and the Trainer with its callbacks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from labelsmooth.cli.resolvers import register_resolvers
from labelsmooth.conf import CONFIG_DIR
from labelsmooth.errors import ConfigurationError
from labelsmooth.specification import RunSpecification

if TYPE_CHECKING:
    from labelsmooth.module import LabelSmoothingClassifier


def compose_config(overrides: list[str] | None = None, output_dir: str | Path | None = None) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as ``python train.py <overrides>`` would, outside a Hydra
    app (tests, benchmarks, notebooks); ``output_dir`` replaces the run directory Hydra would have made."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    return cfg if output_dir is None else in_run_directory(cfg, output_dir)


def in_run_directory(cfg: DictConfig, output_dir: str | Path) -> DictConfig:
    """``cfg`` (changed in place) writing its run into ``output_dir``: ``paths.output_dir`` and ``paths.log_dir``."""
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
    return cfg


def build_datamodule(dataset_cfg: DictConfig) -> Any:
    """The data module of ``dataset_cfg``, with its files read (downloaded where allowed) and split. Reading them
    leaves torch's global random state as it was (a DataLoader that decodes the files draws from it), so that the
    network built next starts from the run's seed whatever the data set, and a fused group's members, whose data is
    set up once for all, start where their runs alone do."""
    import torch

    datamodule = hydra.utils.instantiate(dataset_cfg)
    datamodule.prepare_data()
    with torch.random.fork_rng(devices=[]):
        datamodule.setup("fit")
    return datamodule


def strategy_before_data(cfg: DictConfig) -> Any:
    """The run's smoothing strategy when the data set config declares its number of classes (built before any
    data is read or downloaded, so a γ <= 1/K or an ε out of range fails in a second); None otherwise (data sets
    that count their classes from their files: the strategy is built with the module, and its parameters' ranges
    that do not depend on K are checked here)."""
    from labelsmooth.smoothing import SchedulableParameters

    num_classes = cfg.dataset.get("num_classes") if cfg.get("dataset") else None
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and cfg.get("smoothing"):
        return hydra.utils.instantiate(cfg.smoothing, num_classes=num_classes)
    settings = OmegaConf.to_container(cfg.smoothing, resolve=True) if cfg.get("smoothing") else {}
    strategy = hydra.utils.get_class(settings["_target_"]) if "_target_" in settings else None
    if isinstance(strategy, type) and issubclass(strategy, SchedulableParameters):
        strategy.check_parameters(**{key: value for key, value in settings.items() if not key.startswith("_")})
    return None


# Lightning's older names of its precisions (Trainer(precision=...)), so that 32 and "32-true" are one setting.
PRECISION_ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}


def trainer_training_settings(trainer: Any) -> dict[str, Any]:
    """The Trainer settings that change what is trained (the others say where and how fast it runs): the precision,
    gradient accumulation, the batches of an epoch and gradient clipping, in one form whatever way they were
    written (all batches, no clipping: ``None``)."""
    trainer = trainer or {}
    precision = str(trainer.get("precision") or "32-true")  # null: Lightning's default
    clip = trainer.get("gradient_clip_val") or None
    batches = trainer.get("limit_train_batches")
    return {
        "precision": PRECISION_ALIASES.get(precision, precision),
        "accumulate_grad_batches": int(trainer.get("accumulate_grad_batches") or 1),
        "limit_train_batches": None if batches is None or (isinstance(batches, float) and batches == 1.0) else batches,
        "gradient_clip_val": float(clip) if clip is not None else None,
        "gradient_clip_algorithm": str(trainer.get("gradient_clip_algorithm") or "norm") if clip is not None else None,
    }


def dataset_as_recorded(dataset: DictConfig | None) -> dict[str, Any]:
    """A data set config as runs record it: resolved, but its ``${paths...}`` interpolations kept (a run elsewhere
    resolves them against its own paths)."""
    if not dataset:
        return {}
    recorded = OmegaConf.to_container(dataset, resolve=True)
    for key, value in OmegaConf.to_container(dataset, resolve=False).items():
        if isinstance(value, str) and "${paths." in value:
            recorded[key] = value
    return recorded


def training_parts(cfg: DictConfig) -> dict[str, Any]:
    """What a composed config says of its training, before any data is read: the resolved configs of the model,
    strategy, its schedule, batch mixing, distillation, optimizer and scheduler, the Trainer's training settings
    (``trainer_training_settings``), the checkpoint selection (``checkpoint_selection``), the seed, and the data
    set's config with its ``${paths...}`` interpolations kept (an evaluation elsewhere resolves them against its own
    paths). The run specification's parts (``run_specification``), and what a continued checkpoint must have been
    written with."""

    def plain(node: Any) -> dict[str, Any] | None:
        return OmegaConf.to_container(node, resolve=True) if node else None

    return {
        "model": plain(cfg.model),
        "smoothing": plain(cfg.smoothing),
        "dataset": dataset_as_recorded(cfg.get("dataset")),
        "augment": plain(cfg.get("augment")),
        "strategy_schedule": plain(cfg.get("strategy_schedule")),
        "distill": plain(cfg.get("distill")),
        "optimizer": plain(cfg.get("optimizer")),
        "scheduler": plain(cfg.get("scheduler")),
        "trainer": trainer_training_settings(cfg.get("trainer")),
        "selection": checkpoint_selection(cfg),
        "seed": cfg.get("seed"),
    }


def checkpoint_selection(cfg: DictConfig) -> dict[str, Any]:
    """How a run selects its best checkpoint, by config key: the monitored value and its direction
    (``callbacks.checkpoint``; none without that callback), and ``precise_bn``, which recomputes the BatchNorm
    statistics each validation ranks."""
    checkpoint = OmegaConf.select(cfg, "callbacks.checkpoint", default=None) or {}
    monitor = checkpoint.get("monitor")
    return {
        "callbacks.checkpoint.monitor": monitor,
        "callbacks.checkpoint.mode": checkpoint.get("mode", "min") if monitor else None,
        "precise_bn": int(cfg.get("precise_bn") or 0),
    }


def run_specification(cfg: DictConfig, datamodule: Any, names: dict[str, str] | None = None) -> RunSpecification:
    """The run specification (``labelsmooth.specification``) of a composed config and its set-up data module: its
    ``training_parts``, the data's shape, preprocessing and class names."""
    return RunSpecification(
        **training_parts(cfg),
        num_classes=int(datamodule.num_classes),
        in_channels=int(datamodule.in_channels),
        image_size=tuple(int(v) for v in datamodule.image_size),
        preprocessing=datamodule.preprocessing_record(),
        class_names=datamodule.class_names,
        names=dict(names or {}),
        n_bins=int(cfg.get("n_bins", 15)),
    )


def build_module(
    cfg: DictConfig,
    datamodule: Any,
    criterion: Any = None,
    names: dict[str, str] | None = None,
    teacher: tuple[Any, dict[str, Any]] | None = None,
) -> LabelSmoothingClassifier:
    """The LightningModule of a run config: network, strategy, batch augment, optimizer and scheduler, sized by
    the data module (classes, channels, image size, class prior), carrying the run specification into its
    checkpoints. ``criterion``: the strategy when the run built it already (before its data); ``teacher``: the
    teacher network and its record (``labelsmooth.cli.teacher.load_teacher``), trained against with ``cfg.distill``."""
    from labelsmooth.module import LabelSmoothingClassifier
    from labelsmooth.smoothing import UsesClassPrior

    specification = run_specification(cfg, datamodule, names)
    criterion = criterion if criterion is not None else specification.build_strategy()
    if isinstance(criterion, UsesClassPrior):
        criterion.set_class_frequencies(datamodule.class_frequencies)
    teacher_net, teacher_record = teacher if teacher is not None else (None, {})
    module = LabelSmoothingClassifier.from_specification(
        specification,
        criterion=criterion,
        teacher=teacher_net,
        distillation=hydra.utils.instantiate(cfg.distill) if teacher_net is not None else None,
        teacher_record=teacher_record,
    )
    return module


def instantiate_callbacks(callbacks_cfg: DictConfig | None, progress_bar: bool, has_logger: bool) -> list:
    """The configured callbacks, less progress bars under ``trainer.enable_progress_bar=false`` and the
    learning-rate monitor when there is no logger to write to."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar

    from labelsmooth.cli.errors import root_cause

    if not callbacks_cfg:
        return []
    callbacks = []
    for name, entry in callbacks_cfg.items():
        if not entry or "_target_" not in entry:
            continue
        try:
            callbacks.append(hydra.utils.instantiate(entry))
        except Exception as error:
            cause = root_cause(error)
            if isinstance(cause, ConfigurationError) and str(cause).split("=", 1)[0] in entry:
                raise ConfigurationError(f"callbacks.{name}.{cause}") from error  # its key as the config names it
            if type(cause).__name__ != "MisconfigurationException":
                raise
            raise ConfigurationError(f"callbacks.{name}: {cause}") from error  # Lightning's refusal names no key
    unusable = (() if progress_bar else (ProgressBar,)) + (() if has_logger else (LearningRateMonitor,))
    return [c for c in callbacks if not isinstance(c, unusable)]


def build_trainer(cfg: DictConfig, logger: Any, **overrides: Any) -> Any:
    """The Trainer of ``cfg.trainer`` with the configured callbacks and ``logger`` (``instantiate_trainer``)."""
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"), cfg.trainer.get("enable_progress_bar", True), has_logger=bool(logger)
    )
    return instantiate_trainer(cfg, callbacks=callbacks, logger=logger, **overrides)


def instantiate_trainer(cfg: DictConfig, **arguments: Any) -> Any:
    """The Trainer of ``cfg.trainer`` with ``arguments``; its checkpoints are written atomically
    (``AtomicCheckpointIO``, added to ``trainer.plugins``) unless a plugin of the config writes them
    (a ``CheckpointIO`` of its own)."""
    from lightning_fabric.plugins import CheckpointIO

    from labelsmooth.runs.checkpoints import AtomicCheckpointIO

    configured = cfg.trainer.get("plugins")
    built = hydra.utils.instantiate(configured) if isinstance(configured, (DictConfig, ListConfig)) else configured
    plugins = list(built) if isinstance(configured, ListConfig) else [] if built is None else [built]
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    if configured is not None:  # the list replaces it (Hydra merges keyword arguments into the config)
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg.trainer):
            del cfg.trainer["plugins"]
    return hydra.utils.instantiate(cfg.trainer, plugins=plugins, **arguments)
