"""Keeping results already earned: a run never replaces the completed ``metrics.json`` of another job, and a
failure never replaces a completed result.

A run can be pointed at a directory that holds a finished run: ``resume=<dir>`` with other overrides than the
run there had, or a re-run sweep (``resume_sweep=true``) whose grid order or values changed, so that Hydra's
job numbers now name other jobs. Such a run is refused before it touches anything but Hydra's ``.hydra/``
files, which Hydra writes before any of our code runs: they are put back from the copy a completed run keeps in
``.hydra/completed/`` (or, for a run without one, ``overrides.yaml`` from the overrides its ``metrics.json``
recorded), so the report still reads the right job and its config.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.files import recorded_metrics, write_bytes_atomic, write_text_atomic
from labelsmooth.runs.layout import METRICS_FILE
from labelsmooth.runs.overrides import comparable_overrides, same_job

log = logging.getLogger(__name__)

COMPLETED = "completed"
HYDRA_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra writes into <run>/.hydra/
KEPT_HYDRA_FILES = "completed"  # <run>/.hydra/completed/: those of the run whose result metrics.json holds


class ResultKept(ConfigurationError):
    """This run was pointed at a directory that holds another job's completed result, which is kept."""


def completed_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``metrics.json`` of ``run_dir`` when it records a completed run, else None."""
    metrics = recorded_metrics(run_dir)
    return metrics if metrics is not None and metrics.get("status") == COMPLETED else None


def keep_hydra_files(run_dir: str | Path) -> None:
    """Copy the ``.hydra/`` files of a run that completed into ``.hydra/completed/``, from where a run refused
    for this directory puts them back (``restore_hydra_files``)."""
    hydra = Path(run_dir) / ".hydra"
    for name in HYDRA_FILES:
        if (hydra / name).is_file():
            write_bytes_atomic(hydra / KEPT_HYDRA_FILES / name, (hydra / name).read_bytes())


def recorded_overrides(run_dir: str | Path) -> list[str] | None:
    """The overrides the ``metrics.json`` of ``run_dir`` records (a training run's), None where it records none."""
    recorded = (recorded_metrics(run_dir) or {}).get("overrides")
    return [str(o) for o in recorded] if isinstance(recorded, list) else None


def restore_hydra_files(run_dir: str | Path, recorded: Sequence[str] | None) -> None:
    """Put back the ``.hydra/`` files of a finished run: its kept copies, or (kept by none) ``overrides.yaml``
    from the overrides its ``metrics.json`` recorded (``None``: recorded none, nothing is put back)."""
    hydra = Path(run_dir) / ".hydra"
    kept = [hydra / KEPT_HYDRA_FILES / name for name in HYDRA_FILES if (hydra / KEPT_HYDRA_FILES / name).is_file()]
    for copy in kept:
        write_bytes_atomic(hydra / copy.name, copy.read_bytes())
    if not kept and hydra.is_dir() and recorded is not None:
        write_text_atomic(hydra / "overrides.yaml", yaml.safe_dump(list(recorded), default_flow_style=False))


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
    """Raise ``ResultKept`` when this run's directory holds a completed run, after putting back that run's
    ``.hydra/`` files: another job's, or this job's own (trained again there, it would replace the run's history
    and checkpoints before its result, and an interruption would leave them mixed; ``resume_sweep=true`` and
    ``resume=`` skip a completed job before this)."""
    metrics = completed_result(context.output_dir)
    recorded = metrics.get("overrides") if metrics else None
    if isinstance(recorded, list) and same_job(recorded, overrides):
        restore_hydra_files(context.output_dir, recorded)
        again = "resume_sweep=true skips it" if context.multirun else f"resume={context.output_dir} skips it"
        raise ResultKept(
            f"{context.output_dir} holds this job's completed run, left as it is ({again}); to train the job again, "
            "move that directory away or give a new " + ("hydra.sweep.dir" if context.multirun else "hydra.run.dir")
        )
    recorded = other_completed_job(context.output_dir, overrides)
    if recorded is None:
        return
    restore_hydra_files(context.output_dir, recorded)
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


def refuse_a_training_run(run_dir: str | Path) -> None:
    """Raise ``ResultKept`` when ``run_dir`` holds a training run (its ``metrics.json`` records the job's
    overrides, or it has checkpoints: an unfinished run may have no record) or a completed evaluation, after
    putting back its ``.hydra/`` files: an evaluation written there would replace its record."""
    from labelsmooth.runs.resume import has_checkpoints

    recorded = recorded_overrides(run_dir)
    training = recorded is not None or has_checkpoints(run_dir)
    if training or completed_result(run_dir) is not None:
        restore_hydra_files(run_dir, recorded)
        what = "a training run" if training else "a completed evaluation"
        raise ResultKept(
            f"{run_dir} holds {what}, whose metrics.json an evaluation would replace; it is left as it is: "
            "give eval.py another hydra.run.dir (by default each evaluation gets its own under paths.log_dir/eval/)"
        )


def holds_a_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds what a run left: a ``metrics.json`` or a checkpoint (an unfinished run may have
    only checkpoints: killed before it wrote its record)."""
    from labelsmooth.runs.resume import has_checkpoints

    return (Path(run_dir) / METRICS_FILE).is_file() or has_checkpoints(run_dir)


def refuse_unfinished_run(context: RunContext, continues: bool) -> None:
    """Raise ``ResultKept`` when this run, which does not continue (``continues``) the run in its directory, was
    pointed at one holding a readable checkpoint of an unfinished run (killed, failed or interrupted): training
    there would replace its ``last.ckpt`` and leave its best checkpoints beside this run's; its ``.hydra/`` files are
    put back. Checkpoints that are all unreadable hold nothing to continue: a run starts afresh over them (as
    ``resume_sweep=true`` does)."""
    from labelsmooth.runs.resume import choose_checkpoint, has_checkpoints

    run_dir = context.output_dir
    if continues or not has_checkpoints(run_dir) or choose_checkpoint(run_dir).path is None:
        return
    recorded = recorded_overrides(run_dir)
    restore_hydra_files(run_dir, recorded)
    whose = f" ({' '.join(recorded) or 'no overrides'})" if recorded is not None else ""
    if context.multirun:
        how, where = "resume_sweep=true continues it (the sweep's own grid)", "hydra.sweep.dir"
    else:
        how, where = f"resume={run_dir} continues it with its own overrides", "hydra.run.dir"
    raise ResultKept(
        f"{run_dir} holds the checkpoints of an unfinished run{whose}, left as they are: {how}; to train here "
        f"afresh, move that directory away, or give a new {where}"
    )
