"""The error policy of the command-line apps.

A problem the user can fix ends the run with one line (and exit code 1; the full traceback with
``HYDRA_FULL_ERROR=1``): the project's own errors (``labelsmooth.errors.LabelsmoothError``: bad configuration,
missing or damaged data and files), the configuration errors of Hydra, OmegaConf and Lightning, and file-system
errors that name their path (a run directory that cannot be created). Every other exception is a bug and keeps its
traceback, also a ``ValueError`` from inside torch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from hydra.errors import CompactHydraException

from labelsmooth.cli.process_exit import end_without_final_collection
from labelsmooth.errors import HOW_TO_CONTINUE, LabelsmoothError, is_disk_full
from labelsmooth.tracking.log_files import log_to_files

log = logging.getLogger(__name__)

# Library errors that describe the user's configuration, not a bug, by class name (their modules are imported
# only when they are raised: Lightning's MisconfigurationException, Hydra's composition errors).
NAMED_LIBRARY_ERRORS = frozenset(
    {
        "MisconfigurationException",
        "ConfigCompositionException",
        "MissingConfigException",
        "OverrideParseException",
        "ConfigKeyError",
        "ValidationError",
        "InterpolationResolutionError",
        "MissingMandatoryValue",
    }
)


def root_cause(error: BaseException) -> BaseException:
    """The user's error behind Hydra's ``InstantiationException`` wrappers."""
    from hydra.errors import InstantiationException

    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error


def raised_in_a_library(error: BaseException) -> bool:
    """Whether ``error`` was raised in an installed library's code (torch, timm refusing a setting passed through),
    not in this project's or the user's own code, where a ``TypeError`` or ``ValueError`` is a bug to show with its
    traceback: the innermost frame of its traceback is under site-packages and outside ``labelsmooth``."""
    import site
    from pathlib import Path

    import labelsmooth

    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return True
    filename = frame.tb_frame.f_code.co_filename
    libraries = [*site.getsitepackages(), site.getusersitepackages()]
    ours = str(Path(labelsmooth.__file__).parent)
    return not filename.startswith(ours) and any(filename.startswith(path) for path in libraries)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` (unwrapped by ``root_cause``) is a problem the user can fix rather than a bug."""
    if isinstance(error, (LabelsmoothError, NotImplementedError)):
        return True
    if any(kind.__name__ in NAMED_LIBRARY_ERRORS for kind in type(error).__mro__):  # their subclasses too
        return True
    if isinstance(error, (OSError, ValueError, EOFError)) and "Original Traceback" in str(error):
        return True  # a DataLoader worker could not read a file (a damaged image)
    return isinstance(error, OSError) and (getattr(error, "filename", None) is not None or is_disk_full(error))


def error_message(error: BaseException) -> str:
    """The message of ``error``; for an error re-raised from a DataLoader worker, whose message carries the
    worker's whole traceback, its last line (the worker's own error, e.g. the image file it could not read); for
    a file-system error, its path and reason."""
    from omegaconf.errors import OmegaConfBaseException

    text = str(error)
    if isinstance(error, OmegaConfBaseException) and text.strip():  # its message ends in full_key and object_type lines
        first, key = text.strip().splitlines()[0], error.full_key
        return f"{first} (at {key})" if key and key not in first else first
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}" + (f"; {HOW_TO_CONTINUE}" if is_disk_full(error) else "")
    if is_disk_full(error) and not isinstance(error, LabelsmoothError):
        return f"{error.strerror or text}: {HOW_TO_CONTINUE}"
    if "Original Traceback" not in text:
        return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"in a DataLoader worker: {lines[-1]}"


class RunFailed(CompactHydraException):
    """A run stopped by a configuration, data or file problem: Hydra prints only this message (and the full
    traceback when ``HYDRA_FULL_ERROR=1``)."""


def as_compact_user_error(error: Exception) -> Exception:
    """``RunFailed`` with the message of the user's error behind ``error``; ``error`` itself when it is a bug,
    whose traceback the user should see."""
    cause = root_cause(error)
    if is_user_error(cause):
        return RunFailed(f"{type(cause).__name__}: {error_message(cause)}")
    return error


class RunInterrupted(SystemExit):
    """The run was stopped by SIGTERM or Ctrl-C: exit code 1 (Lightning's own ``SIGTERMException`` exits 0, which
    would tell a scheduler or a script that the run succeeded) and the message says how to continue."""


def interruption_message(cause: BaseException, multirun: bool) -> str:
    if isinstance(cause, SystemExit) and os.environ.get("SLURM_JOB_ID"):  # submitit, after requeueing the job
        return (
            "stopped by SLURM's signal before its time limit or by preemption; submitit requeued the job, which "
            "continues from its last checkpoint (checkpoints/last.ckpt, written at the end of every epoch)"
        )
    sigterm = "SIGTERM" in type(cause).__name__  # Lightning's SIGTERMException
    what = "stopped by SIGTERM (a time limit, preemption or kill)" if sigterm else "stopped by Ctrl-C"
    how = (
        f"run the same command again with resume_sweep=true hydra.sweep.dir={sweep_directory()} (completed jobs "
        "are skipped, interrupted ones continue)"
        if multirun
        else "run it again with the same overrides and resume=true"
    )
    return f"{what}; to continue from its last checkpoint, {how}"


def interruption_outside_a_job(error: KeyboardInterrupt) -> RunInterrupted:
    """Ctrl-C that reaches the app's entry point, outside a job (its own ``run_app`` handles one inside): in the
    process that launched a sweep's jobs elsewhere (joblib's worker processes, SLURM), or before a job started.
    The line says what became of the jobs and how to continue."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return RunInterrupted("Interrupted: stopped by Ctrl-C before the run started")
    if is_submitit_launcher(HydraConfig.get().launcher.get("_target_")):
        return RunInterrupted(
            "Interrupted: stopped waiting for the sweep's SLURM jobs, which go on running (squeue lists them, "
            f"scancel stops them); their outputs are written under {sweep_directory()}"
        )
    return RunInterrupted(f"Interrupted: {interruption_message(error, multirun=True)}")


def is_submitit_launcher(target: object) -> bool:
    """Whether a launcher's ``_target_`` is Hydra's submitit (SLURM) launcher."""
    import hydra

    try:  # the sweep extra's plugin: without it, no sweep runs on SLURM
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
    except ImportError:
        return False
    return isinstance(target, str) and issubclass(hydra.utils.get_class(target), BaseSubmititLauncher)


def sweep_directory() -> str:
    """This sweep's ``hydra.sweep.dir``, as Hydra resolved it; a placeholder outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return str(HydraConfig.get().sweep.dir)
    except ValueError:  # no Hydra job in this process
        return "<this sweep's directory>"


def log_failure(message: str, to_console: bool) -> None:
    """Log a run's error to the run's log file, and to the console only when asked: a single run's error is
    printed once as the process exits (``run_app``), while in a multirun each job's failure shows as it happens."""
    if to_console:
        log.error(message)
    else:
        log_to_files(log, logging.ERROR, message)


def run_app(run, multirun: bool, resumable: bool = True):
    """``run()`` under the policy: an interruption exits 1 (saying how to continue a ``resumable`` run), a user
    error becomes one line, a bug keeps its traceback; the process then ends without its last garbage collection
    (``labelsmooth.cli.process_exit``).

    A single run's user error ends the process in its one line (``exit_in_one_line``); a multirun job's goes to
    Hydra (``RunFailed``), whose first line names the failed job."""
    # A log file that can no longer be written (a full disk) must not print a traceback per log line.
    logging.raiseExceptions = False
    end_without_final_collection()
    try:
        with user_errors_in_one_line():
            return run()
    except RunFailed as failed:
        if multirun:
            raise
        exit_in_one_line(failed)
    except (KeyboardInterrupt, SystemExit) as error:
        if isinstance(error, RunInterrupted):
            raise
        how = f": {interruption_message(error, multirun)}" if resumable else ""
        raise RunInterrupted(f"Interrupted{how}") from error


def exit_in_one_line(failed: RunFailed) -> NoReturn:
    """End the process with ``failed``'s line alone on stderr and exit code 1 (``SystemExit(<the line>)``), past
    Hydra's frame of a failed job ("Error executing job with overrides: [...]", a hint about tracebacks); with
    ``HYDRA_FULL_ERROR=1``, ``failed`` itself, for Hydra's full report."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise failed
    raise SystemExit(str(failed)) from None


@contextmanager
def user_errors_in_one_line() -> Iterator[None]:
    """A user's error raised inside (``is_user_error``) leaves as ``RunFailed``, which Hydra prints as one line;
    a bug leaves as it is, with its traceback."""
    try:
        yield
    except Exception as error:
        compact = as_compact_user_error(error)
        if compact is error and type(error).__name__ == "InstantiationException" and error.__cause__ is not None:
            raise error.__cause__ from None  # Hydra prints its own wrapper without a traceback: the bug's, with one
        if compact is error:
            raise
        raise compact from error
