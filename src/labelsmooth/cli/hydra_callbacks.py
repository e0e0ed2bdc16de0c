"""Hydra callbacks of the apps (``conf/hydra/default.yaml``: ``hydra.callbacks``)."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class CheckOutputDirectory(Callback):
    """Create the run directory (``hydra.run.dir``) or the sweep directory (``hydra.sweep.dir``) before Hydra does,
    so a directory that cannot be made (``hydra.run.dir=/proc/x``, a read-only ``paths.log_dir``) is refused with
    the key and the reason, instead of pathlib's traceback from inside Hydra. Hydra turns a callback's exception
    into a warning, so the refusal is a message and ``SystemExit(1)``."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        make_directory(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        make_directory(config.hydra.sweep.dir, "hydra.sweep.dir")


def make_directory(path: str, key: str) -> None:
    """``path`` made, and written in once (a file created and removed): a directory that exists but is read-only
    failed later, in a traceback from Hydra's log file handler."""
    for action, attempt in (("create the directory", _make), ("write in the directory", _write_in)):
        try:
            attempt(Path(str(path)))
        except OSError as error:
            sys.stderr.write(
                f"{key}={path}: cannot {action} ({error.strerror or error}). Choose a writable place with "
                f"{key}=... or paths.log_dir=... (LABELSMOOTH_ROOT moves outputs/ too).\n"
            )
            raise SystemExit(1) from error


def _make(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


def _write_in(directory: Path) -> None:
    with tempfile.TemporaryFile(dir=directory):
        pass


class StayInTheLaunchDirectory(Callback):
    """``hydra.job.chdir=true`` refused in one line before any job: the apps read every relative path (``paths.*``,
    the data set's files, ``ckpt_path=``) from the directory they were launched in, and write their outputs into
    the run directory by its absolute path; in the run directory a run looked for ``./data`` there and called the
    data set missing."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_changing_directory(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        refuse_changing_directory(config)


def refuse_changing_directory(config: DictConfig) -> None:
    if config.hydra.job.get("chdir"):
        sys.stderr.write(
            f"hydra.job.chdir={str(config.hydra.job.chdir).lower()}: runs read relative paths (paths.*, the data, "
            "ckpt_path=) from the directory they start in and write their outputs into the run directory by its full "
            "path; in the run directory they would look for the data under it. Leave hydra.job.chdir=false (the "
            "default).\n"
        )
        raise SystemExit(1)


class KnowTheSweep(Callback):
    """The sweep's Hydra config (``HydraConfig``) in the process that launches its jobs too, not only inside them,
    so Ctrl-C there (joblib's or SLURM's jobs run elsewhere) is answered with where the sweep is and how it goes on
    (``labelsmooth.cli.errors.interruption_outside_a_job``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = None  # as before the sweep (an app run again in this process starts afresh)


class SummariseTheSweep(Callback):
    """At the end of a sweep whose jobs all ran to their end (Hydra calls ``on_multirun_end`` then only: a failed
    job ends the sweep with its error), one line in the process that launched them: how many jobs completed, where
    the sweep is and the command that compares them (``report.py``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from collections import Counter

        from labelsmooth.runs.files import recorded_metrics

        sweep = Path(str(config.hydra.sweep.dir))
        jobs = [job.parent for job in sorted(sweep.glob("*/.hydra"))]
        if not jobs:
            return
        states = Counter(str((recorded_metrics(job) or {}).get("status", "unfinished")) for job in jobs)
        counted = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        logging.getLogger("labelsmooth.sweep").info(
            "Sweep done: %d job%s (%s) in %s. Compare them: python report.py %s",
            len(jobs), "" if len(jobs) == 1 else "s", counted, sweep, sweep,
        )  # fmt: skip


class CheckJoblibJobs(Callback):
    """``hydra/launcher=joblib`` or ``parallel`` with ``hydra.launcher.n_jobs=0``, which joblib refuses, is refused
    in one line before any job, instead of joblib's traceback from inside Hydra's plugin (a fraction or a word is
    refused by the plugin's typed config already)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
            return
        n_jobs = launcher.get("n_jobs")
        if n_jobs is None or (isinstance(n_jobs, int) and not isinstance(n_jobs, bool) and n_jobs != 0):
            return
        sys.stderr.write(
            f"hydra.launcher.n_jobs={n_jobs!r} must be a whole number other than 0: the jobs at once (>= 1), or -1 "
            "for one per core, -2 for all cores but one (hydra/launcher=parallel reads LABELSMOOTH_SWEEP_JOBS).\n"
        )
        raise SystemExit(1)


class SayWhenNothingToResume(Callback):
    """``-m resume_sweep=true`` with a ``hydra.sweep.dir`` that holds no job of an earlier run, most often because
    the old sweep's directory was not given and Hydra made a new one: one warning line before the jobs start, as
    every job will then train from the start. A value that is not true or false is refused here, before any job
    (``resume_sweep=no`` read as true skipped the completed jobs)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from labelsmooth.cli.schema import TOP_LEVEL, check
        from labelsmooth.errors import ConfigurationError

        try:
            check("resume_sweep", config.get("resume_sweep", False), TOP_LEVEL["resume_sweep"])
        except ConfigurationError as error:
            sys.stderr.write(f"ConfigurationError: {error}\n")
            raise SystemExit(1) from error
        sweep = Path(str(config.hydra.sweep.dir))
        if not config.get("resume_sweep"):
            refuse_a_sweep_over_earlier_jobs(sweep)
            return
        refuse_a_changed_grid(config, sweep)
        if not any(sweep.glob("*/.hydra")):
            logging.getLogger(__name__).warning(
                "resume_sweep=true, but hydra.sweep.dir=%s holds no job of an earlier run: every job runs from the "
                "start. To continue a sweep, give its directory: hydra.sweep.dir=outputs/multirun/<date>/<time>",
                sweep,
            )


class JobStatesWithoutAccounting(Callback):
    """``hydra/launcher=slurm`` on a cluster that keeps no job accounting (common on small clusters): submitit polls
    its jobs' states with ``sacct``, which then fails, printing "Slurm accounting storage is disabled" and a
    "Bypassing sacct error ..." warning at every poll, and a job that ends without its result (``scancel``, a time
    limit) is never seen to end, so the sweep waits forever. Where ``scontrol show config`` says accounting is off,
    the states come from ``squeue`` instead (``labelsmooth.cli.slurm_states``), with one line saying so. Done by
    wrapping submitit's ``SlurmInfoWatcher._make_command`` (submitit has no option for it)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "slurm" not in str(config.hydra.launcher.get("_target_", "")).lower() or not accounting_is_off():
            return
        from submitit.slurm.slurm import SlurmInfoWatcher

        def states_from_squeue(watcher: Any) -> list[str] | None:
            job_ids = sorted(watcher._registered - watcher._finished)
            return [sys.executable, "-m", "labelsmooth.cli.slurm_states", *job_ids] if job_ids else None

        if not getattr(SlurmInfoWatcher._make_command, "from_squeue", False):  # once per process; said per sweep
            states_from_squeue.from_squeue = True  # type: ignore[attr-defined]
            SlurmInfoWatcher._make_command = states_from_squeue  # type: ignore[method-assign]
        logging.getLogger(__name__).warning(
            "SLURM accounting is off on this cluster: the jobs' states come from squeue instead of sacct."
        )


def accounting_is_off() -> bool:
    """Whether this SLURM cluster keeps no job accounting (``AccountingStorageType`` none)."""
    try:
        shown = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split("=")[-1].strip().endswith("none") for line in shown.splitlines()
               if line.startswith("AccountingStorageType"))  # fmt: skip


def refuse_a_sweep_over_earlier_jobs(sweep: Path) -> None:
    """A sweep started (without ``resume_sweep=true``) in a directory holding jobs of an earlier one: refused in one
    line before any job and before Hydra writes its ``multirun.yaml`` over the earlier grid's, which
    ``resume_sweep=true`` reads (each job would be refused anyway: a completed or unfinished run is kept)."""
    from labelsmooth.runs.result_guard import holds_a_run

    if sweep.is_dir() and any(holds_a_run(job) for job in sweep.iterdir() if job.is_dir()):
        print(
            f"hydra.sweep.dir={sweep} holds the jobs of an earlier sweep, left as they are: resume_sweep=true "
            "continues it (its own grid; jobs may be added at its end), a new sweep needs a new hydra.sweep.dir",
            file=sys.stderr,
        )
        raise SystemExit(1)


def refuse_a_changed_grid(config: DictConfig, sweep: Path) -> None:
    """``resume_sweep=true`` gives each job the directory of the job with its number: a grid changed other than by
    jobs added at its end would give a completed job's directory to another job (refused when it starts, so that
    job could never run there) and run a completed job again under a new number. Refused in one line, before any
    job, naming the first job that changed."""
    import yaml

    from labelsmooth.runs.sweeps import first_changed_job, grid_jobs

    try:
        earlier = yaml.safe_load((sweep / "multirun.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return
    old = grid_jobs((earlier or {}).get("hydra") or {}) if isinstance(earlier, dict) else None
    new = grid_jobs(OmegaConf.to_container(config.hydra, resolve=False))
    if old is None or new is None or (number := first_changed_job(old, new)) is None:
        return
    shown = [" ".join(o for o in job if not o.startswith("resume_sweep=")) for job in (old[number], new[number])]
    print(
        f"resume_sweep=true: the grid differs from the one in {sweep}/multirun.yaml: job {number} was "
        f"{shown[0]}, it would now be {shown[1]}. Continue it with its own grid (jobs may be added at its "
        "end), or start the changed grid in a new hydra.sweep.dir",
        file=sys.stderr,
    )
    raise SystemExit(1)
