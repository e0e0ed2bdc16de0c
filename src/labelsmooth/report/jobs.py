"""Reading a sweep's jobs from their run directories (``labelsmooth.runs.layout.RunDirectory``): what each job
left there, which jobs of the grid are missing, which key the sweep varied, and which duplicates not to count."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.errors import describe
from labelsmooth.report.base import (
    DEFAULT_PARAMETER,
    REPLICATE_KEYS,
    REPORT_METRICS,
    ROW_KEYS,
    ParameterValue,
    as_float,
    as_parameter_value,
    format_value,
)
from labelsmooth.runs.files import read_metrics_json
from labelsmooth.runs.layout import METRICS_FILE, RunDirectory
from labelsmooth.runs.overrides import (
    CONTINUE_KEYS,
    is_output_key,
    override_key,
    override_value,
    parse_override,
    same_job,
)
from labelsmooth.runs.record import still_improving as recorded_still_improving
from labelsmooth.runs.record import target_name
from labelsmooth.runs.sweeps import grid_jobs
from labelsmooth.tracking.wandb_run import redact_secrets

MULTIRUN_YAML = "multirun.yaml"  # Hydra's record of a multirun, in the sweep directory
NOT_COUNTED = ": cut short or damaged; the job is not counted"


@dataclass
class Job:
    """One job of a sweep: its directory and what it left there."""

    directory: Path
    status: str  # completed, failed, running (metrics.json says so), incomplete (no metrics.json), unreadable
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def run(self) -> RunDirectory:
        return RunDirectory(self.directory)

    def value(self, key: str) -> Any:
        """``key`` from metrics.json, else from the job's config (``smoothing.gamma``: its nested node)."""
        if key in self.metrics:
            return self.metrics[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def _name(self, group: str) -> str:
        """As metrics.json names it (``dataset``, ``model``); for a job without one, its override or the class
        its config node instantiates."""
        node = self.config.get(group)
        configured = target_name(node) if isinstance(node, dict) and "_target_" in node else None
        return str(self.metrics.get(group) or override_value(self.overrides, group) or configured or "?")

    @property
    def dataset(self) -> str:
        return self._name("dataset")

    @property
    def model(self) -> str:
        return self._name("model")

    @property
    def seed(self) -> Any:
        return self.value("seed")


@dataclass
class MissingJob:
    """A job the sweep's grid asks for that has no directory (never started, or lost), or whose directory holds
    the run of another job (``holds``: its recorded overrides; an earlier grid numbered the jobs otherwise)."""

    sweep_dir: Path
    number: int
    overrides: list[str]
    holds: list[str] | None = None

    @property
    def holds_note(self) -> str:
        """What its directory holds instead, after the job's overrides ('' when it has no directory)."""
        return f"; its directory holds another job's run: {' '.join(self.holds)}" if self.holds else ""


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None


def read_job(directory: Path) -> Job:
    """The job in ``directory`` (a folder with ``.hydra/`` and, once it ended, ``metrics.json``). A damaged
    ``metrics.json`` (cut short, not JSON, not an object) makes the job ``unreadable``, with the reason: it is
    listed with the failed jobs, and the report goes on with the others."""
    run = RunDirectory(directory)
    config = _load_yaml(run.config_yaml)
    overrides = _load_yaml(run.overrides_yaml)
    job = Job(
        directory=directory,
        status="incomplete",
        config=config if isinstance(config, dict) else {},
        overrides=[str(o) for o in overrides] if isinstance(overrides, list) else [],
    )
    if not run.metrics_json.exists():
        job.error = "no metrics.json (still running, killed, or not started)"
        return job
    try:
        metrics = read_metrics_json(directory)
    except (OSError, ValueError) as error:  # cut short, not JSON, not UTF-8 (a ValueError), not a file
        job.status, job.error = "unreadable", f"{METRICS_FILE} cannot be read ({describe(error)}){NOT_COUNTED}"
        return job
    if not isinstance(metrics, dict):
        job.status = "unreadable"
        job.error = f"{METRICS_FILE} is not a JSON object (a {type(metrics).__name__}){NOT_COUNTED}"
        return job
    job.metrics = metrics
    job.status = str(metrics.get("status", "unknown"))
    if not job.overrides and isinstance(recorded := metrics.get("overrides"), list):  # no .hydra/ (output_subdir=null)
        job.overrides = [str(o) for o in recorded]
    if job.status == "failed":
        job.error = f"{metrics.get('error_type', 'Error')}: {metrics.get('error', '')}".strip()
    return job


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job of a basic-sweeper grid, in job-number order, from ``multirun.yaml``
    (Hydra's own grid expansion); None when unknown (no multirun.yaml, or another sweeper such as Optuna)."""
    multirun = _load_yaml(sweep_dir / MULTIRUN_YAML)
    if not isinstance(multirun, dict):
        return None
    return grid_jobs(multirun.get("hydra") or {})


def swept_parameters(jobs: Sequence[Job]) -> list[str]:
    """The override keys whose values differ between the jobs, besides the seed (``smoothing.gamma=0.6,0.8`` →
    ``smoothing.gamma``), in the order of the first job's command line: what a grid, a ``sweep=`` preset or
    an Optuna search actually varied."""
    values: dict[str, set[str | None]] = {}
    for job in jobs:
        for item in job.overrides:
            key, value = parse_override(item)
            values.setdefault(key, set()).add(value)
    for job in jobs:  # a key some jobs do not override at all varies too (its default against a value)
        keys = {override_key(item) for item in job.overrides}
        for key in values.keys() - keys:
            values[key].add("<default>")
    swept = [k for k, v in values.items() if len(v) > 1 and not k.startswith("hydra")]
    return [k for k in swept if k not in REPLICATE_KEYS and not is_not_compared(k)]


def pooled_keys(jobs: Sequence[Job], parameter: str) -> list[str]:
    """The keys that the completed jobs vary besides ``parameter`` and their seeds: within a cell (a row and a
    value of ``parameter``), where the cell pools them, or between the columns, where the columns differ in them
    as well as in ``parameter``; a strategy's own parameters (``smoothing.gamma`` under ``--param smoothing``)
    differ between strategies by definition."""
    row_of = row_labels(jobs)
    completed = [job for job in jobs if job.status == "completed"]
    cells: dict[tuple[str, Any], list[Job]] = defaultdict(list)
    for job in completed:
        cells[(row_of(job), as_parameter_value(job.value(parameter)))].append(job)
    within = {key for cell in cells.values() for key in swept_parameters(cell)}
    rows = jobs_by_row(completed).values()  # a key that differs only from row to row is the rows' own
    between = {key for row in rows for key in swept_parameters(row) if not key.startswith(parameter + ".")}
    return sorted((within | between) - {parameter})


def jobs_by_row(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    """The jobs of each table row (``row_labels``)."""
    row_of, rows = row_labels(jobs), defaultdict(list)
    for job in jobs:
        rows[row_of(job)].append(job)
    return rows


def is_not_compared(key: str) -> bool:
    """Whether ``key`` makes the rows (``ROW_KEYS``), places or shows the outputs (``is_output_key``), or continues
    a run (``resume``, ``resume_sweep``) or sets the CPU's threads: never the swept parameter, so that two sweeps
    written to different places report as one.

    >>> [is_not_compared(k) for k in ("paths.log_dir", "logger", "dataset", "dataset.shift", "smoothing")]
    [True, True, True, False, False]
    """
    return key in ROW_KEYS or key in CONTINUE_KEYS or key == "num_threads" or is_output_key(key)


class ParameterError(ValueError):
    """A ``--param`` that the jobs do not have, or that would pool jobs which differ in what they vary."""


class NoJobsError(ValueError):
    """Sweep directories that hold no job and no grid (``multirun.yaml``): nothing to report."""


def check_parameter(jobs: Sequence[Job], parameter: str) -> None:
    """Raise ``ParameterError`` when no completed job has ``parameter``, or when it takes one value while the jobs
    vary another key (its table would average different runs and call all but one per seed duplicates)."""
    if parameter in REPLICATE_KEYS:
        raise ParameterError(f"--param {parameter}: the seeds are every cell's replicates, not a compared parameter")
    completed = [job for job in jobs if job.status == "completed"]
    if not completed:
        return
    values = {as_parameter_value(job.value(parameter)) for job in completed}
    varied = swept_parameters(jobs)
    choices = ", ".join(varied) if varied else "nothing besides the seed"
    if values == {None}:
        raise ParameterError(f"--param {parameter}: no job has this key; the jobs vary {choices}")
    if len(values) == 1 and varied and parameter not in varied:
        raise ParameterError(
            f"--param {parameter}: every job has {parameter}={format_value(values.pop())} while they vary {choices}; "
            "its table would pool different runs. Choose one of those keys."
        )


def infer_parameter(jobs: Sequence[Job]) -> str:
    """The one key the jobs vary besides the seed, their rows (data set, model) and their outputs' places; with
    none, ``smoothing.gamma`` when a completed job records it, else ``smoothing`` (a column per strategy). A key
    that varies only from row to row is the rows' own (``dataset.image_size`` of two data sets' sweeps). Raises
    ``ParameterError`` when they vary several keys: ``--param`` chooses the compared one."""
    within_a_row = {key for row in jobs_by_row(jobs).values() for key in swept_parameters(row)}
    found = [key for key in swept_parameters(jobs) if key in within_a_row]
    if len(found) > 1:
        raise ParameterError(
            f"the jobs vary {', '.join(found)} besides the seed: choose the compared one with --param (the others "
            "would be pooled)"
        )
    if found:
        return found[0]
    completed = [job for job in jobs if job.status == "completed"]
    has_default = any(as_parameter_value(job.value(DEFAULT_PARAMETER)) is not None for job in completed)
    return DEFAULT_PARAMETER if has_default or not completed else "smoothing"


def _job_directories(sweep_dir: Path) -> list[Path]:
    """The run directories under ``sweep_dir``: those with a Hydra config or a metrics.json, by job number."""
    layout = RunDirectory(Path())
    found = set()
    for marker in (layout.config_yaml, layout.metrics_json):
        found |= {Path(*p.parts[: len(p.parts) - len(marker.parts)]) for p in sweep_dir.rglob(str(marker))}
    directories = sorted(found, key=lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else math.inf, str(p)))
    return [d for d in directories if d != sweep_dir or RunDirectory(d).metrics_json.exists()]


def collect(sweep_dirs: Iterable[str | os.PathLike]) -> tuple[list[Job], list[MissingJob], list[str]]:
    """Every job under the sweep directories (a job directory found twice, through a directory given twice or one
    inside another, counts once), the grid's jobs without a directory (the grid of each sweep found: the directory
    given, or those under it that hold its jobs), and problems found."""
    jobs: dict[Path, Job] = {}  # by resolved job directory
    missing: list[MissingJob] = []
    problems: list[str] = []
    read: set[Path] = set()  # the sweep and grid directories read, resolved
    for sweep_dir in map(Path, sweep_dirs):
        if sweep_dir.resolve() in read:
            continue
        read.add(sweep_dir.resolve())
        if not sweep_dir.is_dir():
            problems.append(f"{sweep_dir}: not a directory")
            continue
        directories = _job_directories(sweep_dir)
        if not directories:
            problems.append(f"{sweep_dir}: no jobs found (no */.hydra/config.yaml or */metrics.json)")
        for directory in directories:
            if directory.resolve() not in jobs:
                jobs[directory.resolve()] = read_job(directory)
        for grid_dir in sorted({sweep_dir, *(d.parent for d in directories if d != sweep_dir)}):  # not above it
            if grid_dir != sweep_dir and grid_dir.resolve() in read:
                continue
            read.add(grid_dir.resolve())
            for number, overrides in enumerate(expected_jobs(grid_dir) or []):
                directory = grid_dir / str(number)
                job = jobs.get(directory.resolve())
                recorded = job.metrics.get("overrides") if job is not None else None
                if not directory.is_dir():
                    missing.append(MissingJob(grid_dir, number, overrides))
                elif isinstance(recorded, list) and not same_job(recorded, redact_secrets(list(overrides))):
                    missing.append(MissingJob(grid_dir, number, overrides, [str(o) for o in recorded]))
    return list(jobs.values()), missing, problems


def row_labels(jobs: Sequence[Job]) -> Callable[[Job], str]:
    """The table row of a job: its data set, or ``data set (model)`` where the completed jobs trained several
    models on that data set (never one row pooling two models)."""
    models: dict[str, set[str]] = defaultdict(set)
    for job in jobs:
        if job.status == "completed":
            models[job.dataset].add(job.model)
    return lambda job: f"{job.dataset} ({job.model})" if len(models[job.dataset]) > 1 else job.dataset


def still_improving(job: Job) -> bool | None:
    """Whether the job's best validation accuracy came in its last epoch (``labelsmooth.runs.record``)."""
    return recorded_still_improving(job.metrics)


@dataclass(frozen=True)
class DuplicateRun:
    """A completed job not counted: a more recent completed job has the same row (data set), parameter value
    and seed, and the paired test pairs by seed, so one seed counts once."""

    job: Job
    kept: Job
    row: str
    column: ParameterValue
    seed: Any


def newest(group: Sequence[Job]) -> Job:
    """Of several runs of the same job, the one that counts: the most recent metrics.json (then the directory)."""
    return max(group, key=lambda j: (_finished_at(j), str(j.directory)))


def _finished_at(job: Job) -> int:
    """When the job wrote its metrics.json (ns since the epoch; -1 when it cannot be read)."""
    try:
        return job.run.metrics_json.stat().st_mtime_ns
    except OSError:
        return -1


def counted_jobs(jobs: Sequence[Job], parameter: str) -> tuple[list[Job], list[DuplicateRun]]:
    """The jobs without the completed duplicates, and those duplicates: of several completed jobs with the same
    data set (and model, where a data set has several), value of ``parameter`` and seed (e.g. the same job in two
    sweep directories), only the one whose metrics.json is the most recent counts."""
    row_of = row_labels(jobs)
    groups: dict[tuple[str, ParameterValue, Any], list[Job]] = defaultdict(list)
    for job in jobs:
        column = as_parameter_value(job.value(parameter))
        if job.status == "completed" and column is not None and job.seed is not None:
            groups[(row_of(job), column, job.seed)].append(job)
    dropped: dict[int, DuplicateRun] = {}
    for (row, column, _), group in groups.items():
        if len(group) > 1:
            kept = newest(group)
            for job in group:
                if job is not kept:
                    dropped[id(job)] = DuplicateRun(job, kept, row, column, job.seed)
    return [j for j in jobs if id(j) not in dropped], list(dropped.values())


def distinct_jobs(jobs: Sequence[Job]) -> list[Job]:
    """The completed jobs, each run once: of several with the same row and the same compared overrides (the same
    job in two sweep directories), the one whose metrics.json is the most recent."""
    row_of = row_labels(jobs)
    groups: dict[tuple[str, frozenset[str]], list[Job]] = defaultdict(list)
    for job in (j for j in jobs if j.status == "completed"):
        settings = frozenset(item for item in job.overrides if not is_not_compared(override_key(item)))
        groups[(row_of(job), settings)].append(job)
    return [newest(group) for group in groups.values()]


def without_parameter(jobs: Sequence[Job], parameter: str) -> list[str]:
    """One line per completed job that records no ``parameter`` (a ``smoothing=none`` run in a table of
    ``smoothing.gamma``): it has no column, so it is left out of every table."""
    return [
        f"{job.directory}: completed, but records no {parameter}; left out of every table (another --param compares it)"
        for job in jobs
        if job.status == "completed" and as_parameter_value(job.value(parameter)) is None
    ]


def non_finite_values(jobs: Sequence[Job]) -> list[str]:
    """One line per completed job and report metric whose value is not a finite number or null (``metrics.json``
    writes NaN as null: a NaN ECE) or, for a metric every run records, missing: left out of its table, so the
    table's n is smaller than the number of completed seeds. An optional metric that a run does not record at all
    (an older run) is left out silently."""
    lines = []
    for job in (j for j in jobs if j.status == "completed"):
        for metric in REPORT_METRICS:
            value = job.metrics.get(metric.key)
            if value is not None and as_float(value) is None:
                lines.append(f"{job.directory}: {metric.key} = {value} is not a finite number; left out of its table")
            elif value is None and (metric.key in job.metrics or not metric.optional):
                missing = "null" if metric.key in job.metrics else "missing"
                lines.append(f"{job.directory}: {metric.key} is {missing} in metrics.json; left out of its table")
    return lines
