"""Resuming a sweep: skip the jobs whose ``metrics.json`` already says ``completed``.

Re-running a multirun with ``resume_sweep=true`` and the old sweep directory
(``hydra.sweep.dir=outputs/multirun/<date>/<time>``) gives every job the directory it had before (Hydra numbers
the jobs of the same grid the same way). A job whose ``metrics.json`` there says ``completed`` *for the same
job* returns its recorded metric instead of training again; an interrupted or failed job with a last checkpoint
continues from it, missing ones run from the start; a directory that holds the completed run of *another* job
(the grid changed) is left alone and its job fails. The
same job: the same command-line overrides (``metrics.json`` records them as ``overrides``, less
``resume_sweep``), or, for runs recorded before that, the same data set, model, strategy, batch mixing, seed and
strategy parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from labelsmooth.runs.files import recorded_metrics
from labelsmooth.runs.layout import METRICS_FILE
from labelsmooth.runs.overrides import job_overrides, same_job
from labelsmooth.runs.record import strategy_parameters

log = logging.getLogger(__name__)


def _recorded_parameters(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    smoothing = OmegaConf.to_container(cfg.smoothing, resolve=True) if cfg.get("smoothing") else {}
    names = {key: choices[key] for key in ("dataset", "model", "smoothing", "augment") if key in choices}
    return {"seed": cfg.get("seed"), **names, **strategy_parameters(smoothing)}


def completed_job(
    cfg: DictConfig, output_dir: str | Path, task_overrides: Sequence[str], choices: dict[str, str]
) -> dict[str, Any] | None:
    """The ``metrics.json`` of ``output_dir`` if it records a completed run of the same job (``task_overrides``:
    Hydra's ``overrides.task``; ``choices``: the config-group choices); None (run the job) otherwise."""
    from labelsmooth.runs.result_guard import completed_result

    if (metrics := completed_result(output_dir)) is None:
        return None
    if isinstance(metrics.get("overrides"), list):
        expected = {"overrides": job_overrides(task_overrides)}
    else:  # recorded before metrics.json kept the overrides: what it has of the job's identity, all of it
        expected = _recorded_parameters(cfg, choices)
    different = {k: (metrics.get(k), v) for k, v in expected.items() if metrics.get(k) != v}
    if different:  # train() refuses to replace the other job's result (labelsmooth.runs.result_guard)
        return None
    log.info("resume_sweep: %s says completed; skipping this job", Path(output_dir) / METRICS_FILE)
    return metrics


def can_continue(output_dir: str | Path, task_overrides: Sequence[str]) -> bool:
    """Whether an unfinished job of a re-run sweep continues from its ``checkpoints/last.ckpt``: there is one, and
    the job's ``metrics.json``, if it wrote one (an interrupted or failed run), records this job's overrides."""
    from labelsmooth.runs.layout import LAST_CHECKPOINT

    if not (Path(output_dir) / LAST_CHECKPOINT).is_file():
        return False
    if (metrics := recorded_metrics(output_dir)) is None:
        return True  # killed before it wrote metrics.json: the same grid gives the same job this directory
    recorded = metrics.get("overrides")
    return not isinstance(recorded, list) or same_job(recorded, job_overrides(task_overrides))


def optimized_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of the optimized metric (``val/acc_best``) for the sweeper, None when absent."""
    value = metrics.get(name) if name else None
    return float(value) if isinstance(value, (int, float)) else None
