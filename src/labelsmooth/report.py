"""Turn sweep directories into the paper's tables and plots, with confidence intervals over seeds.

``python report.py outputs/multirun/<date>/<time> [more sweep dirs] [--wandb]`` reads every job's
``metrics.json`` and ``.hydra/config.yaml`` / ``overrides.yaml`` (never the training code) and writes into
the (first) sweep directory:

* ``report.md``: the tables below, the plots, the failed / missing jobs and the duplicate runs not counted (of
  completed jobs with the same data set, swept value and seed, e.g. one job in two sweep directories, only the
  one with the most recent ``metrics.json`` counts);
* ``runs.csv`` (one row per job), ``table_<metric>.csv`` and ``best_vs_baseline_<metric>.csv``;
* ``accuracy_vs_gamma.png``, ``ece_vs_gamma.png`` (``_vs_<parameter>``), ``reliability_<dataset>.png`` (test
  split, seeds pooled, one panel per γ, before and after temperature scaling).

``--wandb`` (online, logged in, the ``report`` extra) also logs the tables and plots to a W&B run of job type
``report`` and saves a W&B report page: the tables, panels over the sweep's training runs (its W&B group)
against the swept parameter, and the summary run's plots and tables (:func:`build_wandb_report`).

Tables (Mezzini 2019, "Empirical study on label smoothing"):

* Tables 1-2: per data set (rows) and γ (columns), the best validation accuracy ``val/acc_best`` as
  ``mean ± h (n)`` over seeds, ``h = t_{0.975, n-1} · s / √n`` the half-width of the 95% Student-t confidence
  interval of the mean (``s`` the sample standard deviation; no interval for n = 1).
* Table 3: per data set the best γ (highest mean) against γ = 1, the paper's relative difference
  ``diff % = 100 · (best - baseline) / best``, and a two-sided paired t-test over the seeds both have
  (``scipy.stats.ttest_rel``). The best γ is picked on the same runs, so the p-value is optimistic.
* The same tables for the test ECE and for the test ECE after temperature scaling (lower is better).

The swept parameter (``--param``) is γ by default; any number (``smoothing.epsilon``, ``seed``) or name works:
``--param smoothing`` compares strategies (columns ``none``, ``uniform``, ...; Table 3 against ``none``).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import socket
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labelsmooth.reliability import reliability_figure
from labelsmooth.run_outputs import save_figure_atomic, write_text_atomic
from labelsmooth.wandb_setup import sweep_group_name

METRICS_FILE = "metrics.json"
CALIBRATION_CSV = Path("calibration") / "reliability_test.csv"
MARKDOWN_TITLE = "# Label smoothing sweep report"


@dataclass(frozen=True)
class ReportMetric:
    """A ``metrics.json`` key reported as a table; values shown ×``scale`` (percent)."""

    key: str
    title: str
    higher_is_better: bool
    scale: float = 100.0

    @property
    def slug(self) -> str:
        return self.key.replace("/", "_")


REPORT_METRICS = (
    ReportMetric("val/acc_best", "Best validation accuracy (%)", higher_is_better=True),
    ReportMetric("test/ece", "Test ECE, 15 bins (%)", higher_is_better=False),
    ReportMetric("test/ece_ts", "Test ECE after temperature scaling (%)", higher_is_better=False),
)


# -- reading run outputs -------------------------------------------------------------------------------------
@dataclass
class Job:
    """One job of a sweep: its directory and what it left there."""

    directory: Path
    status: str  # completed, failed, running (metrics.json says so), incomplete (no metrics.json), unreadable
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    error: str = ""

    def value(self, key: str) -> Any:
        if key in self.metrics:
            return self.metrics[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    @property
    def dataset(self) -> str:
        name = self.metrics.get("dataset") or _override_value(self.overrides, "dataset")
        return str(name or _target_name(self.config.get("dataset")) or "?")

    @property
    def model(self) -> str:
        name = self.metrics.get("model") or _override_value(self.overrides, "model")
        return str(name or _target_name(self.config.get("model")) or "?")

    @property
    def seed(self) -> Any:
        return self.value("seed")


@dataclass
class MissingJob:
    """A job the sweep's grid asks for that has no directory (never started, or lost)."""

    sweep_dir: Path
    number: int
    overrides: list[str]


def _override_value(overrides: Sequence[str], key: str) -> str | None:
    for item in overrides:
        name, _, value = item.lstrip("+~").partition("=")
        if name == key:
            return value
    return None


def _target_name(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("_target_"), str):
        return node["_target_"].rsplit(".", 1)[-1]
    return None


def _load_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return None


def read_job(directory: Path) -> Job:
    """The job in ``directory`` (a folder with ``.hydra/`` and, once it ended, ``metrics.json``)."""
    config = _load_yaml(directory / ".hydra" / "config.yaml")
    overrides = _load_yaml(directory / ".hydra" / "overrides.yaml")
    job = Job(
        directory=directory,
        status="incomplete",
        config=config if isinstance(config, dict) else {},
        overrides=[str(o) for o in overrides] if isinstance(overrides, list) else [],
    )
    path = directory / METRICS_FILE
    if not path.exists():
        job.error = "no metrics.json (still running, killed, or not started)"
        return job
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(metrics, dict):
            raise ValueError("metrics.json is not a JSON object")
    except (OSError, ValueError) as error:
        job.status, job.error = "unreadable", f"metrics.json: {error}"
        return job
    job.metrics = metrics
    job.status = str(metrics.get("status", "unknown"))
    if job.status == "failed":
        job.error = f"{metrics.get('error_type', 'Error')}: {metrics.get('error', '')}".strip()
    return job


def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job of a basic-sweeper grid, in job-number order, from ``multirun.yaml``
    (Hydra's own grid expansion); None when unknown (no multirun.yaml, or another sweeper such as Optuna)."""
    multirun = _load_yaml(sweep_dir / "multirun.yaml")
    if not isinstance(multirun, dict):
        return None
    hydra_cfg = multirun.get("hydra") or {}
    sweeper = hydra_cfg.get("sweeper") or {}
    if "BasicSweeper" not in str(sweeper.get("_target_", "")):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        arguments = params + list((hydra_cfg.get("overrides") or {}).get("task") or [])
        overrides = OverridesParser.create().parse_overrides(arguments)
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    except Exception:  # an unparsable grid must not stop the report
        return None


DEFAULT_PARAMETER = "smoothing.gamma"
REPLICATE_KEYS = {"seed"}


def swept_parameters(jobs: Sequence[Job]) -> list[str]:
    """The override keys whose values differ between the jobs, besides the seed (``smoothing.gamma=0.6,0.8`` →
    ``smoothing.gamma``), in the order of the first job's command line: what a grid, a ``sweep=`` preset or
    an Optuna search actually varied."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for item in job.overrides:
            key, _, value = item.lstrip("+~").partition("=")
            values.setdefault(key, set()).add(value)
    for job in jobs:  # a key some jobs do not override at all varies too (its default against a value)
        keys = {item.lstrip("+~").partition("=")[0] for item in job.overrides}
        for key in values.keys() - keys:
            values[key].add("<default>")
    swept = [k for k, v in values.items() if len(v) > 1 and not k.startswith("hydra")]
    return [k for k in swept if k not in REPLICATE_KEYS]


class ParameterError(ValueError):
    """A ``--param`` that the jobs do not have, or that would pool jobs which differ in what they vary."""


def check_parameter(jobs: Sequence[Job], parameter: str) -> None:
    """Raise ``ParameterError`` when no completed job has ``parameter``, or when it takes one value while the jobs
    vary another key (its table would average different runs and call all but one per seed duplicates)."""
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
    """The one key the jobs vary besides the seed; ``smoothing.gamma`` when that is not a single key (several
    keys, or nothing varied): name it with ``--param`` then."""
    found = swept_parameters(jobs)
    return found[0] if len(found) == 1 else DEFAULT_PARAMETER


def collect(sweep_dirs: Iterable[str | os.PathLike]) -> tuple[list[Job], list[MissingJob], list[str]]:
    """Every job under the sweep directories, the grid's jobs without a directory, and problems found."""
    jobs: list[Job] = []
    missing: list[MissingJob] = []
    problems: list[str] = []
    for sweep_dir in map(Path, sweep_dirs):
        if not sweep_dir.is_dir():
            problems.append(f"{sweep_dir}: not a directory")
            continue
        directories = sorted(
            {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
            | {p.parent for p in sweep_dir.rglob(METRICS_FILE)},
            key=lambda p: (len(p.parts), int(p.name) if p.name.isdigit() else math.inf, str(p)),
        )
        directories = [d for d in directories if d != sweep_dir or (d / METRICS_FILE).exists()]
        if not directories:
            problems.append(f"{sweep_dir}: no jobs found (no */.hydra/config.yaml or */metrics.json)")
        jobs.extend(read_job(d) for d in directories)
        grid = expected_jobs(sweep_dir)
        if grid is not None:
            for number, overrides in enumerate(grid):
                if not (sweep_dir / str(number)).is_dir():
                    missing.append(MissingJob(sweep_dir, number, overrides))
    return jobs, missing, problems


# -- statistics ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with the half-width of its two-sided confidence interval (NaN for n < 2)."""

    mean: float
    half_width: float
    n: int
    std: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_confidence_interval(values: Sequence[float], level: float = 0.95) -> Estimate:
    """``mean ± t_{(1+level)/2, n-1} · s / √n`` with ``s`` the sample standard deviation (ddof = 1)."""
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, 0, math.nan)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, math.nan, 1, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n), n, std)


@dataclass(frozen=True)
class PairedComparison:
    """Best parameter value against the baseline on one data set (Table 3)."""

    row: str
    best: float | str
    best_estimate: Estimate
    baseline: float | str
    baseline_estimate: Estimate
    relative_difference: float  # 100 · (best - baseline) / best, the paper's "diff %"
    n_pairs: int
    mean_difference: float
    t_statistic: float
    p_value: float


def paired_comparison(
    row: str,
    by_value: dict[Any, dict[Any, float]],
    baseline: float | str,
    higher_is_better: bool,
) -> PairedComparison | None:
    """Pick the best value by mean, compare with ``baseline`` on the seeds both have (paired t-test)."""
    from scipy import stats

    estimates = {v: mean_confidence_interval(list(seeds.values())) for v, seeds in by_value.items() if seeds}
    if baseline not in estimates:
        return None

    def rank(value: Any) -> tuple[float, float]:  # by mean; among equal means the value nearest the baseline
        near = -abs(value - baseline) if isinstance(value, float) and isinstance(baseline, float) else 0.0
        return estimates[value].mean, near if higher_is_better else -near

    best = (max if higher_is_better else min)(estimates, key=rank)
    seeds = sorted(set(by_value[best]) & set(by_value[baseline]), key=str)
    a = [by_value[best][s] for s in seeds]
    b = [by_value[baseline][s] for s in seeds]
    t_stat = p_value = math.nan
    if best != baseline and len(seeds) >= 2:
        differences = [x - y for x, y in zip(a, b, strict=True)]
        if any(d != differences[0] for d in differences):
            result = stats.ttest_rel(a, b)
            t_stat, p_value = float(result.statistic), float(result.pvalue)
    best_mean, base_mean = estimates[best].mean, estimates[baseline].mean
    return PairedComparison(
        row=row,
        best=best,
        best_estimate=estimates[best],
        baseline=baseline,
        baseline_estimate=estimates[baseline],
        relative_difference=100.0 * (best_mean - base_mean) / best_mean if best_mean else math.nan,
        n_pairs=len(seeds),
        mean_difference=(sum(a) - sum(b)) / len(seeds) if seeds else math.nan,
        t_statistic=t_stat,
        p_value=p_value,
    )


# -- tables --------------------------------------------------------------------------------------------------
def _row_label(job: Job, multiple_models: bool) -> str:
    return f"{job.dataset} ({job.model})" if multiple_models else job.dataset


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


ParameterValue = float | str


def as_parameter_value(value: Any) -> ParameterValue | None:
    """A job's value of the swept parameter as a table column: a finite number as a float (γ, ε, a seed), other
    plain values as text (``smoothing``: the strategy's name; booleans as ``true`` / ``false``); None for a
    missing or nested value."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    number = _as_float(value)
    return number if number is not None else str(value)


def column_order(value: ParameterValue) -> tuple[int, float, str]:
    """Numbers ascending, then names alphabetically."""
    return (1, 0.0, value) if isinstance(value, str) else (0, value, "")


def format_value(value: ParameterValue) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# The value of a strategy parameter (conf/smoothing/<strategy>.yaml) at which the strategy does not smooth or
# regularize, where it is 0: ε of uniform / prior / binary, the floor of target_range, α of disturb_label, β of the
# penalties. (strategy, parameter) first, then the parameter alone; everything else (γ, the bootstrap β, online's α,
# the target_range ceiling) is unsmoothed at 1.
ZERO_IS_UNSMOOTHED = {
    (None, "epsilon"): True,
    (None, "initial_epsilon"): True,
    (None, "low"): True,
    (None, "alpha"): True,  # disturb_label
    ("online", "alpha"): False,  # q = α·onehot + (1-α)·S_y: α = 1 is the hard target
    ("kl_uniform", "beta"): True,
    ("confidence_penalty", "beta"): True,
}


def zero_is_unsmoothed(parameter: str | None, strategy: str | None = None) -> bool:
    """Whether 0 is the unsmoothed value of ``parameter`` (``smoothing.alpha``) of ``strategy`` (``online``)."""
    if parameter is None:
        return False
    name = parameter.rsplit(".", 1)[-1]
    return ZERO_IS_UNSMOOTHED.get((strategy, name), ZERO_IS_UNSMOOTHED.get((None, name), False))


def resolve_baseline(
    baseline: float | str | None,
    columns: Iterable[ParameterValue],
    parameter: str | None = None,
    strategy: str | None = None,
) -> ParameterValue:
    """The column that ``baseline`` names (``"1"`` matches 1.0). By default the unsmoothed value: ``none`` (the
    strategy without smoothing) when the parameter is a name; for a number, 0 when 0 means no smoothing for the
    parameter of ``strategy`` (the jobs' one strategy; ``smoothing.epsilon``, ``alpha`` of ``disturb_label``, ...)
    and 0 is swept, else 1.0 (γ = 1, online's α = 1) when swept, else 0 when swept, else 1.0 (Table 3 then says
    that no run has it and how to choose another)."""
    columns = list(columns)
    if baseline is None:
        numbers = {c for c in columns if isinstance(c, float)}
        if columns and all(isinstance(c, str) for c in columns):
            baseline = "none"
        elif zero_is_unsmoothed(parameter, strategy) and 0.0 in numbers:
            baseline = 0.0
        else:
            baseline = 1.0 if 1.0 in numbers or 0.0 not in numbers else 0.0
    number = _as_float(baseline)
    for column in columns:
        if (isinstance(column, float) and number is not None and column == number) or column == str(baseline):
            return column
    return number if number is not None else str(baseline)


@dataclass
class Table:
    """``values[row][parameter value][seed] = metric`` of the completed jobs."""

    metric: ReportMetric
    values: dict[str, dict[ParameterValue, dict[Any, float]]]

    @property
    def columns(self) -> list[ParameterValue]:
        return sorted({v for per_row in self.values.values() for v in per_row}, key=column_order)

    def estimate(self, row: str, column: ParameterValue) -> Estimate:
        return mean_confidence_interval(list(self.values.get(row, {}).get(column, {}).values()))


@dataclass(frozen=True)
class DuplicateRun:
    """A completed job not counted: a more recent completed job has the same row (data set), parameter value
    and seed, and the paired test pairs by seed, so one seed counts once."""

    job: Job
    kept: Job
    row: str
    column: ParameterValue
    seed: Any


def _finished_at(job: Job) -> int:
    """When the job wrote its metrics.json (ns since the epoch; -1 when it cannot be read)."""
    try:
        return (job.directory / METRICS_FILE).stat().st_mtime_ns
    except OSError:
        return -1


def counted_jobs(jobs: Sequence[Job], parameter: str) -> tuple[list[Job], list[DuplicateRun]]:
    """The jobs without the completed duplicates, and those duplicates: of several completed jobs with the same
    data set (and model, where a data set has several), value of ``parameter`` and seed (e.g. the same job in two
    sweep directories), only the one whose metrics.json is the most recent counts."""
    completed = [j for j in jobs if j.status == "completed"]
    models_per_dataset: dict[str, set[str]] = defaultdict(set)
    for job in completed:
        models_per_dataset[job.dataset].add(job.model)
    groups: dict[tuple[str, ParameterValue, Any], list[Job]] = defaultdict(list)
    for job in completed:
        column = as_parameter_value(job.value(parameter))
        if column is not None and job.seed is not None:
            row = _row_label(job, len(models_per_dataset[job.dataset]) > 1)
            groups[(row, column, job.seed)].append(job)
    dropped: dict[int, DuplicateRun] = {}
    for (row, column, _), group in groups.items():
        if len(group) > 1:
            kept = max(group, key=lambda j: (_finished_at(j), str(j.directory)))
            for job in group:
                if job is not kept:
                    dropped[id(job)] = DuplicateRun(job, kept, row, column, job.seed)
    return [j for j in jobs if id(j) not in dropped], list(dropped.values())


def build_table(jobs: Sequence[Job], metric: ReportMetric, parameter: str) -> Table:
    """The metric per row and parameter value over the seeds of the completed jobs, duplicates not counted
    (:func:`counted_jobs`)."""
    jobs, _ = counted_jobs(jobs, parameter)
    completed = [j for j in jobs if j.status == "completed"]
    models_per_dataset: dict[str, set[str]] = defaultdict(set)
    for job in completed:
        models_per_dataset[job.dataset].add(job.model)
    values: dict[str, dict[ParameterValue, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    for job in completed:
        column, value = as_parameter_value(job.value(parameter)), _as_float(job.metrics.get(metric.key))
        if column is None or value is None:
            continue
        row = _row_label(job, len(models_per_dataset[job.dataset]) > 1)
        seed = job.seed if job.seed is not None else str(job.directory)
        values[row][column][seed] = value
    return Table(metric, {r: dict(v) for r, v in sorted(values.items())})


def non_finite_values(jobs: Sequence[Job]) -> list[str]:
    """One line per completed job and report metric whose recorded value is not a finite number (a NaN ECE):
    left out of its table, so the table's n is smaller than the number of completed seeds."""
    return [
        f"{job.directory}: {metric.key} = {job.metrics[metric.key]} is not a finite number; left out of its table"
        for job in jobs
        if job.status == "completed"
        for metric in REPORT_METRICS
        if job.metrics.get(metric.key) is not None and _as_float(job.metrics[metric.key]) is None
    ]


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def format_cell(estimate: Estimate, scale: float) -> str:
    if estimate.n == 0:
        return "–"
    if estimate.n == 1:
        return f"{_fmt(estimate.mean * scale)} (n=1)"
    return f"{_fmt(estimate.mean * scale)} ± {_fmt(estimate.half_width * scale)} (n={estimate.n})"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _param_label(parameter: str) -> str:
    name = parameter.rsplit(".", 1)[-1]
    return {"gamma": "γ", "epsilon": "ε"}.get(name, name)


def table_rows(table: Table) -> list[list[str]]:
    return [
        [row, *(format_cell(table.estimate(row, c), table.metric.scale) for c in table.columns)] for row in table.values
    ]


def comparisons(table: Table, baseline: ParameterValue) -> list[PairedComparison]:
    found = (paired_comparison(r, v, baseline, table.metric.higher_is_better) for r, v in table.values.items())
    return [c for c in found if c is not None]


UNPAIRED_MARK = "†"
UNPAIRED_NOTE = (
    f"{UNPAIRED_MARK} best and baseline were not run on the same seeds: diff % compares their means over all their "
    "seeds, the p-value only the seeds both have (pairs)."
)


def unpaired(comparison: PairedComparison) -> bool:
    """Whether the best or the baseline has seeds the other lacks (a failed or missing job)."""
    return comparison.n_pairs < max(comparison.best_estimate.n, comparison.baseline_estimate.n)


def comparison_rows(items: Sequence[PairedComparison], scale: float) -> list[list[str]]:
    return [
        [
            c.row,
            format_value(c.best),
            format_cell(c.best_estimate, scale),
            format_cell(c.baseline_estimate, scale),
            _fmt(c.relative_difference) + (f" {UNPAIRED_MARK}" if unpaired(c) else ""),
            str(c.n_pairs),
            _fmt(c.p_value, 4),
        ]
        for c in items
    ]


# -- writing -------------------------------------------------------------------------------------------------
def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_table_csv(path: Path, table: Table, parameter: str) -> Path:
    rows = []
    for row, per_value in table.values.items():
        for column in sorted(per_value):
            e = table.estimate(row, column)
            seeds = ";".join(str(s) for s in sorted(per_value[column], key=str))
            rows.append([row, column, e.mean, e.half_width, e.low, e.high, e.std, e.n, seeds])
    header = ["row", parameter, "mean", "ci95_half_width", "ci95_low", "ci95_high", "std", "n", "seeds"]
    return _write_csv(path, header, rows)


def write_comparison_csv(path: Path, items: Sequence[PairedComparison], parameter: str) -> Path:
    header = [
        "row", f"best_{parameter}", "best_mean", "best_ci95_half_width", "best_n", f"baseline_{parameter}",
        "baseline_mean", "baseline_ci95_half_width", "baseline_n", "diff_percent", "n_pairs",
        "mean_paired_difference", "t_statistic", "p_value",
    ]  # fmt: skip
    rows = [
        [
            c.row,
            c.best,
            c.best_estimate.mean,
            c.best_estimate.half_width,
            c.best_estimate.n,
            c.baseline,
            c.baseline_estimate.mean,
            c.baseline_estimate.half_width,
            c.baseline_estimate.n,
            c.relative_difference,
            c.n_pairs,
            c.mean_difference,
            c.t_statistic,
            c.p_value,
        ]  # fmt: skip
        for c in items
    ]
    return _write_csv(path, header, rows)


def write_runs_csv(path: Path, jobs: Sequence[Job], parameter: str, duplicates: Sequence[DuplicateRun] = ()) -> Path:
    """One row per job; ``duplicate_of`` names the job counted instead of a duplicate (:func:`counted_jobs`)."""
    keys = [m.key for m in REPORT_METRICS] + ["val/acc", "test/acc", "test/nll", "test/nll_ts", "temperature"]
    header = ["directory", "status", "dataset", "model", "smoothing", parameter, "seed", *keys, "error", "duplicate_of"]
    kept = {id(d.job): str(d.kept.directory) for d in duplicates}
    rows = [
        [
            str(j.directory),
            j.status,
            j.dataset,
            j.model,
            j.metrics.get("smoothing", ""),
            j.value(parameter),
            j.seed,
            *(j.metrics.get(k, "") for k in keys),
            j.error,
            kept.get(id(j), ""),
        ]  # fmt: skip
        for j in jobs
    ]
    return _write_csv(path, header, rows)


def plot_metric_vs_parameter(
    path: Path, tables: Sequence[Table], parameter: str, ylabel: str, labels: Sequence[str] | None = None
) -> Path | None:
    """One panel per data set: mean ± 95% CI of each table's metric against the parameter, with each seed's
    value as a faint dot. With few seeds the Student-t interval is wide (n = 2: ±12.7 standard errors) and can
    reach past the metric's range; the y axis stays within [0, 1]·scale (every report metric is a fraction)
    and the bars are clipped there, while the tables keep the exact numbers."""
    from matplotlib.figure import Figure

    rows = sorted({r for t in tables for r in t.values})
    if not rows:
        return None
    figure = Figure(figsize=(4.2 * len(rows), 3.4), layout="constrained")
    axes = figure.subplots(1, len(rows), squeeze=False)[0]
    for ax, row in zip(axes, rows, strict=True):
        shown: list[float] = []
        upper_limit = max(t.metric.scale for t in tables)
        for i, table in enumerate(tables):
            scale = table.metric.scale
            per_value = table.values.get(row, {})
            columns = [c for c in table.columns if c in per_value]
            estimates = [table.estimate(row, c) for c in columns]
            means = [e.mean * scale for e in estimates]
            errors = [0.0 if math.isnan(e.half_width) else e.half_width * scale for e in estimates]
            categorical = any(isinstance(c, str) for c in table.columns)  # names: a categorical axis, column order
            x = [format_value(c) for c in columns] if categorical else columns
            label = labels[i] if labels else table.metric.title
            style = "none" if categorical else "-"  # no line between unordered names
            line = ax.errorbar(x, means, yerr=errors, marker="o", capsize=3, linestyle=style, label=label)
            seeds_x = [position for position, c in zip(x, columns, strict=True) for _ in per_value[c]]
            seeds_y = [v * scale for c in columns for v in per_value[c].values()]
            ax.scatter(seeds_x, seeds_y, s=10, alpha=0.35, color=line.lines[0].get_color(), zorder=3)
            shown += seeds_y + [m + e for m, e in zip(means, errors, strict=True)]
            shown += [m - e for m, e in zip(means, errors, strict=True)]
        finite = [v for v in shown if math.isfinite(v)]
        if finite:
            low, high = max(min(finite), 0.0), min(max(finite), upper_limit)
            pad = 0.05 * (high - low) or 0.01 * upper_limit
            ax.set_ylim(max(low - pad, 0.0), min(high + pad, upper_limit))
        ax.set_title(row)
        ax.set_xlabel(_param_label(parameter))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(tables) > 1:
            ax.legend(fontsize=8)
    return save_figure_atomic(figure, path, dpi=110)


def read_bins(job: Job) -> dict[str, list[dict[str, float]]]:
    """The per-bin test numbers the calibration callback saved, by split (``test``, ``test_ts``)."""
    path = job.directory / CALIBRATION_CSV
    bins: dict[str, list[dict[str, float]]] = defaultdict(list)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for record in csv.DictReader(handle):
                bins[record["split"]].append(
                    {k: float(record[k]) for k in ("lower", "upper", "count", "accuracy", "confidence")}
                )
    except (OSError, KeyError, ValueError):
        return {}
    return dict(bins)


def pool_bins(bin_lists: Iterable[Sequence[dict[str, float]]]) -> list[dict[str, float]]:
    """Bins of several runs with the same edges merged: counts summed, accuracy and confidence count-weighted."""
    pooled: dict[tuple[float, float], list[float]] = {}
    for bins in bin_lists:
        for b in bins:
            key = (round(b["lower"], 9), round(b["upper"], 9))
            entry = pooled.setdefault(key, [0.0, 0.0, 0.0])
            entry[0] += b["count"]
            entry[1] += b["count"] * b["accuracy"]
            entry[2] += b["count"] * b["confidence"]
    return [
        {"lower": lo, "upper": hi, "count": n, "accuracy": a / n, "confidence": c / n}
        for (lo, hi), (n, a, c) in sorted(pooled.items())
        if n
    ]


def plot_reliability(out_dir: Path, jobs: Sequence[Job], parameter: str) -> list[Path]:
    """Per row of the tables (a data set, or a data set and model when it was trained with several), the test
    reliability diagrams of every parameter value side by side (seeds pooled); a second figure after temperature
    scaling."""
    grouped: dict[str, dict[ParameterValue, list[dict[str, list[dict[str, float]]]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    models_per_dataset: dict[str, set[str]] = defaultdict(set)
    for job in jobs:
        if job.status == "completed":
            models_per_dataset[job.dataset].add(job.model)
    for job in jobs:
        value = as_parameter_value(job.value(parameter))
        if job.status == "completed" and value is not None and (bins := read_bins(job)):
            grouped[_row_label(job, len(models_per_dataset[job.dataset]) > 1)][value].append(bins)
    paths = []
    symbol = _param_label(parameter)
    for row, by_value in sorted(grouped.items()):
        for split, suffix, what in (("test", "", "test"), ("test_ts", "_ts", "test after temperature scaling")):
            panels = {
                f"{symbol}={format_value(v)} ({len(runs)} runs)": pool_bins(r[split] for r in runs if split in r)
                for v, runs in sorted(by_value.items(), key=lambda item: column_order(item[0]))
            }
            panels = {title: bins for title, bins in panels.items() if bins}
            if panels:
                path = out_dir / f"reliability_{_slug(row)}{suffix}.png"
                figure = reliability_figure(
                    panels, panel_width=3.0, title=f"{row}: {what}, seeds pooled (ECE of the pooled bins)"
                )
                paths.append(save_figure_atomic(figure, path, dpi=100))
    return paths


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


@dataclass
class Report:
    out_dir: Path
    markdown: Path
    files: list[Path]
    tables: list[Table]
    comparisons: dict[str, list[PairedComparison]]
    jobs: list[Job]
    missing: list[MissingJob]
    problems: list[str]
    sweep_dirs: list[Path] = field(default_factory=list)
    parameter: str = "smoothing.gamma"
    baseline: ParameterValue = 1.0
    duplicates: list[DuplicateRun] = field(default_factory=list)


def make_report(
    sweep_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    parameter: str | None = None,
    baseline: float | str | None = None,
) -> Report:
    """Read the sweeps, write report.md, the CSV files and the plots into ``out_dir`` (the first sweep dir).
    ``parameter`` is a number (``smoothing.gamma``) or a name (``smoothing``: compare strategies); ``baseline``
    the value to compare the best with (default: the unsmoothed value, ``none``, γ = 1, ε = 0; ``resolve_baseline``).
    Without ``parameter``, the one key the jobs vary besides the seed (``infer_parameter``). Of completed jobs
    with the same data set, value and seed only the most recent counts (``counted_jobs``); the others are listed.
    Every file is written atomically. Raises NotADirectoryError, creating nothing, when there is no ``out_dir``
    and the first sweep directory is not an existing directory.
    """
    if out_dir is None and not Path(sweep_dirs[0]).is_dir():
        raise NotADirectoryError(f"{sweep_dirs[0]}: not an existing directory")
    jobs, missing, problems = collect(sweep_dirs)
    if parameter:
        check_parameter(jobs, parameter)
    parameter = parameter or infer_parameter(jobs)
    counted, duplicates = counted_jobs(jobs, parameter)
    problems = [*problems, *non_finite_values(counted)]
    out = Path(out_dir or sweep_dirs[0])
    out.mkdir(parents=True, exist_ok=True)
    files = [write_runs_csv(out / "runs.csv", jobs, parameter, duplicates)]
    tables = [build_table(jobs, metric, parameter) for metric in REPORT_METRICS]
    strategies = {str(job.value("smoothing")) for job in counted if job.status == "completed"}
    strategy = strategies.pop() if len(strategies) == 1 else None
    baseline = resolve_baseline(baseline, {c for t in tables for c in t.columns}, parameter, strategy)
    compared = {t.metric.key: comparisons(t, baseline) for t in tables}
    for table in tables:
        files.append(write_table_csv(out / f"table_{table.metric.slug}.csv", table, parameter))
        files.append(
            write_comparison_csv(
                out / f"best_vs_baseline_{table.metric.slug}.csv", compared[table.metric.key], parameter
            )
        )
    name = _slug(parameter.rsplit(".", 1)[-1])  # accuracy_vs_gamma.png, accuracy_vs_smoothing.png, ...
    plots = [
        plot_metric_vs_parameter(out / f"accuracy_vs_{name}.png", tables[:1], parameter, "best val. accuracy (%)"),
        plot_metric_vs_parameter(
            out / f"ece_vs_{name}.png", tables[1:], parameter, "test ECE (%)", ["before", "after temperature scaling"]
        ),
        *plot_reliability(out, counted, parameter),
    ]
    files += [p for p in plots if p is not None]
    markdown = write_text_atomic(
        out / "report.md",
        render_markdown(
            sweep_dirs, out, jobs, missing, problems, tables, compared, parameter, baseline, plots, duplicates
        ),
    )
    return Report(
        out, markdown, [markdown, *files], tables, compared, jobs, missing, problems,
        [Path(d) for d in sweep_dirs], parameter, baseline, duplicates,
    )  # fmt: skip


def render_markdown(
    sweep_dirs: Sequence[str | os.PathLike],
    out: Path,
    jobs: Sequence[Job],
    missing: Sequence[MissingJob],
    problems: Sequence[str],
    tables: Sequence[Table],
    compared: dict[str, list[PairedComparison]],
    parameter: str,
    baseline: ParameterValue,
    plots: Sequence[Path | None],
    duplicates: Sequence[DuplicateRun] = (),
) -> str:
    symbol = _param_label(parameter)
    counts = defaultdict(int)
    for job in jobs:
        counts[job.status] += 1
    plural = "s" if len(duplicates) != 1 else ""
    not_counted = f", {len(duplicates)} duplicate run{plural} not counted (listed below)" if duplicates else ""
    parts = [
        MARKDOWN_TITLE,
        "",
        "Sweeps: " + ", ".join(f"`{d}`" for d in sweep_dirs),
        "",
        f"Swept parameter: `{parameter}` (columns; `report.py --param` to choose another), rows: data sets.",
        "",
        f"Jobs: {len(jobs)} found ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}), "
        f"{len(missing)} missing from the grid{not_counted}.",
        "",
        "Cells are `mean ± h (n)` over seeds: `h = t(0.975, n-1) · s / √n` is the half-width of the 95% "
        "confidence interval of the mean (Student t), `n` the number of completed seeds. Values in percent.",
        "",
        f"Table 3 compares the best {symbol} with {symbol} = {format_value(baseline)}: "
        "`diff % = 100 · (best - baseline) / best` "
        "(the paper's definition); p-value: two-sided paired t-test over the seeds both have "
        "(`scipy.stats.ttest_rel`), – with fewer than 2 pairs or when best and baseline coincide. The best "
        f"{symbol} is chosen on these same runs, so the p-value is optimistic.",
    ]
    for table in tables:
        parts += ["", f"## Tables 1-2 · {table.metric.title} by {symbol} (`{table.metric.key}`)", ""]
        if table.values:
            header = ["data set", *(f"{symbol} = {format_value(c)}" for c in table.columns)]
            parts.append(_markdown(header, table_rows(table)))
        else:
            parts.append(f"No completed job reports `{table.metric.key}` with `{parameter}`.")
        items = compared[table.metric.key]
        which = "highest" if table.metric.higher_is_better else "lowest"
        parts += [
            "",
            f"### Table 3 · {table.metric.title}: best {symbol} ({which} mean) vs {symbol} = {format_value(baseline)}",
            "",
        ]
        if items:
            baseline_name = f"{symbol} = {format_value(baseline)}"
            header = ["data set", f"best {symbol}", "best", baseline_name, "diff %", "pairs", "p-value"]
            parts.append(_markdown(header, comparison_rows(items, table.metric.scale)))
            if any(unpaired(c) for c in items):
                parts += ["", UNPAIRED_NOTE]
        else:
            parts.append(
                f"No data set has completed runs at {symbol} = {format_value(baseline)}: choose the value to "
                "compare with by `report.py --baseline VALUE`."
            )
    if duplicates:
        parts += [
            "",
            "## Duplicate runs (not counted)",
            "",
            f"Completed jobs with the same data set, {symbol} and seed as a more recent one (by the time of their "
            "`metrics.json`): only the most recent counts, so no seed counts twice in a mean or a paired test.",
            "",
        ]
        header = ["data set", symbol, "seed", "not counted", *(f"{m.key} (%)" for m in REPORT_METRICS), "counted"]
        rows = [
            [
                d.row,
                format_value(d.column),
                str(d.seed),
                f"`{d.job.directory}`",
                *(
                    _fmt(v * m.scale) if (v := _as_float(d.job.metrics.get(m.key))) is not None else "–"
                    for m in REPORT_METRICS
                ),
                f"`{d.kept.directory}`",
            ]
            for d in duplicates
        ]
        parts.append(_markdown(header, rows))
    shown = [p for p in plots if p is not None]
    if shown:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({os.path.relpath(p, out)})" for p in shown]
    failed = [j for j in jobs if j.status != "completed"]
    parts += ["", "## Failed, unfinished and missing jobs", ""]
    if not failed and not missing and not problems:
        parts.append("None: every job completed.")
    for job in failed:
        parts.append(f"- `{job.directory}` ({job.status}): {' '.join(job.overrides)} — {job.error}")
    for item in missing:
        parts.append(f"- `{item.sweep_dir}/{item.number}` (missing): {' '.join(item.overrides)}")
    parts += [f"- {problem}" for problem in problems]
    return "\n".join(parts) + "\n"


# -- W&B ---------------------------------------------------------------------------------------------------------
REPORT_EXTRA = "pip install -e '.[report]' (or pip install 'wandb-workspaces>=0.4')"


def why_wandb_cannot_publish() -> str | None:
    """Why publishing to W&B cannot work from here (None when it can): offline mode, no API key, no network."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in {"offline", "dryrun", "disabled"}:
        return f"WANDB_MODE={mode}: W&B is set to offline; unset it (or WANDB_MODE=online) to publish"
    from urllib.parse import urlparse

    parsed = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host = parsed.hostname or "api.wandb.ai"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)  # a self-hosted server names its port
    if not os.environ.get("WANDB_API_KEY"):
        import netrc

        try:
            entry = netrc.netrc().authenticators(host)
        except (OSError, netrc.NetrcParseError):
            entry = None
        if not entry:
            return f"no W&B API key for {host}: run `wandb login` or set WANDB_API_KEY"
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as error:
        return f"cannot reach {host} ({error}): no network"
    return None


def _reports_api() -> Any:
    """``wandb_workspaces.reports.v2`` (the W&B Reports API); RuntimeError saying how to install it if missing."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError as error:
        raise RuntimeError(
            f"the W&B report page needs the wandb-workspaces package ({error}): {REPORT_EXTRA}"
        ) from error
    return wr


def _wandb_loggers(jobs: Sequence[Job]) -> list[tuple[Job, dict[str, Any]]]:
    """The jobs that logged to W&B, with their ``logger`` config."""
    found = []
    for job in jobs:
        logger = job.config.get("logger")
        if isinstance(logger, dict) and str(logger.get("_target_", "")).endswith("WandbLogger"):
            found.append((job, logger))
    return found


def _plain(value: Any) -> str | None:
    """A config string as given (None for null, empty or an unresolved ``${...}`` interpolation)."""
    return value if isinstance(value, str) and value and "${" not in value else None


def wandb_groups(jobs: Sequence[Job]) -> list[str]:
    """The W&B groups of the jobs' training runs, named as ``labelsmooth.train`` names them: ``logger.group``
    when the job's config sets it, else ``sweep-<date>-<time>`` from the sweep directory of a multirun job
    (``<sweep dir>/<job number>``). Jobs that logged elsewhere (another logger, none) and single runs have none."""
    groups = set()
    for job, logger in _wandb_loggers(jobs):
        if group := _plain(logger.get("group")):
            groups.add(group)
        elif logger.get("group") is None and job.directory.name.isdigit():
            groups.add(sweep_group_name(job.directory.resolve().parent))
    return sorted(groups)


def wandb_setting(jobs: Sequence[Job], key: str) -> str | None:
    """``logger.<key>`` (``project``, ``entity``) when every W&B job sets the same plain value, else None."""
    values = {_plain(logger.get(key)) for _, logger in _wandb_loggers(jobs)}
    return values.pop() if len(values) == 1 else None


def _summary_key(path: Path) -> str | None:
    """Where a report file goes in the summary run: ``tables/<name>`` (CSV) or ``plots/<name>`` (PNG)."""
    return {".csv": f"tables/{path.stem}", ".png": f"plots/{path.stem}"}.get(path.suffix)


@dataclass(frozen=True)
class SummaryRun:
    """The W&B run holding the report's tables and plots."""

    id: str
    url: str
    entity: str


def log_summary_run(report: Report, project: str, entity: str | None, group: str | None) -> SummaryRun:
    """Log the CSV tables (``wandb.Table`` under ``tables/<name>``) and plots (``wandb.Image`` under
    ``plots/<name>``) in one step to a W&B run of job type ``report`` in the sweep's group; attach report.md."""
    import wandb

    run = wandb.init(
        project=project,
        entity=entity,
        job_type="report",
        group=group,
        name=f"report-{group}" if group else "report",
        dir=str(report.out_dir),
    )
    try:
        logged: dict[str, Any] = {}
        for path in report.files:
            key = _summary_key(path)
            if path.suffix == ".csv":
                with open(path, newline="", encoding="utf-8") as handle:
                    rows = list(csv.reader(handle))
                if rows:
                    logged[key] = wandb.Table(columns=rows[0], data=rows[1:])
            elif path.suffix == ".png":
                logged[key] = wandb.Image(str(path))
        run.log(logged)
        run.save(str(report.markdown), base_path=str(report.out_dir), policy="now")
        return SummaryRun(id=run.id, url=str(run.url), entity=str(run.entity or ""))
    finally:
        run.finish()


def wandb_config_key(jobs: Sequence[Job], parameter: str) -> str:
    """The W&B config key that identifies the swept value: ``parameter`` itself (the runs' W&B config is their
    resolved Hydra config, nested), or ``<parameter>._target_`` where it names a config group whose node is a
    mapping (``smoothing``: runs then group by their strategy's class)."""
    for job in jobs:
        node: Any = job.config
        for part in parameter.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return f"{parameter}._target_"
        if node is not None:
            return parameter
    return parameter


def build_wandb_report(report: Report, project: str, entity: str, groups: Sequence[str], summary_run_id: str) -> Any:
    """The W&B report page of the sweep, unsaved (a ``wandb_workspaces.reports.v2.Report``; ``.save()`` publishes
    it). Building it touches no network (``entity`` is given); saving, and turning its run sets into the saved
    spec, ask the W&B API. Blocks, in order:

    * the tables of report.md (Markdown; the plots are panels further down);
    * a panel grid over the sweep's training runs (``groups``, job type other than ``report``): per report
      metric a scatter plot of the run's summary value against the swept parameter (the nested W&B config key,
      e.g. ``smoothing.gamma``, one point per seed) and a bar chart of its mean ± standard deviation per value,
      and the validation accuracy per epoch averaged per value;
    * a panel grid over the summary run (``summary_run_id``): its plots (media browsers) and tables.
    """
    wr = _reports_api()
    from wandb_workspaces import expr

    parameter, symbol = report.parameter, _param_label(report.parameter)
    completed = sum(job.status == "completed" for job in report.jobs)
    names = ", ".join("/".join(Path(d).resolve().parts[-2:]) for d in report.sweep_dirs) or str(report.out_dir)
    title = f"Label smoothing sweep {names}"
    description = (
        f"{completed} of {len(report.jobs)} jobs completed, {len(report.missing)} missing from the grid; swept "
        f"{parameter}. Made by report.py from " + ", ".join(str(d) for d in report.sweep_dirs) + "."
    )
    tables_md = render_markdown(
        report.sweep_dirs, report.out_dir, report.jobs, report.missing, report.problems, report.tables,
        report.comparisons, parameter, report.baseline, plots=[], duplicates=report.duplicates,
    ).removeprefix(MARKDOWN_TITLE + "\n\n")  # fmt: skip
    blocks: list[Any] = [wr.H1(text="Tables"), wr.MarkdownBlock(text=tables_md), wr.H1(text="Training runs")]
    x = wr.Config(wandb_config_key(report.jobs, parameter))
    if groups:
        runs = wr.Runset(
            entity=entity,
            project=project,
            name="training runs",
            filters=[expr.Metric("Group").isin(list(groups)), expr.Metric("JobType") != "report"],
        )
        panels = [
            wr.ScatterPlot(
                title=f"{m.key} vs {symbol} (one point per run)",
                x=x,
                y=wr.SummaryMetric(m.key),
                layout=wr.Layout(w=8, h=8),
            )
            for m in REPORT_METRICS
        ]
        panels += [
            wr.BarPlot(
                title=f"{m.key} by {symbol}: mean ± std over runs",
                metrics=[m.key],
                orientation="v",
                groupby=x,
                groupby_aggfunc="mean",
                groupby_rangefunc="stddev",
                layout=wr.Layout(w=8, h=8),
            )
            for m in REPORT_METRICS
        ]
        panels.append(
            wr.LinePlot(
                title=f"val/acc per epoch, mean ± std by {symbol}",
                x="epoch",  # Lightning logs the epoch with every metric
                y=["val/acc"],
                groupby=x,
                groupby_aggfunc="mean",
                groupby_rangefunc="stddev",
                layout=wr.Layout(w=24, h=8),
            )
        )
        blocks += [
            wr.P(
                text=f"The sweep's training runs (W&B group {', '.join(groups)}), against {symbol} (config "
                f"{parameter}); values are fractions, the tables above show percent."
            ),
            wr.PanelGrid(runsets=[runs], panels=panels),
        ]
    else:
        blocks.append(
            wr.P(text="No W&B group found: the jobs did not log to W&B (logger) or were not part of a multirun.")
        )
    summary = wr.Runset(
        entity=entity, project=project, name="summary run", filters=[expr.Metric("ID") == summary_run_id]
    )
    keys = [(key, path) for path in report.files if (key := _summary_key(path))]
    media = [
        wr.MediaBrowser(
            title=key, media_keys=[key], num_columns=1, layout=wr.Layout(w=24 if "reliability" in key else 12, h=10)
        )
        for key, path in keys
        if path.suffix == ".png"
    ]
    tables = [
        wr.WeavePanelSummaryTable(table_name=key, layout=wr.Layout(w=24, h=10))
        for key, path in keys
        if path.suffix == ".csv"
    ]
    blocks += [
        wr.H1(text="Plots and tables"),
        wr.P(text="From the summary run (job type report): means with 95% confidence intervals over seeds."),
        wr.PanelGrid(runsets=[summary], panels=media + tables),
    ]
    return wr.Report(project=project, entity=entity, title=title[:128], description=description, blocks=blocks)


@dataclass(frozen=True)
class Publication:
    """Where ``--wandb`` put the sweep: the report page and the summary run."""

    report_url: str
    run_url: str


def publish_to_wandb(report: Report, project: str = "labelsmooth", entity: str | None = None) -> Publication:
    """Log the summary run (:func:`log_summary_run`), then save the report page (:func:`build_wandb_report`)
    next to it; return both URLs. Raises RuntimeError with the reason when wandb-workspaces is missing, W&B is
    offline or unreachable, or the page could not be saved."""
    _reports_api()
    reason = why_wandb_cannot_publish()
    if reason:
        raise RuntimeError(reason)
    groups = wandb_groups(report.jobs)
    run = log_summary_run(report, project, entity, groups[0] if groups else None)
    try:
        page = build_wandb_report(report, project, entity or run.entity, groups, run.id)
        page.save()
        return Publication(report_url=str(page.url), run_url=run.url)
    except Exception as error:  # the API's errors are of many kinds; the run is logged either way
        raise RuntimeError(
            f"the summary run is logged ({run.url}) but the report page could not be saved: "
            f"{type(error).__name__}: {error}"
        ) from error


# -- command line --------------------------------------------------------------------------------------------
MULTIRUN_DIR = Path("outputs") / "multirun"


def nearest_sweep_dirs(path: str | os.PathLike, limit: int = 3) -> list[str]:
    """The existing sweep directories (those holding Hydra's ``multirun.yaml``: ``<multirun>/<date>/<time>``, or
    ``<multirun>/<name>`` for a named ``hydra.sweep.dir``) whose paths are closest to ``path``, or, when none is
    close, the most recent ones; ``<multirun>`` is the ``multirun`` folder that ``path`` names, else
    ``outputs/multirun`` here."""
    parts = Path(path).parts
    root = Path(*parts[: parts.index("multirun") + 1]) if "multirun" in parts[:-1] else MULTIRUN_DIR
    try:
        found = sorted(
            {str(p.parent) for pattern in ("*/multirun.yaml", "*/*/multirun.yaml") for p in root.glob(pattern)}
        )
    except OSError:
        return []
    return difflib.get_close_matches(str(path), found, n=limit, cutoff=0.6) or found[-limit:][::-1]


def invalid_paths(sweep_dirs: Sequence[str], out_dir: str | None) -> list[str]:
    """One line per path that cannot be used (a sweep directory that is not an existing directory, an ``--out``
    that exists but is not a directory), naming the nearest sweep directories."""
    lines = []
    for path in sweep_dirs:
        if not Path(path).is_dir():
            what = "not a directory" if Path(path).exists() else "no such directory"
            nearest = nearest_sweep_dirs(path)
            lines.append(
                f"{path}: {what}" + (f" (existing sweep directories: {', '.join(nearest)})" if nearest else "")
            )
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        lines.append(f"--out {out_dir}: exists and is not a directory")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="report.py")
    parser.add_argument("sweep_dirs", nargs="+", help="outputs/multirun/<date>/<time> (one or more)")
    parser.add_argument("--out", help="where to write the report (default: the first sweep directory)")
    parser.add_argument(
        "--param",
        help="the swept parameter, a number (smoothing.gamma) or a name (smoothing: compare strategies); default: "
        "the one key the sweep varies besides the seed, else smoothing.gamma",
    )
    parser.add_argument(
        "--baseline",
        help="the parameter value to compare against (default: the unsmoothed value: none for a name, 0 for ε, α "
        "of disturb_label, β of kl_uniform / confidence_penalty and the target_range floor when swept, else 1)",
    )
    parser.add_argument(
        "--wandb", action="store_true", help="also publish a W&B report page and a run with the tables and plots"
    )
    parser.add_argument("--project", help="W&B project for --wandb (default: the training runs' logger.project)")
    parser.add_argument("--entity", help="W&B entity for --wandb (default: the training runs' logger.entity)")
    args = parser.parse_args(argv)

    invalid = invalid_paths(args.sweep_dirs, args.out)
    for line in invalid:  # before anything is created
        print(f"report.py: {line}", file=sys.stderr)
    if invalid:
        return 2
    console = Console()
    try:
        report = make_report(args.sweep_dirs, args.out, args.param, args.baseline)
    except ParameterError as error:
        print(f"report.py: {error}", file=sys.stderr)
        return 2
    symbol = _param_label(report.parameter)
    for table in report.tables:  # one row per parameter value, one column per data set (fits a terminal)
        if not table.values:
            continue
        shown = RichTable(title=f"{table.metric.title}: mean ± 95% CI (n)")
        shown.add_column(symbol, justify="right")
        for row in table.values:
            shown.add_column(row, justify="right")
        for column in table.columns:
            shown.add_row(
                format_value(column),
                *(format_cell(table.estimate(r, column), table.metric.scale) for r in table.values),
            )
        console.print(shown)
        items = report.comparisons[table.metric.key]
        if items:
            compared = RichTable(
                title=f"Table 3 · {table.metric.title}: best {symbol} vs {symbol} = {format_value(report.baseline)}"
            )
            for name in ("data set", f"best {symbol}", "best", "baseline", "diff %", "pairs", "p-value"):
                compared.add_column(name, justify="left" if name == "data set" else "right")
            for row in comparison_rows(items, table.metric.scale):
                compared.add_row(*row)
            console.print(compared)
    for job in (j for j in report.jobs if j.status != "completed"):
        console.print(f"[yellow]{job.status}[/]: {job.directory} {job.error}")
    for item in report.missing:
        console.print(f"[yellow]missing[/]: {item.sweep_dir}/{item.number} {' '.join(item.overrides)}")
    for problem in report.problems:
        console.print(f"[yellow]{problem}[/]")
    for item in report.duplicates:
        console.print(
            f"[yellow]warning: duplicate run not counted[/]: {escape(str(item.job.directory))} (same data set, "
            f"{symbol} and seed as the more recent {escape(str(item.kept.directory))}; see report.md)",
            soft_wrap=True,
        )
    console.print(f"Swept parameter: [bold]{escape(report.parameter)}[/] (--param to choose another)")
    console.print(f"Report: [bold]{report.markdown}[/] ({len(report.files)} files in {report.out_dir})")
    if args.wandb:
        project = args.project or wandb_setting(report.jobs, "project") or "labelsmooth"
        entity = args.entity or wandb_setting(report.jobs, "entity")
        try:
            published = publish_to_wandb(report, project, entity)
        except RuntimeError as error:
            console.print(f"[red]Not published to W&B[/]: {escape(str(error))}. The report files above are complete.")
            return 2
        console.print(f"W&B report: [bold]{published.report_url}[/]")
        console.print(f"W&B summary run (tables and plots): {published.run_url}")
    return 0
