"""The training app: ``python train.py`` (or ``labelsmooth-train``) over ``conf/train.yaml``.

One run: compose the config → check it → seed → data module (it knows ``num_classes``, the image shape and the
class prior) → model and smoothing strategy → LightningModule → Trainer → ``fit`` → validate and test the best
checkpoint → ``metrics.json`` → finish the W&B run with the right exit code → return the optimized metric to the
sweeper.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from labelsmooth.cli.build import (
    CONFIG_DIR,
    build_datamodule,
    build_module,
    build_trainer,
    compose_config,
    strategy_before_data,
    training_parts,
)
from labelsmooth.cli.checks import (
    check_added_keys,
    check_augment,
    check_callbacks,
    check_checkpoint_monitor,
    check_devices,
    check_multirun_ddp,
    check_optimized_metric,
    check_optimizer,
    check_precise_bn,
    check_seed_backprop,
    check_start,
    set_num_threads,
)
from labelsmooth.cli.context import job_context
from labelsmooth.cli.data_checks import (
    check_a_last_batch_of_one_trains,
    check_model_fits_data,
    check_splits_cover_the_processes,
    check_validation_interval,
    warn_of_an_unpaired_last_sample,
)
from labelsmooth.cli.devices import held_gpu_of_parallel_job, slurm_restarts
from labelsmooth.cli.errors import run_app
from labelsmooth.cli.lifecycle import RunLifecycle, is_rank_zero
from labelsmooth.cli.model_checks import check_model_before_data
from labelsmooth.cli.options import with_known_options
from labelsmooth.cli.resolvers import register_resolvers
from labelsmooth.cli.schema import plain_value
from labelsmooth.cli.tracking import (
    failed_job_wandb_run,
    instantiate_logger,
    log_records_to_wandb,
    wandb_config,
    wandb_record,
)
from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.overrides import job_overrides
from labelsmooth.runs.record import UNSMOOTHED_PREFIX, model_name, strategy_parameters, target_name
from labelsmooth.tracking.wandb_run import redact_secrets

__all__ = ["CONFIG_DIR", "ConfigurationError", "RunContext", "compose_config", "main", "train"]

register_resolvers()  # before Hydra composes conf/ (hydra.run.dir uses ls_run_dir)
log = logging.getLogger(__name__)


def train(cfg: DictConfig, context: RunContext) -> dict[str, Any]:
    """Train, validate and test one configuration; write ``metrics.json``; return the summary dict."""
    import pytorch_lightning as pl
    import torch

    from labelsmooth.cli.teacher import load_teacher
    from labelsmooth.runs.checkpoints import (
        check_same_classes,
        check_same_training,
        check_weights_fit,
        load_checkpoint,
    )
    from labelsmooth.runs.files import recorded_metrics
    from labelsmooth.runs.layout import RunDirectory
    from labelsmooth.runs.lock import training_in
    from labelsmooth.runs.provenance import earlier_code
    from labelsmooth.runs.result_guard import refuse_other_completed_job, refuse_unfinished_run
    from labelsmooth.runs.resume import start_checkpoint
    from labelsmooth.specification import SPECIFICATION_KEY

    summary = describe_run(cfg, context)
    title = f"{summary['dataset']} · {summary['model']} · {summary['smoothing']}"
    failed_run_logger = (lambda: failed_job_wandb_run(cfg, context)) if context.multirun else None
    with (
        training_in(context.output_dir, lock=is_rank_zero()),  # before anything of this run is written there
        RunLifecycle(context, summary, title=title, failed_run_logger=failed_run_logger) as run,
        contextlib.ExitStack() as held,
    ):
        check_start(cfg, context.overrides, context.multirun)  # resume= with ckpt_path=: refused, not skipped
        refuse_other_completed_job(context, run.summary["overrides"])
        strategy = check_before_data(cfg, context)
        ckpt_path, resume_wandb_id = start_checkpoint(cfg.get("resume", False), cfg.get("ckpt_path"), context)
        if ckpt_path:  # a mistyped path or other training settings fail before the data set is downloaded or read
            run.summary["continued_from"] = str(Path(ckpt_path).absolute())  # last.ckpt, not the file it links to
            run.summary.update(earlier_code(recorded_metrics(RunDirectory.of_checkpoint(ckpt_path).root)))
            checkpoint = load_checkpoint(ckpt_path)
            written = checkpoint.get(SPECIFICATION_KEY)
            check_same_training(written, training_parts(cfg), ckpt_path)
            weights = {"state_dict": checkpoint["state_dict"]}  # kept through the data's set-up: not the optimizer's
            del checkpoint
        origin = RunDirectory.of_checkpoint(ckpt_path).root.resolve() if ckpt_path else None
        here = origin == context.output_dir.resolve()
        refuse_unfinished_run(context, continues=here)  # resume=, or ckpt_path= of a checkpoint of its own directory
        run.claim()
        set_num_threads(cfg.get("num_threads"))
        run.summary["num_threads"] = torch.get_num_threads()

        pl.seed_everything(cfg.seed, workers=True)
        datamodule = build_datamodule(cfg.dataset)
        names = specification_names(run.summary)
        teacher = load_teacher(cfg.teacher_ckpt, datamodule, cfg.paths) if cfg.get("teacher_ckpt") else None
        module = build_module(cfg, datamodule, criterion=strategy, names=names, teacher=teacher)
        check_model_fits_data(module.net, datamodule)
        if ckpt_path:
            check_weights_fit(weights, module, ckpt_path)
            check_same_classes(written, datamodule.class_names, ckpt_path)
        run.logger = instantiate_logger(cfg, context, resume_wandb_id)
        run.summary.update(wandb_record(run.logger))
        if context.parallel:  # job k of a sweep run side by side: a free GPU, from GPU k mod n on
            gpus, sweep = torch.cuda.device_count(), context.sweep_dir
            if gpu := held.enter_context(held_gpu_of_parallel_job(cfg.trainer, context.job_num, gpus, sweep)):
                with open_dict(cfg):
                    cfg.trainer.devices = gpu
        trainer = build_trainer(cfg, run.logger)
        check_validation_interval(trainer, datamodule)
        check_splits_cover_the_processes(trainer, datamodule)
        check_a_last_batch_of_one_trains(trainer, datamodule, module.net)
        warn_of_an_unpaired_last_sample(trainer, datamodule, module.augment)
        if run.logger:
            run.logger.log_hyperparams(wandb_config(cfg, context.choices))

        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        finish_run(run, trainer, module, datamodule, best, epochs=trainer.current_epoch)
    return run.summary


def finish_run(run: RunLifecycle, trainer: Any, module: Any, datamodule: Any, best: str, epochs: int) -> None:
    """After fit (``epochs`` trained): validate and test ``best`` (the last weights when there is none) with
    ``trainer``'s callbacks and logger, and complete ``run``'s record (``metrics.json``) with the results and the
    checkpoint selection (the monitored metric and its mode); with ``logger.log_model=best`` the W&B run gets
    ``best`` as its model artifact."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from labelsmooth.runs.history import recorded_history
    from labelsmooth.runs.provenance import device_record
    from labelsmooth.tracking.wandb_logger import WandbLogger

    run.summary["checkpoint"] = best
    if isinstance(checkpoint := trainer.checkpoint_callback, ModelCheckpoint):
        run.summary["checkpoint.monitor"] = checkpoint.monitor
        run.summary["checkpoint.mode"] = checkpoint.mode
    run.summary.update(test_checkpoint(trainer, module, datamodule, best or None))
    run.summary.update(epochs=epochs, world_size=trainer.world_size, **device_record(trainer))
    run.summary.update(run_records(module, [*trainer.callbacks, datamodule]))
    log_records_to_wandb(run.logger, run.summary, recorded_history(run.context.output_dir))
    if isinstance(run.logger, WandbLogger) and run.logger.logs_best_checkpoint and best:
        record = {k: run.summary.get(k) for k in ("checkpoint.monitor", "val/acc_best", "val/acc_best_epoch", "seed")}
        run.logger.log_best_checkpoint(best, {**record, "dataset": run.summary["dataset"]})
    run.complete()


def describe_run(cfg: DictConfig, context: RunContext) -> dict[str, Any]:
    """What ``metrics.json`` records of a run before it starts (so a failed run records it too): seed, the names of
    the data set, model, strategy and batch mixing, the strategy's parameters and their unsmoothed values, the bins
    of the calibration errors, and the job's overrides (secrets redacted)."""
    smoothing = OmegaConf.to_container(cfg.smoothing, resolve=True) if cfg.get("smoothing") else None
    strategy_class = hydra.utils.get_class(smoothing["_target_"]) if smoothing and "_target_" in smoothing else None
    return {
        "seed": plain_value(cfg.get("seed")),
        "dataset": context.choices.get("dataset", target_name(cfg.get("dataset"))),
        "model": model_name(context.choices.get("model"), cfg.get("model")),
        "smoothing": context.choices.get("smoothing", target_name(cfg.get("smoothing"))),
        **strategy_parameters(smoothing),
        **unsmoothed_parameters(strategy_class),
        "augment": context.choices.get("augment", target_name(cfg.get("augment"))),
        "strategy_schedule": context.choices.get("strategy_schedule", "none"),
        "n_bins": plain_value(cfg.get("n_bins")),
        "overrides": redact_secrets(job_overrides(context.overrides)),
    }


def specification_names(described: dict[str, Any]) -> dict[str, str]:
    """The names a run's checkpoints carry in its specification (``describe_run``'s data set, model, strategy, batch
    mixing and strategy schedule), for an evaluation of a checkpoint alone to name them as its run does."""
    return {key: described[key] for key in ("dataset", "model", "smoothing", "augment", "strategy_schedule")}


def unsmoothed_parameters(strategy_class: type | None) -> dict[str, float]:
    """The parameter values that mean "no smoothing", as the strategy class declares them (``unsmoothed``), as
    ``unsmoothed.smoothing.<name>`` entries; none for a class that is not a strategy (or no class)."""
    from labelsmooth.smoothing import SchedulableParameters

    if strategy_class is None or not issubclass(strategy_class, SchedulableParameters):
        return {}
    return {f"{UNSMOOTHED_PREFIX}smoothing.{name}": value for name, value in strategy_class.unsmoothed.items()}


def check_before_data(cfg: DictConfig, context: RunContext) -> Any:
    """Every check that needs no data (besides ``check_start``, which ``train`` makes first): the config's types and
    ranges (``labelsmooth.cli.schema``), devices, DDP in a sweep, optimizer, callbacks, network and distillation
    teacher; returns the strategy, built here once where the data set config declares its number of classes (a
    γ <= 1/K, or a schedule that takes it out of its range, then fails before any data is read), else None."""
    from labelsmooth.cli.schema import check_training_precision, validate_run_config
    from labelsmooth.cli.teacher import check_teacher_before_data

    check_added_keys(cfg, context.overrides, context.choices)
    validate_run_config(cfg)
    check_training_precision(cfg.trainer)
    check_multirun_ddp(cfg.trainer, context.multirun)
    check_devices(cfg.trainer)
    check_optimizer(cfg)
    check_augment(cfg)
    check_precise_bn(cfg)
    check_teacher_before_data(cfg)
    check_checkpoint_monitor(cfg)
    check_optimized_metric(cfg)
    check_callbacks(cfg)
    check_model_before_data(cfg)
    check_seed_backprop(cfg)
    strategy = strategy_before_data(cfg)
    if strategy is not None and cfg.get("strategy_schedule"):
        hydra.utils.instantiate(cfg.strategy_schedule).bind(strategy, cfg.trainer.get("max_epochs"))
    return strategy


def test_checkpoint(trainer: Any, module: Any, datamodule: Any, ckpt_path: str | None) -> dict[str, float]:
    """Validation and test metrics of ``ckpt_path`` (the best checkpoint; the last weights when there is none)."""
    metrics: dict[str, float] = {}
    for evaluate in (trainer.validate, trainer.test):
        results = evaluate(module, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False, weights_only=True)
        metrics.update({key: float(value) for key, value in results[0].items()})
    return metrics


def run_records(module: Any, callbacks: list) -> dict[str, Any]:
    """What the LightningModule, the callbacks and the data module add to ``metrics.json``: the dict of each one's
    ``run_record()`` (e.g. the epoch of the best validation accuracy, a parameter schedule's values)."""
    from labelsmooth.runs.record import RunRecorder

    records: dict[str, Any] = {}
    for part in (module, *callbacks):
        if isinstance(part, RunRecorder):
            records.update(part.run_record())
    return records


def completed_job(
    cfg: DictConfig, output_dir: str | Path, task_overrides: Sequence[str], choices: dict[str, str]
) -> dict[str, Any] | None:
    """``labelsmooth.runs.sweeps.completed_job`` for this config: the ``metrics.json`` of ``output_dir`` if it
    records a completed run of the same job, None (run it) otherwise."""
    from labelsmooth.runs.sweeps import completed_job as recorded_completed_job

    smoothing = OmegaConf.to_container(cfg.smoothing, resolve=True) if cfg.get("smoothing") else {}
    names = {key: choices[key] for key in ("dataset", "model", "smoothing", "augment") if key in choices}
    identity = {"seed": cfg.get("seed"), **names, **strategy_parameters(smoothing)}
    return recorded_completed_job(output_dir, redact_secrets(job_overrides(task_overrides)), identity)


@with_known_options(CONFIG_DIR, "train")
@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from labelsmooth.runs.sweeps import optimized_value

    context = job_context()
    summary = run_app(lambda: completed_or_trained(cfg, context), context.multirun)
    return optimized_value(summary, cfg.get("optimized_metric"))


def completed_or_trained(cfg: DictConfig, context: RunContext) -> dict[str, Any]:
    """The job's recorded metrics when it has completed and is not to run again (a re-run of a sweep, a job that
    SLURM requeued, ``resume=`` of a completed run); else ``train``'s, continuing an interrupted job of a sweep."""
    from labelsmooth.runs.resume import resume_asked

    restarts = slurm_restarts()
    if (cfg.get("resume_sweep") and context.multirun) or restarts:
        from labelsmooth.runs.sweeps import can_continue

        if (done := completed_job(cfg, context.output_dir, context.overrides, context.choices)) is not None:
            return done
        if not cfg.get("resume") and can_continue(context.output_dir, context.overrides):
            why = "resume_sweep" if cfg.get("resume_sweep") else f"requeued by SLURM (restart {restarts})"
            log.info("%s: %s continues from its last checkpoint", why, context.output_dir)
            with open_dict(cfg):
                cfg.resume = True
    elif (
        resume_asked(cfg.get("resume"))
        and not context.multirun
        and not cfg.get("ckpt_path")  # both: train() refuses them together, in one line (check_start)
        and (done := completed_job(cfg, context.output_dir, context.overrides, context.choices)) is not None
    ):  # resume= of a run that has completed: nothing to resume (its metrics.json says so, above)
        return done
    return train(cfg, context)
