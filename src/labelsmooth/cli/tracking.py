"""The run's logger from its config: the W&B run of a job (offline unless asked and possible, grouped by sweep,
named by the job's overrides), the config it logs, and the W&B run of a sweep job that failed before its logger
existed. The W&B rules themselves (secrets, online checks, finishing) are ``labelsmooth.tracking.wandb_run``'s."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from labelsmooth.runs.context import RunContext
from labelsmooth.tracking.wandb_run import (
    define_metrics,
    is_wandb,
    redact_secrets,
    remove_anonymous_setting,
    single_run_group,
    sweep_group_name,
    wants_online,
    why_wandb_cannot_go_online,
)

log = logging.getLogger(__name__)


def instantiate_logger(
    cfg: DictConfig, context: RunContext, resume_wandb_id: str | None = None, group: str | None = None
):
    """The run's logger (``cfg.logger``), False for none. A W&B logger is offline unless online is asked for and
    possible, continues ``resume_wandb_id``, joins ``group`` (by default ``run_group``: its sweep's, or its data set
    and model), is tagged (``run_tags``), named by the job's overrides, and has the project's metric definitions
    (``labelsmooth.tracking.wandb_run.define_metrics``)."""
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return False
    logger_cfg = cfg.logger
    if is_wandb(logger_cfg):
        if os.environ.get("WANDB_MODE", "").lower() == "disabled":
            log.info("WANDB_MODE=disabled: no W&B run (metrics.json, checkpoints and plots are written as usual)")
            return False
        stage_wandb_files_under(Path(context.output_dir))
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
        if logger_cfg.get("group") is None:
            extra["group"] = group or run_group(cfg, context)
        extra["tags"] = run_tags(cfg, context)
        if logger_cfg.get("name") is None and context.override_dirname:
            extra["name"] = ",".join(redact_secrets(context.override_dirname.split(",")))
        logger = hydra.utils.instantiate(logger_cfg, **extra)
        remove_anonymous_setting(logger)
        define_metrics(logger.experiment)
        return logger
    return hydra.utils.instantiate(logger_cfg)


_staging_dir: str | None = None


def stage_wandb_files_under(run_dir: Path) -> None:
    """W&B's staged files (tables, images that an offline run's ``wandb sync`` uploads) under the run's own
    directory, ``<run_dir>/.wandb-data``, rather than in the home directory or the working directory:
    ``WANDB_DATA_DIR``, unless the user set it. Set again for each run of a process (a sweep, a notebook)."""
    global _staging_dir
    if os.environ.get("WANDB_DATA_DIR") in (None, _staging_dir):
        _staging_dir = os.environ["WANDB_DATA_DIR"] = str(run_dir / ".wandb-data")


def wandb_record(logger: Any) -> dict[str, str]:
    """``wandb.id``, ``wandb.group`` and ``wandb.project`` of the run's W&B run (for ``metrics.json``: an evaluation
    of its checkpoints joins its group and names it); empty without one."""
    if not is_wandb(logger):
        return {}
    run = logger.experiment
    if not isinstance(run.id, str):  # the placeholder experiment of a DDP process other than rank 0
        return {}
    return {"wandb.id": run.id, "wandb.group": run.group or "", "wandb.project": run.project or ""}


def run_group(cfg: DictConfig, context: RunContext) -> str:
    """The W&B group of a job: its sweep's (``sweep-<date>-<time>``), or for a single run its data set and model."""
    from labelsmooth.runs.record import model_name, target_name

    if context.multirun:
        return sweep_group_name(context.sweep_dir or "sweep")
    dataset = context.choices.get("dataset", target_name(cfg.get("dataset")))
    return single_run_group(dataset, model_name(context.choices.get("model"), cfg.get("model")))


def run_tags(cfg: DictConfig, context: RunContext) -> list[str]:
    """The W&B tags of a job: the logger's ``tags`` (the config's ``tags``), its strategy's name and
    ``experiment=<name>`` where one is used."""
    tags = [str(tag) for tag in (cfg.logger.get("tags") or [])]
    if context.choices.get("smoothing"):
        tags.append(context.choices["smoothing"])
    if context.choices.get("experiment"):
        tags.append(f"experiment={context.choices['experiment']}")
    return list(dict.fromkeys(tags))


def add_wandb_tags(logger: Any, tags: list[str]) -> None:
    """``tags`` added to a started W&B run (an evaluation learns its strategy from the checkpoint it reads)."""
    from labelsmooth.tracking.wandb_run import is_wandb

    if is_wandb(logger) and (tags := [tag for tag in tags if tag]):
        run = logger.experiment
        run.tags = tuple(dict.fromkeys([*(run.tags or ()), *tags]))


def log_records_to_wandb(logger: Any, summary: dict[str, Any], history: Sequence[dict[str, float]] = ()) -> None:
    """The run's records that are not logged metrics (``val/acc_best_epoch``, ``epochs``, ...) into the W&B run's
    summary, so W&B filters and sorts by them as the report does; the metrics summarised by their best value
    (``best_value_summaries``) keep it, taken over the run's whole ``history`` (its ``history.csv`` rows) where
    given: W&B's own covers the epochs this process logged, which a resumed run's are not all."""
    from labelsmooth.tracking.wandb_run import best_value_summaries, is_wandb

    if not is_wandb(logger):
        return
    import wandb

    if wandb.run is not None:
        kept = {"status", *best_value_summaries()}
        plain = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) and k not in kept}
        wandb.run.summary.update(plain)
        for key, how in best_value_summaries().items():
            values = [row[key] for row in history if math.isfinite(row.get(key, math.nan))]
            if values:
                wandb.run.summary[key] = {how: max(values) if how == "max" else min(values)}


CHOSEN_GROUPS = (
    "dataset",
    "model",
    "smoothing",
    "strategy_schedule",
    "augment",
    "experiment",
    "hparams_search",
    "sweep",
)


def wandb_config(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """The logged run config, secrets redacted: the resolved Hydra config, plus ``choices``, the config-group names
    (``dataset: cifar10``, ``smoothing: gamma``, ...) that the config itself only holds as class paths: what W&B
    filters by."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["choices"] = {group: choices[group] for group in CHOSEN_GROUPS if choices.get(group)}
    return redact_secrets(config)


def failed_job_wandb_run(cfg: DictConfig, context: RunContext) -> Any:
    """A W&B run for a sweep job that failed before its logger was built (a bad parameter, missing data), so the
    sweep's W&B group shows every job, this one as failed; None without a W&B logger or when it cannot start."""

    if not is_wandb(cfg.get("logger")):
        return None
    try:
        logger = instantiate_logger(cfg, context)
        if logger:
            logger.log_hyperparams(wandb_config(cfg, context.choices))
        return logger or None
    except Exception as error:  # the job's own error is the one to report
        log.warning("No W&B run for this failed job: %s", error)
        return None
