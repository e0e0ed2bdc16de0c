"""Making a report: read the sweeps, build the tables and comparisons, write report.md, the CSVs and the plots."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labelsmooth.report.base import (
    DEFAULT_PARAMETER,
    REPORT_METRICS,
    SELECTION_METRIC,
    ParameterValue,
    param_label,
    slug,
)
from labelsmooth.report.baseline import choose_baseline
from labelsmooth.report.curves import plot_learning_curves
from labelsmooth.report.distillation import STUDENT_METRIC, TEACHER_COLUMN, build_distillation_table
from labelsmooth.report.jobs import (
    DuplicateRun,
    Job,
    MissingJob,
    NoJobsError,
    check_parameter,
    collect,
    counted_jobs,
    distinct_jobs,
    infer_parameter,
    non_finite_values,
    pooled_keys,
    without_parameter,
)
from labelsmooth.report.markdown import render_markdown
from labelsmooth.report.penultimate import plot_penultimate_grid
from labelsmooth.report.per_class import PerClassTable, build_per_class_tables, per_class_csv_name, write_per_class_csv
from labelsmooth.report.plots import plot_metric_vs_parameter, plot_reliability
from labelsmooth.report.risk_coverage import plot_risk_coverage
from labelsmooth.report.stats import PairedComparison
from labelsmooth.report.tables import (
    LeftOut,
    Table,
    build_table,
    comparisons,
    uncompared_rows,
    write_comparison_csv,
    write_runs_csv,
    write_table_csv,
)
from labelsmooth.runs.files import write_text_atomic

REPORT_FILE = "report.md"


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
    parameter: str = DEFAULT_PARAMETER
    baseline: ParameterValue = 1.0
    duplicates: list[DuplicateRun] = field(default_factory=list)
    baseline_reason: str = ""
    distillation: Table | None = None
    plots: list[Path] = field(default_factory=list)
    per_class: list[PerClassTable] = field(default_factory=list)
    counted: list[Job] = field(default_factory=list)  # the jobs the tables count (duplicate runs left out)
    pooled: list[str] = field(default_factory=list)  # other keys the jobs vary, which the cells pool (--param)
    uncompared: dict[str, list[LeftOut]] = field(default_factory=dict)  # per metric: Table 3's rows left out, why


def _plots(
    out: Path, tables: Sequence[Table], counted: Sequence[Job], parameter: str, problems: list[str]
) -> list[Path]:
    """The report's figures; input files that cannot be used are left out, each named in ``problems``."""
    by_key = {t.metric.key: t for t in tables}
    name = slug(parameter.rsplit(".", 1)[-1])  # accuracy_vs_gamma.png, accuracy_vs_smoothing.png, ...
    plots = [
        plot_metric_vs_parameter(
            out / f"accuracy_vs_{name}.png", [by_key["val/acc_best"]], parameter, "best val. accuracy (%)"
        ),
        plot_metric_vs_parameter(
            out / f"ece_vs_{name}.png",
            [by_key["test/ece"], by_key["test/ece_ts"]],
            parameter,
            "test ECE (%)",
            ["before", "after temperature scaling"],
        ),
        *plot_learning_curves(out, counted, parameter, problems),
        *plot_reliability(out, counted, parameter),
        *plot_risk_coverage(out, counted, parameter, problems),
        *plot_penultimate_grid(out, counted, parameter),
    ]
    return [p for p in plots if p is not None]


def make_report(
    sweep_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    parameter: str | None = None,
    baseline: float | str | None = None,
    plots: bool = True,
) -> Report:
    """Read the sweeps, write report.md, the CSV files and (``plots``) the plots into ``out_dir`` (the first sweep
    dir).
    ``parameter`` is a number (``smoothing.gamma``) or a name (``smoothing``: compare strategies); ``baseline``
    the value to compare the best with (default: the unsmoothed value the jobs record, ``none`` for names;
    ``labelsmooth.report.baseline``). Without ``parameter``, the one key the jobs vary besides the seed
    (``infer_parameter``). Of completed jobs with the same data set, value and seed only the most recent counts
    (``counted_jobs``); the others are listed. A damaged input file does not stop the report: a job whose
    ``metrics.json`` cannot be read is listed as ``unreadable`` with the failed jobs, a predictions file that
    cannot be read is named in ``problems``. Every file is written atomically. Raises NotADirectoryError,
    creating nothing, when there is no ``out_dir`` and the first sweep directory is not an existing directory, and
    ``NoJobsError`` when the sweep directories hold no job and no grid, or no completed job. Nothing is written
    before every argument is checked (``ParameterError``)."""
    if out_dir is None and not Path(sweep_dirs[0]).is_dir():
        raise NotADirectoryError(f"{sweep_dirs[0]}: not an existing directory")
    jobs, missing, problems = collect(sweep_dirs)
    if not jobs and not missing:
        raise NoJobsError(f"{'; '.join(problems)}: nothing to report")
    if jobs and not any(job.status == "completed" for job in jobs):
        states = Counter(job.status for job in jobs)
        raise NoJobsError(
            f"no job completed ({', '.join(f'{n} {state}' for state, n in sorted(states.items()))}; their "
            "metrics.json say why): nothing to report"
        )
    if parameter:
        check_parameter(jobs, parameter)
    parameter = parameter or infer_parameter(jobs)
    counted, duplicates = counted_jobs(jobs, parameter)
    problems = [*problems, *without_parameter(jobs, parameter), *non_finite_values(counted)]
    tables = [build_table(jobs, metric, parameter) for metric in REPORT_METRICS]
    chosen = choose_baseline(counted, parameter, {c for t in tables for c in t.columns}, baseline)
    out = Path(out_dir or sweep_dirs[0])  # written from here on, once every argument is checked
    out.mkdir(parents=True, exist_ok=True)
    files = [write_runs_csv(out / "runs.csv", jobs, parameter, duplicates)]
    compared = {t.metric.key: comparisons(t, chosen.value) for t in tables if not t.metric.on_test_split}
    # a test metric's best is the value validation chose, row by row: the test split chooses nothing
    validation = {c.row: c for c in compared.get(SELECTION_METRIC, [])}
    by_validation = {row: c.best for row, c in validation.items()}
    compared |= {t.metric.key: comparisons(t, chosen.value, validation) for t in tables if t.metric.on_test_split}
    for table in (t for t in tables if t.shown):
        files.append(write_table_csv(out / f"table_{table.metric.slug}.csv", table, parameter))
        files.append(
            write_comparison_csv(
                out / f"best_vs_baseline_{table.metric.slug}.csv", compared[table.metric.key], parameter
            )
        )
    distillation = build_distillation_table(distinct_jobs(jobs))
    if distillation is not None:
        path = out / f"table_distillation_{STUDENT_METRIC.slug}.csv"
        files.append(write_table_csv(path, distillation, TEACHER_COLUMN))
    per_class = build_per_class_tables(counted, parameter, chosen.value)
    if per_class:
        files.append(write_per_class_csv(out / per_class_csv_name(), per_class, parameter))
    drawn = _plots(out, tables, counted, parameter, problems) if plots else []
    report = Report(
        out, out / REPORT_FILE, files + drawn, tables, compared, jobs, missing, problems,
        [Path(d) for d in sweep_dirs], parameter, chosen.value, duplicates, chosen.reason, distillation, drawn,
    )  # fmt: skip
    report.per_class, report.counted = per_class, counted
    report.pooled = pooled_keys(jobs, parameter)
    symbol = param_label(parameter)
    report.uncompared = {
        t.metric.key: uncompared_rows(t, chosen.value, symbol, by_validation if t.metric.on_test_split else None)
        for t in tables
    }
    write_text_atomic(report.markdown, render_markdown(report))
    report.files.insert(0, report.markdown)
    return report
