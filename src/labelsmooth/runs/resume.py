"""Finding the run a ``resume=true`` continues: its directory, last checkpoint and W&B run id.

Used by Hydra's ``hydra.run.dir`` (through the ``ls_run_dir`` resolver of ``labelsmooth.cli.resolvers``) so a
resumed run writes into the directory of the interrupted one, and by the training entry point.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import yaml

from labelsmooth.errors import ConfigurationError
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.layout import LAST_CHECKPOINT, RunDirectory
from labelsmooth.runs.overrides import comparable_overrides

log = logging.getLogger(__name__)


def find_run_to_resume(
    runs_root: str | Path, overrides: Iterable[str], with_checkpoint: bool = True, exclude: Path | None = None
) -> Path | None:
    """The latest run under ``runs_root/<date>/<time>/`` with the same overrides and a ``last.ckpt``; with
    ``with_checkpoint=False`` the latest killed before its first checkpoint (neither ``last.ckpt`` nor
    ``metrics.json``), to say so. ``exclude`` (this run's own new directory) is never returned."""
    wanted = comparable_overrides(overrides)
    candidates = sorted(Path(runs_root).glob("*/*/.hydra/overrides.yaml"), reverse=True)
    for overrides_file in candidates:
        run_dir = overrides_file.parent.parent
        has_checkpoint = (run_dir / LAST_CHECKPOINT).is_file()
        killed_early = not has_checkpoint and not RunDirectory(run_dir).metrics_json.exists()
        if run_dir == exclude or not (has_checkpoint if with_checkpoint else killed_early):
            continue
        try:
            previous = yaml.safe_load(overrides_file.read_text()) or []
        except (OSError, yaml.YAMLError):
            continue
        if comparable_overrides(previous) == wanted:
            return run_dir
    return None


def resolve_run_dir(runs_root: str, fresh_dir: str, resume: object, overrides: Iterable[str] | None) -> str:
    """``hydra.run.dir``: a fresh ``<runs_root>/<date>/<time>``, or the run being resumed.

    ``resume=true`` picks the latest earlier run with the same overrides that has a last checkpoint (if there
    is none the fresh directory is returned and training stops with an error that says so);
    ``resume=<directory>`` names the run explicitly.
    """
    fresh = str(Path(runs_root) / fresh_dir)
    if resume in (None, False) or str(resume).lower() in {"false", "none", "null", ""}:
        return fresh
    if str(resume).lower() != "true":
        return str(resume)
    found = find_run_to_resume(runs_root, overrides or [])
    return str(found) if found is not None else fresh


def previous_wandb_run_id(run_dir: str | Path) -> str | None:
    """The id of the latest W&B run written under ``run_dir/wandb`` (offline or online), if any."""
    runs = sorted(RunDirectory(run_dir).wandb_dir.glob("*run-*-*"), key=lambda p: p.name.split("-", 1)[1])
    runs = [p for p in runs if p.is_dir() and not p.is_symlink()]
    return runs[-1].name.rsplit("-", 1)[1] if runs else None


def start_checkpoint(resume: object, ckpt_path: str | None, context: RunContext) -> tuple[str | None, str | None]:
    """The checkpoint ``fit`` starts from (``resume`` or ``ckpt_path``) and the W&B run id to continue; a
    ``ConfigurationError`` that says what to do when there is nothing to resume."""
    if resume in (None, False) or str(resume).lower() == "false":
        return ckpt_path, None
    last = RunDirectory(context.output_dir).last_checkpoint
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
