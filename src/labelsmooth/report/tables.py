"""The tables: a metric per row (data set) and parameter value over seeds, their cells, Table 3's comparisons
with the baseline, and the CSV files (one row per job, per cell, per comparison)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from labelsmooth.report.base import (
    REPORT_METRICS,
    SELECTION_METRIC,
    ParameterValue,
    ReportMetric,
    as_float,
    as_parameter_value,
    column_order,
    fmt,
    fmt_p_value,
    format_value,
)
from labelsmooth.report.jobs import DuplicateRun, Job, counted_jobs, row_labels, still_improving
from labelsmooth.report.stats import Estimate, PairedComparison, mean_confidence_interval, paired_comparison
from labelsmooth.runs.files import write_text_atomic
from labelsmooth.runs.provenance import DESCRIBED_KEYS

STILL_IMPROVING_MARK = "↑"
STILL_IMPROVING_NOTE = (
    f"{STILL_IMPROVING_MARK}k: k of the n seeds were still improving, their best validation accuracy came in the "
    "last epoch trained (`val/acc_best_epoch = epochs - 1` in metrics.json): a longer run may change these numbers."
)
AT_BOUND_MARK = "‡"
AT_BOUND_NOTE = (
    f"{AT_BOUND_MARK}k: for k of the n seeds the temperature fitted on the validation logits lies at a bound of its "
    "search (`temperature_at_bound` in metrics.json: every validation prediction right, or logits that separate the "
    "classes), so their temperature-scaled numbers are not a calibration."
)
UNPAIRED_MARK = "†"
UNPAIRED_NOTE = (
    f"{UNPAIRED_MARK} best and baseline were not run on the same seeds: diff % compares their means over all their "
    "seeds, the p-value only the seeds both have (pairs)."
)


@dataclass
class Table:
    """``values[row][parameter value][seed] = metric`` of the completed jobs; ``improving[row][value]``: the
    seeds among them that were still improving (accuracy tables only); ``at_bound[row][value]``: the seeds whose
    fitted temperature lies at a bound of its search (temperature-scaled metrics only)."""

    metric: ReportMetric
    values: dict[str, dict[ParameterValue, dict[Any, float]]]
    improving: dict[str, dict[ParameterValue, set[Any]]] = field(default_factory=dict)
    at_bound: dict[str, dict[ParameterValue, set[Any]]] = field(default_factory=dict)
    replicates: str = "seeds"  # what a cell's n counts
    improving_note: str = STILL_IMPROVING_NOTE

    @property
    def columns(self) -> list[ParameterValue]:
        return sorted({v for per_row in self.values.values() for v in per_row}, key=column_order)

    @property
    def shown(self) -> bool:
        """Whether the report shows it: always for the core metrics, for an optional one when a job has it."""
        return bool(self.values) or not self.metric.optional

    def estimate(self, row: str, column: ParameterValue) -> Estimate:
        return mean_confidence_interval(list(self.values.get(row, {}).get(column, {}).values()))

    def still_improving(self, row: str, column: ParameterValue) -> int:
        return len(self.improving.get(row, {}).get(column, ()))

    def cell(self, row: str, column: ParameterValue) -> str:
        """``mean ± h (n)`` in the metric's scale, with ``↑k`` when k of the seeds were still improving and ``‡k``
        when k of them had their temperature at a bound."""
        text = format_cell(self.estimate(row, column), self.metric.scale)
        marked = self.still_improving(row, column)
        bounded = len(self.at_bound.get(row, {}).get(column, ()))
        return (
            text
            + (f" {STILL_IMPROVING_MARK}{marked}" if marked else "")
            + (f" {AT_BOUND_MARK}{bounded}" if bounded else "")
        )

    @property
    def marked(self) -> bool:
        return any(seeds for per_row in self.improving.values() for seeds in per_row.values())

    @property
    def notes(self) -> list[str]:
        """The notes that explain the marks its cells carry."""
        bounded = any(seeds for per_row in self.at_bound.values() for seeds in per_row.values())
        notes = ((self.improving_note, self.marked), (AT_BOUND_NOTE, bounded))
        return [note for note, shown in notes if shown]


def build_table(jobs: Sequence[Job], metric: ReportMetric, parameter: str) -> Table:
    """The metric per row and parameter value over the seeds of the completed jobs, duplicates not counted
    (:func:`counted_jobs`)."""
    jobs, _ = counted_jobs(jobs, parameter)
    row_of = row_labels(jobs)
    values: dict[str, dict[ParameterValue, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    improving: dict[str, dict[ParameterValue, set[Any]]] = defaultdict(lambda: defaultdict(set))
    at_bound: dict[str, dict[ParameterValue, set[Any]]] = defaultdict(lambda: defaultdict(set))
    for job in (j for j in jobs if j.status == "completed"):
        column, value = as_parameter_value(job.value(parameter)), as_float(job.metrics.get(metric.key))
        if column is None or value is None:
            continue
        row = row_of(job)
        seed = job.seed if job.seed is not None else str(job.directory)
        values[row][column][seed] = value
        if metric.accuracy and still_improving(job):
            improving[row][column].add(seed)
        if metric.key.endswith("_ts") and as_float(job.metrics.get("temperature_at_bound")):
            at_bound[row][column].add(seed)
    return Table(
        metric,
        {r: dict(v) for r, v in sorted(values.items())},
        {r: {c: s for c, s in v.items() if s} for r, v in improving.items()},
        {r: {c: s for c, s in v.items() if s} for r, v in at_bound.items()},
    )


def format_cell(estimate: Estimate, scale: float) -> str:
    if estimate.n == 0:
        return "–"
    if estimate.n == 1:
        return f"{fmt(estimate.mean * scale)} (n=1)"
    return f"{fmt(estimate.mean * scale)} ± {fmt(estimate.half_width * scale)} (n={estimate.n})"


def table_rows(table: Table) -> list[list[str]]:
    return [[row, *(table.cell(row, c) for c in table.columns)] for row in table.values]


def comparisons(
    table: Table, baseline: ParameterValue, chosen: dict[str, PairedComparison] | None = None
) -> list[PairedComparison]:
    """Table 3 of ``table``: per row, its best value against ``baseline``; with ``chosen`` (row -> the validation
    table's comparison, for a test metric) the value validation chose, in the rows that have one, tied with the
    values it could not tell from it."""
    higher = table.metric.higher_is_better
    rows = [(row, values) for row, values in table.values.items() if chosen is None or row in chosen]
    found = (
        paired_comparison(row, values, baseline, higher)
        if chosen is None
        else paired_comparison(row, values, baseline, higher, chosen[row].best, chosen[row].tied)
        for row, values in rows
    )
    return [c for c in found if c is not None]


class LeftOut(NamedTuple):
    """A row that Table 3 leaves out, and why (``lacks_baseline``: no run at the baseline reports the metric)."""

    row: str
    reason: str
    lacks_baseline: bool

    def __str__(self) -> str:
        return f"{self.row}: {self.reason}"


def uncompared_rows(
    table: Table, baseline: ParameterValue, symbol: str, chosen: dict[str, ParameterValue] | None = None
) -> list[LeftOut]:
    """The rows of ``table`` that its Table 3 (``comparisons``, with the same ``baseline`` and ``chosen``) leaves
    out, and why: no run at the baseline reports the metric, or, for a test metric, validation chose no value for
    the row or no run at the chosen value reports the metric."""
    left_out = []
    key = table.metric.key
    for row, values in table.values.items():
        reported = {value for value, seeds in values.items() if seeds}
        if baseline not in reported:
            left_out.append(LeftOut(row, f"no run at {symbol} = {format_value(baseline)} reports `{key}`", True))
        elif chosen is not None and row not in chosen:
            left_out.append(LeftOut(row, f"`{SELECTION_METRIC}` chose no {symbol} for it", False))
        elif chosen is not None and chosen[row] not in reported:
            best = format_value(chosen[row])
            left_out.append(
                LeftOut(row, f"no run at {symbol} = {best}, the best by `{SELECTION_METRIC}`, reports `{key}`", False)
            )
    return left_out


def unpaired(comparison: PairedComparison) -> bool:
    """Whether the best or the baseline has seeds the other lacks (a failed or missing job)."""
    return comparison.n_pairs < max(comparison.best_estimate.n, comparison.baseline_estimate.n)


def comparison_rows(items: Sequence[PairedComparison], table: Table) -> list[list[str]]:
    """Table 3's rows: data set, best value, best and baseline cells (marked as in ``table``), diff %, pairs, p."""
    return [
        [
            c.row,
            format_value(c.best)
            + (" (the baseline: no value beats it)" if c.best == c.baseline and not table.metric.on_test_split else "")
            + (f" (tied: {', '.join(format_value(v) for v in c.tied)})" if c.tied else ""),
            table.cell(c.row, c.best),
            table.cell(c.row, c.baseline),
            fmt(c.relative_difference) + (f" {UNPAIRED_MARK}" if unpaired(c) else ""),
            str(c.n_pairs),
            fmt_p_value(c.p_value),
        ]
        for c in items
    ]


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def write_table_csv(path: Path, table: Table, parameter: str) -> Path:
    """One row per cell: mean, 95% interval, standard deviation, n and the replicates (seeds) it pools."""
    rows = []
    for row, per_value in table.values.items():
        for column in sorted(per_value, key=column_order):
            e = table.estimate(row, column)
            seeds = ";".join(str(s) for s in sorted(per_value[column], key=str))
            rows.append([row, column, e.mean, e.half_width, e.low, e.high, e.std, e.n, seeds])
    header = ["row", parameter, "mean", "ci95_half_width", "ci95_low", "ci95_high", "std", "n", table.replicates]
    return write_csv(path, header, rows)


def write_comparison_csv(path: Path, items: Sequence[PairedComparison], parameter: str) -> Path:
    header = [
        "row", f"best_{parameter}", "best_mean", "best_ci95_half_width", "best_n", f"baseline_{parameter}",
        "baseline_mean", "baseline_ci95_half_width", "baseline_n", "diff_percent", "n_pairs",
        "mean_paired_difference", "t_statistic", "p_value", f"tied_{parameter}",
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
            " ".join(format_value(v) for v in c.tied),
        ]  # fmt: skip
        for c in items
    ]
    return write_csv(path, header, rows)


RUN_EXTRA_KEYS = ("val/acc", "test/nll", "test/nll_ts", "temperature", "temperature_at_bound")
IMPROVEMENT_KEYS = ("val/acc_best_epoch", "epochs")
RUN_IDENTITY = ("dataset", "model", "smoothing")
CODE_KEYS = (*DESCRIBED_KEYS, "device")


def write_runs_csv(path: Path, jobs: Sequence[Job], parameter: str, duplicates: Sequence[DuplicateRun] = ()) -> Path:
    """One row per job; ``duplicate_of`` names the job counted instead of a duplicate (:func:`counted_jobs`);
    ``still_improving`` is ``true`` when the best validation accuracy came in the last epoch (blank without the
    fields). Optional metrics, the epoch fields and the code that computed the job (``code.*``, ``device``) get a
    column when some job records them; the swept parameter gets one unless it is the data set, model or strategy,
    and so do the strategies' parameters (``smoothing.<name>``)."""
    recorded = {key for job in jobs for key in job.metrics}
    metrics = [m.key for m in REPORT_METRICS if not m.optional or m.key in recorded]
    epochs = [k for k in IMPROVEMENT_KEYS if k in recorded]
    keys = [*metrics, *RUN_EXTRA_KEYS, *epochs]
    code = [k for k in CODE_KEYS if k in recorded]
    improving = ["still_improving"] if epochs else []
    swept = [] if parameter in RUN_IDENTITY else [parameter]
    strategy = sorted(k for k in recorded if k.startswith("smoothing.") and k != parameter)
    header = ["directory", "status", *RUN_IDENTITY, *swept, *strategy, "seed", *keys, *improving, *code]
    kept = {id(d.job): str(d.kept.directory) for d in duplicates}

    def improving_cell(job: Job) -> list[str]:
        flag = still_improving(job)
        return [] if not improving else ["" if flag is None else str(flag).lower()]

    rows = [
        [
            str(j.directory),
            j.status,
            j.dataset,
            j.model,
            j.metrics.get("smoothing", ""),
            *(j.value(parameter) for _ in swept),
            *(j.metrics.get(k, "") for k in strategy),
            j.seed,
            *(j.metrics.get(k, "") for k in keys),
            *improving_cell(j),
            *(j.metrics.get(k, "") for k in code),
            j.error,
            kept.get(id(j), ""),
        ]  # fmt: skip
        for j in jobs
    ]
    return write_csv(path, [*header, "error", "duplicate_of"], rows)
