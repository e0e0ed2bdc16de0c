"""Step 3 of a fused group (``labelsmooth.cli.fused``): each member finished as a complete run of its own, by the
app's own code, with the member's logger, Trainer and callbacks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from labelsmooth.cli.fused import Member


def finish(member: Member, cfg: DictConfig) -> float | None:
    """Step 3 for one job, under the app's error policy; returns the optimized metric to the sweeper."""
    from labelsmooth.cli.errors import run_app
    from labelsmooth.runs.sweeps import optimized_value

    with member.lock:  # held since its set-up (``prepare``)
        summary = run_app(lambda: complete(member, cfg), member.context.multirun)
    return optimized_value(summary, cfg.get("optimized_metric"))


def complete(member: Member, cfg: DictConfig) -> dict[str, Any]:
    """The member's run record: its error, or its logger, epoch history, final validation and test, and
    ``metrics.json``, as ``labelsmooth.cli.train.train`` finishes a run."""
    import torch

    from labelsmooth.cli.build import build_trainer
    from labelsmooth.cli.lifecycle import RunLifecycle
    from labelsmooth.cli.tracking import failed_job_wandb_run, instantiate_logger, wandb_config, wandb_record
    from labelsmooth.cli.train import describe_run, finish_run
    from labelsmooth.runs.history import write_history_csv
    from labelsmooth.runs.layout import RunDirectory
    from labelsmooth.runs.resume import previous_wandb_run_id
    from labelsmooth.tracking.log_files import write_to_files

    context = member.context
    summary = {**describe_run(cfg, context), "fused_group": member.group}
    title = f"{summary['dataset']} · {summary['model']} · {summary['smoothing']} (fused)"
    failed_run_logger = lambda: failed_job_wandb_run(cfg, context)  # noqa: E731
    write_to_files(member.setup_log)  # what its run logs before its fit: its data set and seed
    with RunLifecycle(context, summary, title=title, failed_run_logger=failed_run_logger) as run:
        if member.error is not None and not member.checked:  # refused before any data, as its run would be
            raise member.error
        run.claim()
        keeps_epoch_log, logs_rates = callbacks_of_its_run(cfg)
        history, failed_epoch = (member.history, member.failed_epoch) if logs_rates else without_rates(member)
        if history and keeps_epoch_log:  # the epochs it trained, a member that failed too (as a run that fails)
            write_history_csv(RunDirectory(context.output_dir).history_csv, history)
        run.summary["num_threads"] = torch.get_num_threads()  # recorded by a run that fails as well
        if member.error is not None and member.module is None:  # failed before its fit: its run has no logger yet
            raise member.error
        # a member interrupted before (its W&B run holds the epochs it trained) continues that run, as a job does
        earlier = previous_wandb_run_id(context.output_dir) if cfg.get("resume_sweep") is True else None
        run.logger = instantiate_logger(cfg, context, earlier)
        run.summary.update(wandb_record(run.logger))
        trainer = build_trainer(cfg, run.logger)
        if member.schedule is not None:  # the schedule that ran in fit, with its values, as in a separate run
            trainer.callbacks[:] = [
                member.schedule if isinstance(c, type(member.schedule)) else c for c in trainer.callbacks
            ]
        if run.logger:
            run.logger.log_hyperparams(wandb_config(cfg, context.choices))
        replay_history(run.logger, history, failed_epoch, epoch_lines=keeps_epoch_log)
        write_to_files(member.fit_log)
        if member.error is not None:  # failed in the group's fit: its logger holds the epochs it trained
            raise member.error
        continue_after_fit(trainer, member.epochs, member.steps)
        finish_run(run, trainer, member.module, member.datamodule, member.best, epochs=member.epochs)
    return run.summary


def callbacks_of_its_run(cfg: DictConfig) -> tuple[bool, bool]:
    """Whether the member's run keeps the epoch log (``history.csv`` and its ``train.log`` lines: ``EpochLogFile``)
    and logs the learning rates (a ``LearningRateMonitor``), as its ``callbacks`` config builds them."""
    from pytorch_lightning.callbacks import LearningRateMonitor

    from labelsmooth.callbacks.epoch_log import EpochLogFile
    from labelsmooth.cli.fused_groups import callback_objects

    classes = [made for made in callback_objects(cfg.get("callbacks")).values() if isinstance(made, type)]
    return any(issubclass(c, EpochLogFile) for c in classes), any(issubclass(c, LearningRateMonitor) for c in classes)


def without_rates(member: Member) -> tuple[list[dict[str, float]], dict[str, float]]:
    """The member's epoch history and failed epoch without the learning rates, which the group records for every
    member and a run without a learning-rate monitor does not log."""
    keep = lambda values: {k: v for k, v in values.items() if not k.startswith("lr-")}  # noqa: E731
    failed_epoch = keep(member.failed_epoch)
    return [keep(values) for values in member.history], failed_epoch if len(failed_epoch) > 1 else {}


def replay_history(
    logger: Any, history: list[dict[str, float]], failed_epoch: dict[str, float], epoch_lines: bool = True
) -> None:
    """The member's epoch values into its logger as its run's Lightning logs them, and one line per epoch into its
    ``train.log``. The run logs the learning rates at the epoch's start (``EpochLearningRateMonitor``, at the steps
    taken before it), then the validation values and the training ones, each with the epoch, at the epoch's last
    step (``step - 1``: its loops count the last batch's step after logging); a history row's ``step`` is the
    optimizer steps taken by the epoch's end. The line gives the epoch's steps, not its time (the group's). A
    member that failed in fit logged the learning rates of the epoch it failed in (``failed_epoch``: that epoch
    and its rates), as its run's logger logs them at the epoch's start."""
    from labelsmooth.callbacks.progress import format_metric

    epochs = logging.getLogger("labelsmooth.epochs")
    started_at = 0
    for values in history:
        metrics = {key: value for key, value in values.items() if key not in ("step", "epoch")}
        ended_at, epoch = int(values["step"]), {"epoch": values["epoch"]}
        rates = {key: value for key, value in metrics.items() if key.startswith("lr-")}
        validation = {key: value for key, value in metrics.items() if key.startswith("val/")}
        training = {key: value for key, value in metrics.items() if key not in rates and key not in validation}
        if logger:
            for row, step in (({**rates, **epoch}, started_at), ({**validation, **epoch}, ended_at - 1)):
                if len(row) > ("epoch" in row):
                    logger.log_metrics(row, step=step)
            logger.log_metrics({**training, **epoch}, step=ended_at - 1)
        text = ", ".join(f"{k}={format_metric(v)}" for k, v in sorted(metrics.items()))
        if epoch_lines:
            epochs.info("epoch %d done (fused group): %d steps; %s", int(values["epoch"]), ended_at - started_at, text)
        started_at = ended_at
    if logger and failed_epoch:
        logger.log_metrics(failed_epoch, step=started_at)


def continue_after_fit(trainer: Any, epochs: int, steps: int) -> None:
    """A fresh ``trainer`` set to where the member's run stands after its fit (``epochs`` trained, ``steps``
    optimizer steps), so its final validation and test are logged at that epoch and step, as a separate run's
    (Lightning's logger connector reads the fit loop's epoch progress and its count of stepped batches)."""
    trainer.fit_loop.epoch_progress.current.completed = epochs
    trainer.fit_loop.epoch_loop._batches_that_stepped = steps
