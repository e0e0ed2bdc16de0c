"""Resuming a sweep: skip the jobs whose ``metrics.json`` already says ``completed``.

Re-running a multirun with ``resume_sweep=true`` and the old sweep directory
(``hydra.sweep.dir=outputs/multirun/<date>/<time>``) gives every job the directory it had before (Hydra numbers
the jobs of the same grid the same way). A job whose ``metrics.json`` there says ``completed`` *for the same
job* returns its recorded metric instead of training again (its ``.hydra/`` files put back as it left them); an
interrupted or failed job with a readable checkpoint continues from it (its ``last.ckpt``, else the newest
readable one), missing ones and those whose checkpoints are all damaged run from the start; a directory that
holds the completed run of *another* job (the grid changed) is left alone and its job fails. The same job: the
same command-line overrides (``metrics.json`` records them as ``overrides``, less ``resume_sweep``), or, for
runs recorded before that, the same data set, model, strategy, batch mixing, seed and strategy parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labelsmooth.runs.files import recorded_metrics
from labelsmooth.runs.layout import METRICS_FILE
from labelsmooth.runs.overrides import CONTINUE_KEYS, job_overrides, override_key, same_job

log = logging.getLogger(__name__)


def completed_job(output_dir: str | Path, overrides: Sequence[str], identity: dict[str, Any]) -> dict[str, Any] | None:
    """The ``metrics.json`` of ``output_dir`` if it records a completed run of the same job (``overrides``: the
    job's, as ``metrics.json`` records them, compared by ``same_job`` as the result guard compares them;
    ``identity``: the job's seed, part names and strategy parameters, compared with a ``metrics.json`` recorded
    before it kept the overrides); None (run the job) otherwise."""
    from labelsmooth.runs.result_guard import completed_result, restore_hydra_files

    if (metrics := completed_result(output_dir)) is None:
        return None
    recorded = metrics.get("overrides")
    if isinstance(recorded, list):
        same = same_job(recorded, overrides)
    else:  # recorded before metrics.json kept the overrides: what it has of the job's identity, all of it
        same = all(metrics.get(key) == value for key, value in identity.items())
    if not same:  # train() refuses to replace the other job's result (labelsmooth.runs.result_guard)
        return None
    log.info("%s says completed: the job is not run again", Path(output_dir) / METRICS_FILE)
    restore_hydra_files(output_dir, recorded if isinstance(recorded, list) else None)  # Hydra wrote this command's
    return metrics


def can_continue(output_dir: str | Path, task_overrides: Sequence[str]) -> bool:
    """Whether an unfinished job of a re-run sweep continues from a checkpoint of its own: the job's
    ``metrics.json``, if it wrote one (an interrupted or failed run), records this job's overrides, and one of its
    checkpoints is readable (``checkpoints/last.ckpt``, else the newest readable one:
    ``labelsmooth.runs.resume.choose_checkpoint``). A job whose checkpoints are all damaged starts afresh, with
    one warning naming them: resuming it could only fail, and again at every re-run of the sweep."""
    from labelsmooth.runs.resume import choose_checkpoint, has_checkpoints

    if not has_checkpoints(output_dir):
        return False
    metrics = recorded_metrics(output_dir)  # None: killed before it wrote one; the same grid gives it this directory
    recorded = metrics.get("overrides") if metrics is not None else None
    if isinstance(recorded, list) and not same_job(recorded, job_overrides(task_overrides)):
        return False
    point = choose_checkpoint(output_dir)
    if point.path is None:
        log.warning("resume_sweep: %s: this job starts afresh", point.refusal())
    return point.path is not None


def optimized_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of the optimized metric (``val/acc_best``) for the sweeper, None when absent; a completed run
    that records no such number says so in one warning, with the closest names it records."""
    from difflib import get_close_matches

    value = metrics.get(name) if name else None
    if name and not isinstance(value, (int, float)) and metrics.get("status") == "completed":
        numbers = [key for key, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        close = get_close_matches(name, numbers, n=3)
        log.warning(
            "optimized_metric=%s: the run records no such number%s, so a sweeper gets none",
            name, f" (the closest: {', '.join(close)})" if close else "",
        )  # fmt: skip
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def grid_jobs(hydra_cfg: Any) -> list[list[str]] | None:
    """The overrides of every job of a basic-sweeper grid, in job-number order, from a multirun's ``hydra`` config
    (a mapping: ``multirun.yaml``'s, or the live one): Hydra's own expansion of its sweeper's ``params`` and the
    command line's overrides; None for another sweeper (Optuna) or a grid that does not parse."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.utils import get_class

    sweeper = hydra_cfg.get("sweeper") or {}
    try:
        if not issubclass(get_class(str(sweeper.get("_target_", ""))), BasicSweeper):
            return None
    except Exception:  # a sweeper that is not installed here
        return None
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        arguments = params + list((hydra_cfg.get("overrides") or {}).get("task") or [])
        overrides = OverridesParser.create().parse_overrides(arguments)
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:
        return None


def first_changed_job(old: Sequence[Sequence[str]], new: Sequence[Sequence[str]]) -> int | None:
    """The number of the first job of the earlier grid ``old`` that the grid ``new`` gives another run (the grid
    changed other than by jobs added at its end), or None.

    >>> first_changed_job([["seed=0"], ["seed=1"]], [["seed=0", "resume_sweep=true"], ["seed=1"], ["seed=2"]])
    >>> first_changed_job([["a=1", "seed=0"], ["a=1", "seed=1"]], [["a=1", "seed=0"], ["a=2", "seed=0"]])
    1
    """
    for number, (before, now) in enumerate(zip(old, new, strict=False)):
        if sweep_job(before) != sweep_job(now):
            return number
    return None


def sweep_job(overrides: Sequence[str]) -> list[str]:
    """The overrides that define a sweep's job: all of them (``ckpt_path`` included: a grid may sweep the start
    point), sorted, less those that only say to continue it (``resume_sweep``, ``resume``).

    >>> sweep_job(["seed=1", "resume_sweep=true", "ckpt_path=a.ckpt", "resume=true"])
    ['ckpt_path=a.ckpt', 'seed=1']
    """
    return sorted(o for o in overrides if override_key(o) not in CONTINUE_KEYS)
