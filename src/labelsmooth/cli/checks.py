"""Checks made before any data is read or downloaded, so a configuration that cannot work fails in a second
with a message that names the key and the fix."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from labelsmooth.cli.devices import explicit_device_count, requested_devices, slurm_tasks, starts_a_process_per_device
from labelsmooth.errors import ConfigurationError, closest, describe, whole_number


def check_devices(trainer_cfg: DictConfig) -> None:
    """Refuse an accelerator that Lightning does not have or this machine cannot run, a strategy name it does not
    have, and more devices than the machine has, before Lightning launches processes for them."""
    import difflib

    import torch
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    strategy, strategies = trainer_cfg.get("strategy", "auto"), StrategyRegistry.available_strategies()
    if isinstance(strategy, str) and strategy not in {"auto", *strategies}:
        close = difflib.get_close_matches(strategy, strategies, n=3) or ["ddp", "ddp_spawn", "fsdp"]
        raise ConfigurationError(
            f"trainer.strategy={strategy} is not a Lightning strategy: auto, or one of {len(strategies)} such as "
            f"{', '.join(close)} (pytorch_lightning.strategies.StrategyRegistry)"
        )

    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    known = AcceleratorRegistry.available_accelerators()
    if accelerator not in {"auto", "gpu", *known}:
        raise ConfigurationError(
            f"trainer.accelerator={accelerator} is not an accelerator: the choices are "
            f"{', '.join(sorted({'auto', 'gpu', *known}))}"
        )
    if accelerator in known - {"cuda"} and not AcceleratorRegistry[accelerator]["accelerator"].is_available():
        raise ConfigurationError(
            f"trainer.accelerator={accelerator} is not available on this machine (or its library is not installed): "
            "use trainer=default (a GPU when there is one, else the CPU) or trainer=cpu"
        )
    devices = trainer_cfg.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        return
    count = explicit_device_count(devices)
    ids = list(devices) if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices) else []
    if not count or not all(type(i) is int and i >= 0 for i in ids):
        raise ConfigurationError(
            f'trainer.devices={devices} must be a count >= 1, a list of device ids ([0, 1] or "0,1"), or -1 or '
            "auto (every device)"
        )
    requested = requested_devices(trainer_cfg)
    if accelerator in {"gpu", "cuda"} or (accelerator == "auto" and torch.cuda.is_available()):
        available, kind = torch.cuda.device_count(), "GPU"
    elif accelerator in {"cpu", "auto"} and (ids or "," in str(devices)):  # Lightning: a number of processes
        raise ConfigurationError(f"trainer.devices={devices}: on the CPU give a number of processes, not ids")
    elif accelerator in {"cpu", "auto"}:
        available, kind = os.cpu_count() or 1, "CPU core"
    else:
        return
    if requested > available and available == 0:
        raise ConfigurationError(
            f"trainer.accelerator={accelerator} asks for {requested} GPU{'s' if requested > 1 else ''} but this "
            "machine has none (torch sees no CUDA device). Use trainer=cpu, or trainer=default to take a GPU when "
            "there is one."
        )
    if requested > available:
        raise ConfigurationError(
            f"trainer.devices={devices} asks for {requested} {kind}s but this machine has {available}. "
            f"Use trainer.devices={available} or fewer" + (" (or trainer=cpu)" if kind == "GPU" else "") + "."
        )


def check_multirun_ddp(trainer_cfg: DictConfig, multirun: bool) -> None:
    """Lightning's subprocess DDP re-launches the script per device, which a Hydra multirun job cannot do; under
    SLURM (``hydra/launcher=slurm hydra.launcher.tasks_per_node=N``) every process is already a task of its own,
    started by ``srun`` and wired by Lightning's SLURM environment, so there it is allowed."""
    strategy = str(trainer_cfg.get("strategy", "auto"))
    devices = requested_devices(trainer_cfg)
    if not (multirun and starts_a_process_per_device(strategy) and devices > 1):
        return
    nodes = int(trainer_cfg.get("num_nodes", 1) or 1)
    if slurm_tasks() == devices * nodes:
        return
    raise ConfigurationError(
        f"trainer.strategy={strategy} with {devices} devices cannot run inside a Hydra multirun with this launcher: "
        "Lightning's subprocess DDP re-launches the script, which a sweep job cannot do. Use hydra/launcher=slurm "
        f"(its tasks_per_node follows trainer.devices: SLURM starts the {devices} processes of each job), or run "
        "one process per job (trainer=default or trainer.devices=1) in parallel with hydra/launcher=joblib, or run "
        "the DDP training as a single run without -m."
    )


_TORCH_DEFAULT_THREADS: list[int] = []  # torch's own thread count, seen before any job of this process set one


def set_num_threads(num_threads: Any) -> None:
    """``torch.set_num_threads(num_threads)`` (``num_threads`` config key); None: torch's default, also for a job
    that follows, in the same process (a sequential multirun), one that set another count."""
    import torch

    if not _TORCH_DEFAULT_THREADS:
        _TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    if num_threads is None:
        num_threads = _TORCH_DEFAULT_THREADS[0]
    cores = os.cpu_count() or 1  # more threads than that only wait for each other (100,000 crash torch)
    whole_number("num_threads", num_threads, 1, f"this machine's {cores} cores; null: torch's default", cores)
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def check_added_keys(cfg: DictConfig, overrides: Sequence[str], groups: Iterable[str]) -> None:
    """Refuse a top-level key that a ``+key=value`` override adds (``groups``: the chosen config groups, which
    ``+`` may fill): nothing would read it, and a typo (``+sed=3``) would run with the default unsaid."""
    from labelsmooth.conf import CONFIG_DIR
    from labelsmooth.runs.overrides import added_top_level_keys, added_top_level_nodes

    for key, value in [*added_top_level_keys(overrides), *added_top_level_nodes(cfg, overrides)]:
        top = key.split(".", 1)[0]
        if top in groups:  # +callbacks.x._target_=... after callbacks=none
            continue
        if (CONFIG_DIR / top).is_dir():  # eval.py's dataset (null: the run's own)
            raise ConfigurationError(f"+{key}={value}: choose a {top} first ({top}=<option>), then set its keys")
        settings = sorted(k for k in cfg if k != top and k != "hydra")
        hint = f"did you mean {near}? " if (near := closest(top, settings)) else ""
        raise ConfigurationError(
            f"+{key}={value} is not a setting: nothing reads a top-level key {top!r} ({hint}the top-level settings "
            f"are {', '.join(settings)})"
        )


def check_start(cfg: DictConfig, overrides: list[str], multirun: bool) -> None:
    """Refuse the two ways to start training given together on the command line, and ``resume_sweep=true`` outside
    a sweep, which would be ignored."""
    from labelsmooth.runs.overrides import override_key
    from labelsmooth.runs.resume import resume_asked

    given = {override_key(o) for o in overrides}
    resume = cfg.get("resume")
    if {"resume", "ckpt_path"} <= given and cfg.get("ckpt_path") and resume_asked(resume):
        raise ConfigurationError(
            f"resume={resume} and ckpt_path={cfg.ckpt_path} both say where training starts: resume= continues an "
            "interrupted run in its own directory, ckpt_path= starts a new run from a checkpoint; give one"
        )
    if cfg.get("resume_sweep") and not multirun:
        raise ConfigurationError(
            "resume_sweep=true continues a sweep (python train.py -m <its overrides> resume_sweep=true "
            "hydra.sweep.dir=<its directory>); a single run continues with resume=true"
        )


def check_seed_backprop(cfg: DictConfig) -> None:
    """``model.backprop=seed_numpy`` back-propagates the seeds' output error ``t - o`` (their numpy network's rule),
    which is the squared error's alone: with another loss (binary or softmax cross entropy, a distillation term) its
    hidden layer's step has no meaning and the network trains to chance. Refused in one line before any data."""
    from labelsmooth.smoothing.sigmoid import SigmoidTargetStrategy

    model, smoothing = cfg.get("model") or {}, cfg.get("smoothing") or {}
    if model.get("backprop") != "seed_numpy":
        return
    target = smoothing.get("_target_")
    strategy = hydra.utils.get_class(target) if isinstance(target, str) else None
    squared = isinstance(strategy, type) and issubclass(strategy, SigmoidTargetStrategy)
    if not squared or smoothing.get("loss") != "squared_error" or cfg.get("teacher_ckpt"):
        loss = f"smoothing={target} with loss={smoothing.get('loss')}" if squared else f"smoothing={target}"
        raise ConfigurationError(
            f"model.backprop=seed_numpy is the seeds' update of the squared error of sigmoid outputs "
            f"(smoothing=target_range or binary with smoothing.loss=squared_error, no teacher_ckpt); {loss}"
            f"{' and a teacher' if cfg.get('teacher_ckpt') else ''} would train to chance: use model.backprop=gradient"
        )


def check_augment(cfg: DictConfig) -> None:
    """Build the batch mixing once with a stand-in class count, so a setting it refuses (a negative
    ``augment.mixup_alpha``, a ``prob`` outside [0, 1]), or a strategy that cannot smooth its mixed targets, fails
    before the data set is read or downloaded."""
    if cfg.get("augment") and cfg.augment.get("_target_"):
        augment = hydra.utils.instantiate(cfg.augment, num_classes=2)
        if (cfg.get("smoothing") or {}).get("_target_"):
            from labelsmooth.mixing import check_mixable

            check_mixable(type(augment), hydra.utils.get_class(cfg.smoothing._target_))


def check_optimizer(cfg: DictConfig) -> None:
    """Build the optimizer and the learning-rate scheduler once on a stand-in parameter, so a setting they refuse
    (``optimizer.lr=fast``, a negative weight decay) fails before the data set is read, with the keys named,
    instead of in a traceback from inside the first training step."""
    import torch

    if not cfg.get("optimizer"):
        return
    try:
        optimizer = hydra.utils.instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
        if cfg.get("scheduler"):
            hydra.utils.instantiate(cfg.scheduler)(optimizer)
    except (TypeError, ValueError, KeyError) as error:  # KeyError: torch's, for last_epoch without initial_lr
        if isinstance(error, ConfigurationError):  # the scheduler's own words, naming its keys
            raise
        settings = ", ".join(
            f"{group}.{key}={value!r}"
            for group in ("optimizer", "scheduler")
            if cfg.get(group)
            for key, value in OmegaConf.to_container(cfg[group], resolve=True).items()
            if not str(key).startswith("_")
        )
        raise ConfigurationError(
            f"the optimizer or learning-rate scheduler refuses its settings ({describe(error)}); they are {settings}"
        ) from error


def check_callbacks(cfg: DictConfig) -> None:
    """Build the callbacks once: a setting one refuses (``callbacks.checkpoint.save_top_k=-2``) fails before data."""
    from labelsmooth.cli.build import instantiate_callbacks

    instantiate_callbacks(cfg.get("callbacks"), progress_bar=True, has_logger=True)


def check_precise_bn(cfg: DictConfig) -> None:
    """``precise_bn=N`` needs the callback that does it (``callbacks=default`` has it): refuse it rather than
    evaluate silently on the running statistics. Its range is the schema's (``labelsmooth.cli.schema``), checked
    before."""
    count = cfg.get("precise_bn", 0)
    callbacks = cfg.get("callbacks") or {}
    targets = [str(c.get("_target_", "")) for c in callbacks.values() if c]
    if count and not any(t.endswith("PreciseBatchNorm") for t in targets):
        raise ConfigurationError(
            f"precise_bn={count} needs the PreciseBatchNorm callback, which this callbacks config lacks: use "
            "callbacks=default, or add callbacks.precise_bn (see conf/callbacks/default.yaml)"
        )


def check_checkpoint_monitor(cfg: DictConfig) -> None:
    """The checkpoint selection (``callbacks.checkpoint``, a ``ModelCheckpoint``): ``mode`` min or max, and a
    ``monitor`` under ``val/`` that the module logs (``val/<ClassificationMetrics.NAMES>`` and
    ``module.VALIDATION_RECORDS``) in the direction that ranks it (the highest accuracy, the lowest error or loss).
    Lightning checks the name only at the end of the first epoch's validation. A name outside ``val/`` (a
    training metric, one your own callback logs) is left to Lightning."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from labelsmooth.tracking.wandb_run import best_value_summaries

    node = OmegaConf.select(cfg, "callbacks.checkpoint", default=None)
    if not node or "_target_" not in node or not issubclass(hydra.utils.get_class(node._target_), ModelCheckpoint):
        return
    monitor, mode = node.get("monitor"), node.get("mode", "min")
    if mode not in ("min", "max"):
        raise ConfigurationError(f"callbacks.checkpoint.mode={mode} must be min or max")
    if not isinstance(monitor, str) or not monitor.startswith(("val/", "test/")):
        return
    names = validation_metric_names()
    if monitor not in names:
        hint = f"did you mean {near}? " if (near := closest(monitor.replace("test/", "val/", 1), names)) else ""
        raise ConfigurationError(
            f"callbacks.checkpoint.monitor={monitor} is not a validation metric: {hint}the checkpoints are selected "
            f"during training by one of {', '.join(names)}"
        )
    best = best_value_summaries().get(monitor)  # None: descriptive (confidence, entropy, the best epoch)
    if best is not None and mode != best:
        ranked = "highest" if best == "max" else "lowest"
        raise ConfigurationError(
            f"callbacks.checkpoint.mode={mode} would keep the checkpoint with the worst {monitor} (the {ranked} is "
            f"the best): set callbacks.checkpoint.mode={best}"
        )


def validation_metric_names() -> list[str]:
    """The numbers a run records of each validation and of its validations together (``VALIDATION_RECORDS``)."""
    from labelsmooth.calibration.metrics import ClassificationMetrics
    from labelsmooth.module import VALIDATION_RECORDS

    return [f"val/{name}" for name in ClassificationMetrics.NAMES] + list(VALIDATION_RECORDS)


def check_optimized_metric(cfg: DictConfig) -> None:
    """``optimized_metric``, the number each job returns to the sweeper: a name under ``val/`` must be one the run
    records; other names are read from ``metrics.json`` at the end, with a warning when absent."""
    name = cfg.get("optimized_metric")
    if isinstance(name, str) and name.startswith("val/") and name not in (names := validation_metric_names()):
        hint = f"did you mean {near}? " if (near := closest(name, names)) else ""
        raise ConfigurationError(
            f"optimized_metric={name} is not a number the run records: {hint}the validation records {', '.join(names)}"
        )
