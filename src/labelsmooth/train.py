"""Training entry point: a Hydra app over ``conf/train.yaml``.

One run: compose the config → seed → data module (it knows ``num_classes``, the image shape and the
class prior) → model and smoothing strategy → LightningModule → Trainer → ``fit`` → validate and test
the best checkpoint → ``metrics.json`` → finish the W&B run with the right exit code → return the
optimized metric to the sweeper.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.log_files import log_to_files
from labelsmooth.resolvers import register_resolvers

register_resolvers()  # before Hydra composes conf/ (hydra.run.dir uses ls_run_dir)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
log = logging.getLogger(__name__)


class ConfigurationError(ValueError):
    """A run configuration that cannot work, with a message that says how to fix it."""


# Errors that come from the user's configuration, data or files rather than from a bug: they are reported as
# one short message without a traceback (unless HYDRA_FULL_ERROR=1).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, EOFError, FloatingPointError, NotImplementedError)


@dataclass
class RunContext:
    """What the Hydra runtime knows about this job, as plain values (so ``train`` is testable without it)."""

    output_dir: Path
    choices: dict[str, str] = field(default_factory=dict)
    multirun: bool = False
    sweep_dir: str | None = None
    job_num: int | None = None
    override_dirname: str = ""
    overrides: tuple[str, ...] = ()  # the job's command-line overrides (Hydra's overrides.task)

    @classmethod
    def from_hydra(cls) -> RunContext:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        return cls(
            output_dir=Path(hydra_cfg.runtime.output_dir),
            choices={k: str(v) for k, v in hydra_cfg.runtime.choices.items() if v is not None},
            multirun=multirun,
            sweep_dir=str(hydra_cfg.sweep.dir) if multirun else None,
            job_num=int(hydra_cfg.job.num) if multirun else None,
            override_dirname=str(hydra_cfg.job.override_dirname or ""),
            overrides=tuple(str(o) for o in hydra_cfg.overrides.task),
        )


def _requested_devices(trainer_cfg: DictConfig) -> int:
    from labelsmooth.sweeps import explicit_device_count

    count = explicit_device_count(trainer_cfg.get("devices", 1))
    if count is not None:
        return count
    import torch  # "auto" or -1: every visible accelerator

    return max(torch.cuda.device_count(), 1) if trainer_cfg.get("accelerator") != "cpu" else 1


TRAINER_COUNTS = {"max_epochs": -1, "min_epochs": 0, "max_steps": -1, "accumulate_grad_batches": 1}


def check_trainer_counts(trainer_cfg: DictConfig) -> None:
    """Refuse a ``trainer.max_epochs`` (``min_epochs``, ``max_steps``, ``accumulate_grad_batches``) that is not a
    whole number in range before the data set is read (Lightning would fail on it only once training starts)."""
    for key, minimum in TRAINER_COUNTS.items():
        value = trainer_cfg.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ConfigurationError(f"trainer.{key}={value!r} must be an integer >= {minimum} (or null)")


def check_devices(trainer_cfg: DictConfig) -> None:
    """Refuse more devices than this machine has, before Lightning launches processes for them."""
    import torch

    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    devices = trainer_cfg.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        return
    requested = _requested_devices(trainer_cfg)
    if accelerator in {"gpu", "cuda"} or (accelerator == "auto" and torch.cuda.is_available()):
        available, kind = torch.cuda.device_count(), "GPU"
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
    """Lightning's subprocess DDP re-launches the script per device, which Hydra multirun cannot do."""
    strategy = str(trainer_cfg.get("strategy", "auto"))
    if multirun and strategy.startswith("ddp") and "spawn" not in strategy and _requested_devices(trainer_cfg) > 1:
        raise ConfigurationError(
            f"trainer.strategy={strategy} with {_requested_devices(trainer_cfg)} devices cannot run inside a Hydra "
            "multirun: Lightning's subprocess DDP re-launches the script, which a sweep job cannot do. Instead "
            "run one process per job (trainer=default or trainer.devices=1) and run jobs in parallel with "
            "hydra/launcher=joblib (one machine) or hydra/launcher=submitit_slurm (a cluster), or run the DDP "
            "training as a single run without -m."
        )


def smoothing_parameters(smoothing_cfg: DictConfig | None) -> dict[str, Any]:
    """The strategy's parameters as flat ``smoothing.<name>`` entries of ``metrics.json``."""
    if not smoothing_cfg:
        return {}
    values = OmegaConf.to_container(smoothing_cfg, resolve=True)
    return {
        f"smoothing.{key}": value
        for key, value in values.items()
        if not key.startswith("_") and (value is None or isinstance(value, (int, float, str, bool, list)))
    }


def root_cause(error: BaseException) -> BaseException:
    """The user's error behind Hydra's ``InstantiationException`` wrappers."""
    from hydra.errors import InstantiationException

    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error


def error_message(error: BaseException) -> str:
    """The message of ``error``; for an error re-raised from a DataLoader worker, whose message carries the
    worker's whole traceback, its last line (the worker's own error, e.g. the image file it could not read)."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"in a DataLoader worker: {lines[-1]}"


def _target_name(node: DictConfig | None) -> str:
    if not node or "_target_" not in node:
        return "none"
    return str(node["_target_"]).rsplit(".", 1)[-1]


def model_name(choice: str | None, model_cfg: DictConfig | None) -> str:
    """The model as ``metrics.json`` and the report name it: the ``model=`` choice (``resnet_v1``), or, where a
    recipe picked it per data set (``mezzini2019/cifar10``), its class and depth (``ResNetV2-83``)."""
    if choice and "/" not in choice:
        return choice
    name = _target_name(model_cfg)
    depth = model_cfg.get("depth") if model_cfg else None
    return f"{name}-{depth}" if depth is not None else name


def _instantiate_callbacks(callbacks_cfg: DictConfig | None, progress_bar: bool, has_logger: bool) -> list:
    """The configured callbacks, less progress bars under ``trainer.enable_progress_bar=false`` and the
    learning-rate monitor when there is no logger to write to."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar

    if not callbacks_cfg:
        return []
    callbacks = [hydra.utils.instantiate(entry) for entry in callbacks_cfg.values() if entry and "_target_" in entry]
    unusable = (() if progress_bar else (ProgressBar,)) + (() if has_logger else (LearningRateMonitor,))
    return [c for c in callbacks if not isinstance(c, unusable)]


def instantiate_logger(cfg: DictConfig, context: RunContext, resume_wandb_id: str | None = None):
    from labelsmooth.wandb_setup import (
        redact_secrets,
        remove_anonymous_setting,
        sweep_group_name,
        wants_online,
        why_wandb_cannot_go_online,
    )

    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    logger_cfg = cfg.logger
    if logger_cfg._target_.endswith("WandbLogger"):
        if os.environ.get("WANDB_MODE", "").lower() == "disabled":
            log.info("WANDB_MODE=disabled: no W&B run (metrics.json, checkpoints and plots are written as usual)")
            return False
        if cfg.get("paths") and cfg.paths.get("log_dir"):  # W&B's staged table files next to the runs, not in ~
            os.environ.setdefault("WANDB_DATA_DIR", str(Path(cfg.paths.log_dir) / ".wandb-data"))
        extra: dict[str, Any] = {"offline": True}
        if wants_online(bool(logger_cfg.get("offline", True))):
            reason = why_wandb_cannot_go_online()
            if reason is None:
                extra["offline"] = False
            else:
                log.warning("W&B online mode is not possible (%s); logging offline instead.", reason)
                os.environ["WANDB_MODE"] = "offline"
        if resume_wandb_id and logger_cfg.get("id") is None:
            extra["id"] = resume_wandb_id
        if context.multirun and logger_cfg.get("group") is None:
            extra["group"] = sweep_group_name(context.sweep_dir or "sweep")
        if logger_cfg.get("name") is None and context.override_dirname:
            extra["name"] = ",".join(redact_secrets(context.override_dirname.split(",")))
        logger = hydra.utils.instantiate(logger_cfg, **extra)
        remove_anonymous_setting(logger)
        return logger
    return hydra.utils.instantiate(logger_cfg)


CHOSEN_GROUPS = ("dataset", "model", "smoothing", "augment", "experiment", "hparams_search", "sweep")


def wandb_config(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """The logged run config, secrets redacted: the resolved Hydra config, plus ``choices``, the config-group names
    (``dataset: cifar10``, ``smoothing: gamma``, ...) that the config itself only holds as class paths: what W&B
    filters by."""
    from labelsmooth.wandb_setup import redact_secrets

    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = {group: choices[group] for group in CHOSEN_GROUPS if choices.get(group)}
    return redact_secrets(config)


def finish_wandb(logger: Any, exit_code: int, summary: dict[str, Any] | None = None) -> None:
    """End this job's W&B run (if one was started) so the next job of the same process gets its own; a failed
    run's W&B summary gets the ``status``, ``error_type`` and ``error`` of its ``metrics.json``."""
    if logger is None or type(logger).__name__ != "WandbLogger":
        return
    import wandb

    if wandb.run is not None:
        if exit_code != 0 and summary is not None:
            wandb.run.summary.update({k: summary[k] for k in ("status", "error_type", "error") if k in summary})
        if wandb.run.settings._offline:
            run_dir = Path(wandb.run.dir).parent
            print(f"W&B offline run saved; upload it with: wandb sync {run_dir}")
        wandb.finish(exit_code=exit_code)


def _print_summary(summary: dict[str, Any], output_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary.get('dataset')} · {summary.get('model')} · {summary.get('smoothing')}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(k for k in summary if k.startswith(("val/", "test/"))):
        value = summary[key]
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console = Console()
    console.print(table)
    console.print(f"test accuracy: {summary.get('test/acc', float('nan')):.4f}   outputs: {output_dir}")


def _start_checkpoint(cfg: DictConfig, context: RunContext) -> tuple[str | None, str | None]:
    """The checkpoint ``fit`` starts from (``resume`` or ``ckpt_path``) and the W&B run id to continue."""
    from labelsmooth.resume import LAST_CHECKPOINT, find_run_to_resume, previous_wandb_run_id

    resume = cfg.get("resume", False)
    if resume in (None, False) or str(resume).lower() == "false":
        return cfg.get("ckpt_path"), None
    last = context.output_dir / LAST_CHECKPOINT
    if not last.is_file():
        if context.multirun:
            what = f"this sweep job's directory {context.output_dir} has no {LAST_CHECKPOINT}"
        elif str(resume).lower() == "true":
            runs_root = context.output_dir.parent.parent
            what = f"no earlier run with the same overrides under {runs_root} has a {LAST_CHECKPOINT}"
            unfinished = find_run_to_resume(
                runs_root, context.overrides, with_checkpoint=False, exclude=context.output_dir
            )
            if unfinished is not None:
                what += f" (the latest, {unfinished}, stopped before its first checkpoint: start it afresh)"
        else:
            what = f"{context.output_dir} has no {LAST_CHECKPOINT}"
        fix = (
            "To continue a sweep, run it again without resume= but with resume_sweep=true and "
            "hydra.sweep.dir=<its directory>: completed jobs are skipped, interrupted ones continue from their last "
            "checkpoint, the others start afresh."
            if context.multirun
            else "Start without resume=true, or name the run: resume=outputs/runs/<date>/<time>."
        )
        raise ConfigurationError(f"resume={resume}: nothing to resume: {what}. {fix}")
    log.info("Resuming from %s", last)
    return str(last), previous_wandb_run_id(context.output_dir)


_TORCH_DEFAULT_THREADS: list[int] = []  # torch's own thread count, seen before any job of this process set one


def set_num_threads(num_threads: Any) -> None:
    """``torch.set_num_threads(num_threads)`` (``num_threads`` config key); None: torch's default, also for a job
    that follows, in the same process (a sequential multirun), one that set another count."""
    import torch

    if not _TORCH_DEFAULT_THREADS:
        _TORCH_DEFAULT_THREADS.append(torch.get_num_threads())
    if num_threads is None:
        num_threads = _TORCH_DEFAULT_THREADS[0]
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ConfigurationError(f"num_threads={num_threads!r} must be a positive integer (null: torch's default)")
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def check_model_fits_data(net: Any, datamodule: Any) -> None:
    """One forward pass on a zero batch of the data set's shape, so a mismatch fails with a clear message."""
    import torch

    from labelsmooth.error_text import first_line

    shape = (2, *datamodule.image_shape)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(shape))
    except (RuntimeError, ValueError, AssertionError) as error:  # timm asserts the input size of its ViTs
        fixed_size = " (a timm model built for one input size, such as a ViT: model.pass_image_size=true)"
        raise ConfigurationError(
            f"the model ({type(net).__name__}) does not accept the data set's inputs of shape {tuple(shape[1:])} "
            f"(channels, height, width): {first_line(error)}. Choose a model for this "
            f"input size and number of channels{fixed_size if type(net).__module__.startswith('timm') else ''}."
        ) from error
    finally:
        net.train(was_training)
    if out.shape != (2, datamodule.num_classes):
        raise ConfigurationError(
            f"the model ({type(net).__name__}) outputs shape {tuple(out.shape[1:])} per sample but the data set has "
            f"{datamodule.num_classes} classes"
        )


def check_strategy_before_data(cfg: DictConfig) -> None:
    """Build the smoothing strategy once, before any data is read or downloaded, when the data set config declares
    its number of classes: a γ <= 1/K or an ε out of range then fails in a second, not after the data set was
    decoded. (Data sets that count their classes from the files are checked when the module is built.)"""
    num_classes = cfg.dataset.get("num_classes") if cfg.get("dataset") else None
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and cfg.get("smoothing"):
        hydra.utils.instantiate(cfg.smoothing, num_classes=num_classes)


def compose_config(overrides: list[str] | None = None, output_dir: str | Path | None = None) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides`` as ``python train.py <overrides>`` would, outside a Hydra
    app (tests, benchmarks, notebooks); ``output_dir`` replaces the run directory Hydra would have made."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides or []))
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir)
    return cfg


def build_module(cfg: DictConfig, datamodule: Any):
    """The LightningModule of a run config: network, strategy, batch augment, optimizer and scheduler, sized by
    the data module (classes, channels, image size, class prior)."""
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
    return LabelSmoothingClassifier(
        net=net,
        criterion=criterion,
        optimizer=hydra.utils.instantiate(cfg.optimizer),
        scheduler=scheduler,
        num_classes=num_classes,
        augment=augment,
    )


def train(cfg: DictConfig, context: RunContext) -> dict[str, Any]:
    """Train, validate and test one configuration; write ``metrics.json``; return the summary dict."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.utilities import rank_zero_only

    from labelsmooth.checkpoints import check_checkpoint_matches, check_checkpoint_path
    from labelsmooth.quiet import silence_library_noise
    from labelsmooth.result_guard import may_replace
    from labelsmooth.run_outputs import write_metrics_json
    from labelsmooth.sweeps import job_overrides
    from labelsmooth.wandb_setup import redact_secrets

    summary: dict[str, Any] = {
        "status": "running",
        "seed": cfg.get("seed"),
        "dataset": context.choices.get("dataset", _target_name(cfg.get("dataset"))),
        "model": model_name(context.choices.get("model"), cfg.get("model")),
        "smoothing": context.choices.get("smoothing", _target_name(cfg.get("smoothing"))),
        **smoothing_parameters(cfg.get("smoothing")),
        "augment": context.choices.get("augment", _target_name(cfg.get("augment"))),
        "overrides": redact_secrets(job_overrides(context.overrides)),
    }
    logger: Any = None
    exit_code = 1
    keeps_other_result = False
    silence_library_noise()
    try:
        if (refusal := refusal_of_other_completed_job(context, summary["overrides"])) is not None:
            keeps_other_result = True
            raise refusal
        check_multirun_ddp(cfg.trainer, context.multirun)
        check_trainer_counts(cfg.trainer)
        check_devices(cfg.trainer)
        ckpt_path, resume_wandb_id = _start_checkpoint(cfg, context)
        if ckpt_path:  # a mistyped path fails before the data set is downloaded or read
            check_checkpoint_path(ckpt_path)
        set_num_threads(cfg.get("num_threads"))
        summary["num_threads"] = torch.get_num_threads()
        check_strategy_before_data(cfg)
        pl.seed_everything(cfg.seed, workers=True)
        datamodule = hydra.utils.instantiate(cfg.dataset)
        datamodule.prepare_data()
        datamodule.setup("fit")
        module = build_module(cfg, datamodule)
        check_model_fits_data(module.net, datamodule)
        if ckpt_path:
            check_checkpoint_matches(ckpt_path, module)
        logger = instantiate_logger(cfg, context, resume_wandb_id)
        callbacks = _instantiate_callbacks(
            cfg.get("callbacks"), cfg.trainer.get("enable_progress_bar", True), has_logger=bool(logger)
        )
        trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
        if logger:
            logger.log_hyperparams(wandb_config(cfg, context.choices))

        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        best_ckpt = best or None
        summary["checkpoint"] = best
        for results in (
            trainer.validate(module, datamodule=datamodule, ckpt_path=best_ckpt, verbose=False, weights_only=True),
            trainer.test(module, datamodule=datamodule, ckpt_path=best_ckpt, verbose=False, weights_only=True),
        ):
            for key, value in results[0].items():
                summary[key] = float(value)
        summary["epochs"] = trainer.current_epoch
        summary["world_size"] = trainer.world_size
        summary["status"] = "completed"
        exit_code = 0
        return summary
    except BaseException as error:
        cause = root_cause(error)
        summary["status"] = "failed"
        summary["error_type"] = type(cause).__name__
        summary["error"] = redact_secrets(error_message(cause))
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            summary["error_type"], summary["error"] = "Interrupted", interruption_message(cause, context.multirun)
        log_failure(f"{summary['error_type']}: {summary['error']}", to_console=context.multirun)
        if logger is None and context.multirun and isinstance(error, Exception):
            logger = failed_job_wandb_run(cfg, context)
        raise
    finally:
        if rank_zero_only.rank == 0 and not keeps_other_result and may_replace(context.output_dir, summary):
            write_metrics_json(context.output_dir, summary)
        finish_wandb(logger, exit_code, summary)
        if rank_zero_only.rank == 0 and summary["status"] == "completed":  # last, after W&B's run summary
            _print_summary(summary, context.output_dir)


def refusal_of_other_completed_job(context: RunContext, overrides: list[str]) -> ConfigurationError | None:
    """The error that refuses this run when its directory holds the completed run of another job (see
    ``labelsmooth.result_guard``), after putting back that run's ``.hydra/overrides.yaml``; None otherwise."""
    from labelsmooth.result_guard import describe_difference, other_completed_job, restore_recorded_overrides

    recorded = other_completed_job(context.output_dir, overrides)
    if recorded is None:
        return None
    restore_recorded_overrides(context.output_dir, recorded)
    if context.multirun:
        fix = (
            "The sweep's grid is not the one that ran there (other values or another order give the jobs other "
            "numbers): re-run it with the same grid, or give it a new hydra.sweep.dir."
        )
    else:
        fix = "Resume it with its own overrides, or start a new run without resume=."
    return ConfigurationError(
        f"{context.output_dir} holds the completed run of another job ({describe_difference(recorded, overrides)}); "
        f"its metrics.json and checkpoints are left as they are. {fix}"
    )


class RunInterrupted(SystemExit):
    """The run was stopped by SIGTERM or Ctrl-C: exit code 1 (Lightning's own ``SIGTERMException`` exits 0, which
    would tell a scheduler or a script that the run succeeded) and the message says how to continue."""


def interruption_message(cause: BaseException, multirun: bool) -> str:
    sigterm = "SIGTERM" in type(cause).__name__  # Lightning's SIGTERMException
    what = "stopped by SIGTERM (a time limit, preemption or kill)" if sigterm else "interrupted (Ctrl-C)"
    how = (
        "run the same command again with resume_sweep=true and hydra.sweep.dir=<this sweep's directory> (completed "
        "jobs are skipped, interrupted ones continue)"
        if multirun
        else "run it again with the same overrides and resume=true"
    )
    return f"{what}; to continue from its last checkpoint, {how}"


def failed_job_wandb_run(cfg: DictConfig, context: RunContext) -> Any:
    """A W&B run for a sweep job that failed before its logger was built (a bad parameter, missing data), so the
    sweep's W&B group shows every job, this one as failed; None without a W&B logger or when it cannot start."""

    logger_cfg = cfg.get("logger")
    if not logger_cfg or not str(logger_cfg.get("_target_", "")).endswith("WandbLogger"):
        return None
    try:
        logger = instantiate_logger(cfg, context)
        if logger:
            logger.log_hyperparams(wandb_config(cfg, context.choices))
        return logger or None
    except Exception as error:  # the job's own error is the one to report
        log.warning("No W&B run for this failed job: %s", error)
        return None


def log_failure(message: str, to_console: bool) -> None:
    """Log a run's error to the run's log file, and to the console only when asked: a single run's error is
    printed once by Hydra as it exits, while in a multirun each job's failure shows as it happens."""
    if to_console:
        log.error(message)
    else:
        log_to_files(log, logging.ERROR, message)


class RunFailed(CompactHydraException):
    """A run stopped by a configuration, data or file problem: Hydra prints only this message (and the full
    traceback when ``HYDRA_FULL_ERROR=1``)."""


def as_compact_user_error(error: Exception) -> Exception:
    """``RunFailed`` with the message of the user's error behind ``error`` (configuration, data, files); ``error``
    itself when it is a bug, whose traceback the user should see."""
    cause = root_cause(error)
    if isinstance(cause, USER_ERRORS) or type(cause).__name__ == "MisconfigurationException":
        return RunFailed(f"{type(cause).__name__}: {error_message(cause)}")
    return error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    context = RunContext.from_hydra()
    if cfg.get("resume_sweep"):  # re-run of a sweep: completed jobs are skipped, interrupted ones continue
        from labelsmooth.sweeps import can_continue, completed_job, optimized_value

        if (done := completed_job(cfg, context.output_dir, context.overrides, context.choices)) is not None:
            return optimized_value(done, cfg.get("optimized_metric"))
        if not cfg.get("resume") and can_continue(context.output_dir, context.overrides):
            log.info("resume_sweep: %s continues from its last checkpoint", context.output_dir)
            with open_dict(cfg):
                cfg.resume = True
    try:
        summary = train(cfg, context)
    except (KeyboardInterrupt, SystemExit) as error:
        raise RunInterrupted(f"Interrupted: {interruption_message(error, context.multirun)}") from error
    except Exception as error:
        compact = as_compact_user_error(error)
        if compact is error:
            raise
        raise compact from error
    value = summary.get(cfg.get("optimized_metric"))
    return float(value) if value is not None else None
