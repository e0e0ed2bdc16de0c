"""Finding the run a ``resume=true`` continues: its directory, the checkpoint to continue from and W&B run id.

Used by Hydra's ``hydra.run.dir`` (through the ``ls_run_dir`` resolver of ``labelsmooth.cli.resolvers``) so a
resumed run writes into the directory of the interrupted one, and by the training entry point.

A run continues from its ``checkpoints/last.ckpt``. A checkpoint cut short (a full disk, a killed copy) or
otherwise unreadable is detected before training starts: the run then continues from the newest readable
checkpoint of its directory, with one warning that names both, or, when none is readable, stops with one line
that says it has to start again. Checkpoints are read with ``torch.load(weights_only=True)``
(``labelsmooth.runs.checkpoints.load_checkpoint``); torch is imported only then, since Hydra calls
:func:`resolve_run_dir` while it composes every config.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from labelsmooth.errors import ConfigurationError, describe, first_line
from labelsmooth.runs.context import RunContext
from labelsmooth.runs.layout import LAST_CHECKPOINT, RunDirectory
from labelsmooth.runs.lock import in_use
from labelsmooth.runs.overrides import comparable_overrides

if TYPE_CHECKING:
    from labelsmooth.runs.checkpoints import CheckpointError

log = logging.getLogger(__name__)


def resume_asked(resume: object) -> bool:
    """Whether a ``resume`` setting asks to continue a run (``true`` or a directory), as the config or the
    ``ls_run_dir`` resolver gives it (a bool, None, or text).

    >>> [resume_asked(v) for v in (True, "true", "outputs/runs/x", False, "false", None, "null", "")]
    [True, True, True, False, False, False, False, False]
    """
    return resume not in (None, False) and str(resume).lower() not in {"false", "none", "null", ""}


def find_run_to_resume(
    runs_root: str | Path,
    overrides: Iterable[str],
    with_checkpoint: bool = True,
    exclude: Path | None = None,
    running: bool = False,
) -> Path | None:
    """The latest run under ``runs_root/<date>/<time>/`` with the same overrides and a checkpoint (``last.ckpt``,
    or another one when that is missing or damaged: :func:`start_checkpoint` chooses), and not training now
    (``running=True``: one that is, to say so); with ``with_checkpoint=False`` the latest killed before its first
    checkpoint (neither a checkpoint nor ``metrics.json``), to say so. ``exclude`` (this run's own new directory)
    is never returned. Checkpoints are not read here (Hydra calls this while composing the config)."""
    wanted = comparable_overrides(overrides)
    candidates = sorted(Path(runs_root).glob("*/*/.hydra/overrides.yaml"), reverse=True)
    for overrides_file in candidates:
        run_dir = overrides_file.parent.parent
        has_checkpoint = has_checkpoints(run_dir)
        killed_early = not has_checkpoint and not RunDirectory(run_dir).metrics_json.exists()
        if run_dir == exclude or not (has_checkpoint if with_checkpoint else killed_early):
            continue
        try:
            previous = yaml.safe_load(overrides_file.read_text()) or []
        except (OSError, yaml.YAMLError):
            continue
        if comparable_overrides(previous) == wanted and in_use(run_dir) == running:
            return run_dir
    return None


def resolve_run_dir(runs_root: str, fresh_dir: str, resume: object, overrides: Iterable[str] | None) -> str:
    """``hydra.run.dir``: a fresh ``<runs_root>/<date>/<time>``, or the run being resumed.

    ``resume=true`` picks the latest earlier run with the same overrides that has a last checkpoint (if there
    is none the fresh directory is returned and training stops with an error that says so);
    ``resume=<directory>`` names the run explicitly (the fresh directory where it names none).
    """
    fresh = str(Path(runs_root) / fresh_dir)
    if not resume_asked(resume):
        return claim_fresh_directory(fresh)
    if str(resume).lower() != "true":  # not a run's directory, or in use: the run stops, saying so, in a fresh one
        named = Path(str(resume))
        return str(named) if is_run_directory(named) and not in_use(named) else claim_fresh_directory(fresh)
    found = find_run_to_resume(runs_root, overrides or [])
    return str(found) if found is not None else claim_fresh_directory(fresh)


def is_run_directory(path: Path) -> bool:
    """Whether ``path`` is a directory a run wrote (its ``.hydra/``, a checkpoint or ``metrics.json``), so that a
    mistyped ``resume=`` of another directory (a data folder, one's home) leaves it untouched."""
    from labelsmooth.runs.result_guard import holds_a_run

    return path.is_dir() and ((path / ".hydra").is_dir() or holds_a_run(path))


def claim_fresh_directory(path: str) -> str:
    """``path``, or ``path_2``, ``path_3``, ...: the first that this process creates. ``mkdir`` succeeds in one
    process only, so runs started in the same second (``python train.py seed=1 & python train.py seed=2``) get
    directories of their own instead of writing over each other's checkpoints and metrics. A directory that
    cannot be made is returned as it is, for ``CheckOutputDirectory`` to refuse in one line. Registered with
    ``use_cache=True`` (``labelsmooth.cli.resolvers``): Hydra reads ``hydra.run.dir`` more than once per run, and
    a sweep's jobs get its resolved ``hydra.sweep.dir`` with the config's cache (``OmegaConf.copy_cache``).

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> [Path(claim_fresh_directory(f"{root}/runs/12-00-00")).name for _ in range(3)]
    ['12-00-00', '12-00-00_2', '12-00-00_3']
    """
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return path
    candidate, number = path, 1
    while True:
        try:
            Path(candidate).mkdir()
            return candidate
        except FileExistsError:
            number += 1
            candidate = f"{path}_{number}"
        except OSError:
            return path


def previous_wandb_run_id(run_dir: str | Path) -> str | None:
    """The id of the latest W&B run written under ``run_dir/wandb`` (offline or online), if any."""
    runs = sorted(RunDirectory(run_dir).wandb_dir.glob("*run-*-*"), key=lambda p: p.name.split("-", 1)[1])
    runs = [p for p in runs if p.is_dir() and not p.is_symlink()]
    return runs[-1].name.rsplit("-", 1)[1] if runs else None


def checkpoint_files(run_dir: str | Path) -> list[Path]:
    """The run's ``checkpoints/*.ckpt``, by name, links that lead nowhere included (a ``last.ckpt`` whose target
    is gone is a damaged checkpoint, not a missing one). Temporary files of a write (``*.tmp``) are not among
    them."""
    try:
        found = RunDirectory(run_dir).checkpoints.glob("*.ckpt")
        return sorted(path for path in found if path.is_symlink() or path.is_file())
    except OSError:
        return []


def has_checkpoints(run_dir: str | Path) -> bool:
    """Whether the run left any checkpoint file, readable or not."""
    return bool(checkpoint_files(run_dir))


@dataclass(frozen=True)
class ResumePoint:
    """What :func:`choose_checkpoint` found in a run directory: the checkpoint to continue from (None: none is
    readable), the epoch and global step it holds, and each checkpoint that cannot be used with the reason."""

    run_dir: Path
    path: Path | None
    epoch: int = -1
    global_step: int = -1
    damaged: dict[Path, str] = field(default_factory=dict)

    def fallback_warning(self) -> str | None:
        """One line when the run does not continue from its ``last.ckpt`` (it is missing or damaged): which file
        cannot be used, and which one is used instead; None when ``last.ckpt`` is used or nothing is."""
        last = RunDirectory(self.run_dir).last_checkpoint
        if self.path is None or self.path == last:
            return None
        why = self.damaged.get(last, "is missing")
        others = [f"{p.name} ({reason})" for p, reason in self.damaged.items() if p != last]
        also = f"; also unusable: {', '.join(others)}" if others else ""
        return (
            f"resume: {last} {why}; continuing from {self.path} (epoch {self.epoch}, step {self.global_step}), "
            f"the newest readable checkpoint of the run{also}"
        )

    def refusal(self) -> str:
        """Why nothing can be resumed: each checkpoint and why it cannot be used, in one line."""
        listed = "; ".join(f"{path.name} {reason}" for path, reason in self.damaged.items())
        return f"no readable checkpoint in {RunDirectory(self.run_dir).checkpoints} ({listed or 'none left'})"


def _why_unusable(path: Path, error: CheckpointError) -> str:
    """A short reason from ``load_checkpoint``'s error: the underlying torch error when there is one (its message
    otherwise speaks of ``ckpt_path=``, which this run was not given)."""
    cause = error.__cause__ or error.__context__
    if cause is not None:
        return f"is not readable ({describe(cause, sentence=True)})"
    message = first_line(error)
    prefix = f"ckpt_path={path}"
    return message[len(prefix) :].lstrip(": ") if message.startswith(prefix) else message


def _checkpoint_progress(path: Path) -> tuple[int, int]:
    """The epoch and global step a readable checkpoint holds; ``CheckpointError`` for one that cannot be used
    (a link to a missing file, a damaged or foreign file)."""
    from labelsmooth.runs.checkpoints import CheckpointError, load_checkpoint

    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"is a link to {os.readlink(path)}, which does not exist")
    checkpoint = load_checkpoint(path)
    if "optimizer_states" not in checkpoint:  # Lightning could restore the weights alone, then fail
        raise CheckpointError(
            "holds weights alone, no optimizer state to continue from (a fused member's checkpoint: its sweep "
            "continues with hydra/launcher=fused resume_sweep=true)"
        )
    numbers = [checkpoint.get(key) for key in ("epoch", "global_step")]
    epoch, step = (int(n) if isinstance(n, int) and not isinstance(n, bool) else -1 for n in numbers)
    return epoch, step


def choose_checkpoint(run_dir: str | Path) -> ResumePoint:
    """The checkpoint a resumed run continues from: ``last.ckpt`` when it is readable, else the readable
    checkpoint holding the latest epoch and global step (then the newest file). Each checkpoint is loaded
    (weights only) to know that it is readable, so that a damaged one is found before any data is read, not
    after the data set was prepared."""
    from labelsmooth.runs.checkpoints import CheckpointError

    run_dir = Path(run_dir)
    last = RunDirectory(run_dir).last_checkpoint
    files = checkpoint_files(run_dir)
    damaged: dict[Path, str] = {}
    readable: list[tuple[tuple[int, int, int, str], Path]] = []
    for path in sorted(files, key=lambda p: p != last):  # last.ckpt first: usually nothing else is read
        try:
            epoch, step = _checkpoint_progress(path)
        except CheckpointError as error:
            damaged[path] = _why_unusable(path, error)
            continue
        if path == last:
            return ResumePoint(run_dir, path, epoch, step, damaged)
        try:
            modified = path.stat().st_mtime_ns
        except OSError:
            modified = -1
        readable.append(((epoch, step, modified, path.name), path))
    if not readable:
        return ResumePoint(run_dir, None, damaged=damaged)
    (epoch, step, _, _), path = max(readable)
    return ResumePoint(run_dir, path, epoch, step, damaged)


def start_checkpoint(resume: object, ckpt_path: str | None, context: RunContext) -> tuple[str | None, str | None]:
    """The checkpoint ``fit`` starts from (``resume`` or ``ckpt_path``) and the W&B run id to continue; a
    ``ConfigurationError`` that says what to do when there is nothing to resume, and a ``CheckpointError`` when
    the run left checkpoints but none of them is readable (it has to start again)."""
    from labelsmooth.runs.checkpoints import CheckpointError

    if not resume_asked(resume):
        return ckpt_path or None, None  # ckpt_path='' is no checkpoint, as null is
    if not has_checkpoints(context.output_dir):
        if context.multirun:
            what = f"this sweep job's directory {context.output_dir} has no {LAST_CHECKPOINT}"
        elif str(resume).lower() == "true":
            runs_root = context.output_dir.parent.parent
            what = f"no earlier run with the same overrides under {runs_root} has a {LAST_CHECKPOINT}"
            unfinished = find_run_to_resume(
                runs_root, context.overrides, with_checkpoint=False, exclude=context.output_dir
            )
            if (training := find_run_to_resume(runs_root, context.overrides, running=True)) is not None:
                what += f" that is not still training ({training} is, in another process)"
            if unfinished is not None:
                what += f" (the latest, {unfinished}, stopped before its first checkpoint: start it afresh)"
        elif not Path(str(resume)).is_dir():
            what = "no such run directory"
        elif in_use(str(resume)):
            what = "that run is still training in another process"
        elif not is_run_directory(Path(str(resume))):
            what = f"{resume} is not a run's directory (no .hydra/, checkpoints or metrics.json in it)"
        else:
            what = f"{context.output_dir} has no {LAST_CHECKPOINT}"
        raise ConfigurationError(f"resume={resume}: nothing to resume: {what}. {_how_to_start(context)}")
    point = choose_checkpoint(context.output_dir)
    if point.path is None:
        raise CheckpointError(
            f"resume={resume}: {point.refusal()}: the run has to start again. {_how_to_start(context, again=True)}"
        )
    if (warning := point.fallback_warning()) is not None:
        log.warning(warning)
    log.info("Resuming from %s", point.path)
    return str(point.path), previous_wandb_run_id(context.output_dir)


def _how_to_start(context: RunContext, again: bool = False) -> str:
    if context.multirun:
        return (
            "To continue a sweep, run it again without resume= but with resume_sweep=true and "
            "hydra.sweep.dir=<its directory>: completed jobs are skipped, interrupted ones continue from their last "
            "readable checkpoint, the others start afresh."
        )
    if again:
        return "Run the same command without resume= (a new run directory)."
    return "Start without resume=true, or name the run: resume=outputs/runs/<date>/<time>."
