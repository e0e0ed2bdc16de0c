"""Keeping results already earned: a run never replaces the completed ``metrics.json`` of another job, and a
failure never replaces a completed result.

A run can be pointed at a directory that holds a finished run: ``resume=<dir>`` with other overrides than the
run there had, or a re-run sweep (``resume_sweep=true``) whose grid order or values changed, so that Hydra's
job numbers now name other jobs. Such a run is refused before it touches anything but Hydra's ``.hydra/``
files, which Hydra writes before any of our code runs: ``.hydra/overrides.yaml`` is put back from the overrides
the finished run recorded in its ``metrics.json``, so the report still reads the right job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.files import recorded_metrics, write_text_atomic
from labelsmooth.runs.layout import METRICS_FILE
from labelsmooth.runs.overrides import comparable_overrides, same_job

log = logging.getLogger(__name__)

COMPLETED = "completed"


class ResultKept(ConfigurationError):
    """This run was pointed at a directory that holds another job's completed result, which is kept."""


def completed_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``metrics.json`` of ``run_dir`` when it records a completed run, else None."""
    metrics = recorded_metrics(run_dir)
    return metrics if metrics is not None and metrics.get("status") == COMPLETED else None


def restore_recorded_overrides(run_dir: str | Path, recorded: Sequence[str]) -> None:
    """Put back ``.hydra/overrides.yaml`` of a finished run from the overrides its ``metrics.json`` recorded."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    if path.parent.is_dir():
        write_text_atomic(path, yaml.safe_dump(list(recorded), default_flow_style=False))


def other_completed_job(run_dir: str | Path, overrides: Sequence[str]) -> list[str] | None:
    """The recorded overrides of the completed run in ``run_dir`` when it is *another* job than ``overrides``
    (both as ``metrics.json`` records them: sorted, secrets redacted); None when there is no completed run
    there, it is this job, or it recorded no overrides (runs from before ``metrics.json`` kept them)."""
    metrics = completed_result(run_dir)
    recorded = metrics.get("overrides") if metrics else None
    if not isinstance(recorded, list) or same_job(recorded, overrides):
        return None
    return [str(o) for o in recorded]


def describe_difference(recorded: Sequence[str], overrides: Sequence[str]) -> str:
    """``only there: ...; only now: ...`` for two override lists."""
    before, now = comparable_overrides(recorded), comparable_overrides(overrides)
    parts = []
    if before - now:
        parts.append("the finished run had " + " ".join(sorted(before - now)))
    if now - before:
        parts.append("this command has " + " ".join(sorted(now - before)))
    return "; ".join(parts)


def may_replace(run_dir: str | Path, summary: dict[str, Any]) -> bool:
    """Whether ``summary`` may be written over ``run_dir/metrics.json``: not a failure over a completed result
    (e.g. ``resume=<dir>`` of a finished run whose data set is now missing)."""
    if summary.get("status") == COMPLETED or completed_result(run_dir) is None:
        return True
    log.warning(
        "%s keeps the completed result it holds; this run's failure is in train.log", Path(run_dir) / METRICS_FILE
    )
    return False


def refuse_other_completed_job(context: RunContext, overrides: list[str]) -> None:
    """Raise ``ResultKept`` when this run's directory holds the completed run of another job, after putting back
    that run's ``.hydra/overrides.yaml``."""
    recorded = other_completed_job(context.output_dir, overrides)
    if recorded is None:
        return
    restore_recorded_overrides(context.output_dir, recorded)
    if context.multirun:
        fix = (
            "The sweep's grid is not the one that ran there (other values or another order give the jobs other "
            "numbers): re-run it with the same grid, or give it a new hydra.sweep.dir."
        )
    else:
        fix = "Resume it with its own overrides, or start a new run without resume=."
    raise ResultKept(
        f"{context.output_dir} holds the completed run of another job ({describe_difference(recorded, overrides)}); "
        f"its metrics.json and checkpoints are left as they are. {fix}"
    )
