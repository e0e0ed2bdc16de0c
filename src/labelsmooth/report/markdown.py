"""``report.md``: the tables of a report as Markdown, its notes, the plots linked, failed and missing jobs."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from labelsmooth.report.base import (
    MARKDOWN_TITLE,
    SELECTION_METRIC,
    as_float,
    fmt,
    format_value,
    markdown_table,
    param_label,
)
from labelsmooth.report.distillation import STUDENT_METRIC, TEACHER_KEY
from labelsmooth.report.jobs import Job
from labelsmooth.report.per_class import per_class_markdown
from labelsmooth.report.tables import (
    UNPAIRED_NOTE,
    Table,
    comparison_rows,
    table_rows,
    unpaired,
)
from labelsmooth.runs.provenance import DESCRIBED_KEYS, NOT_RECORDED, code_keys_that_differ, describe_code

if TYPE_CHECKING:
    from labelsmooth.report.build import Report


def bins_note(jobs: Sequence[Job]) -> list[str]:
    """The bins of the binned calibration errors, as the jobs record them (``n_bins``, in ``metrics.json`` or
    their config); a warning when they differ, since an ECE cell would then pool different measures."""
    bins = sorted({int(value) for job in jobs if isinstance(value := job.value("n_bins"), (int, float))})
    if len(bins) == 1:
        return ["", f"Binned calibration errors (ECE, class-wise ECE, MCE) use {bins[0]} equal-width bins (`n_bins`)."]
    if bins:
        listed = ", ".join(map(str, bins))
        return [
            "",
            f"**The jobs bin their calibration errors differently** (`n_bins` = {listed}): ECE cells pool them.",
        ]
    return []


def selection_note(jobs: Sequence[Job]) -> list[str]:
    """Which checkpoint the test cells are of: each completed job's selection (``checkpoint.monitor`` and
    ``checkpoint.mode`` in its ``metrics.json``), with its number of jobs; a warning when they differ, and where
    jobs validate on their test split (``validation_split: test``)."""
    selections: dict[str, int] = defaultdict(int)
    for job in (j for j in jobs if j.status == "completed" and "checkpoint.monitor" in j.metrics):
        monitor, mode = job.metrics["checkpoint.monitor"], job.metrics.get("checkpoint.mode")
        selections[f"the best by `{monitor}` ({mode})" if monitor else "the last epoch's (none monitored)"] += 1
    listed = "; ".join(f"{name} in {n} job{'s' if n != 1 else ''}" for name, n in sorted(selections.items()))
    lines = []
    if len(selections) > 1:
        lines = ["", f"**The jobs select their tested checkpoints differently**: {listed}. Test cells pool them."]
    elif listed:
        lines = ["", f"Test cells are of the checkpoint each job selected: {listed}."]
    completed = [j for j in jobs if j.status == "completed"]
    on_test = sum(j.metrics.get("validation_split") == "test" for j in completed)
    if on_test:
        lines += [
            "",
            f"**{on_test} of {len(completed)} completed jobs validate on their test split** (`dataset.val_size=0`, "
            "Mezzini's protocol): their best validation accuracy, checkpoint, temperature and p are chosen on the "
            "test images, so their numbers compare with the paper's, not with held-out ones.",
        ]
    return lines


def _header(report: Report) -> list[str]:
    symbol = param_label(report.parameter)
    counts: dict[str, int] = defaultdict(int)
    for job in report.jobs:
        counts[job.status] += 1
    duplicates = report.duplicates
    plural = "s" if len(duplicates) != 1 else ""
    not_counted = f", {len(duplicates)} duplicate run{plural} not counted (listed below)" if duplicates else ""
    lines = [
        MARKDOWN_TITLE,
        "",
        "Sweeps: " + ", ".join(f"`{d}`" for d in report.sweep_dirs),
        "",
        f"Swept parameter: `{report.parameter}` (columns; `report.py --param` to choose another), rows: data sets.",
        "",
        f"Jobs: {len(report.jobs)} found ({', '.join(f'{n} {s}' for s, n in sorted(counts.items())) or 'none'}), "
        f"{len(report.missing)} missing from the grid{not_counted}.",
        "",
        "Cells are `mean ± h (n)` over seeds: `h = t(0.975, n-1) · s / √n` is the half-width of the 95% "
        "confidence interval of the mean (Student t), `n` the number of seeds with a finite value. Values in percent.",
        "",
        f"Table 3 compares the best {symbol} with {symbol} = {format_value(report.baseline)}: "
        "`diff % = 100 · (best - baseline) / best` for the accuracies (the paper's definition), "
        "`100 · (best - baseline) / baseline` for the errors (the change relative to the baseline: negative is a "
        "lower error than the baseline's, positive a higher one); a best tied "
        "with other values (equal means) names them (in a test table, the values validation could not tell from "
        "it); a baseline that no value beats is compared with itself; p-value: two-sided paired t-test over the "
        "seeds both have "
        "(`scipy.stats.ttest_rel`), – with fewer than 2 pairs, when best and baseline coincide, or when every "
        "pair differs by the same amount (no variance to test). The best "
        f"{symbol} of a validation table is chosen on these same runs, so its p-value is optimistic; a test "
        f"table compares the {symbol} with the best mean `{SELECTION_METRIC}` (the test split chooses nothing). "
        "Each table's p-values are uncorrected for the number of data sets and metrics compared.",
    ]
    lines += bins_note(report.counted) + selection_note(report.counted)
    if report.pooled:
        lines += [
            "",
            f"**Pooled:** the jobs also differ in {', '.join(f'`{k}`' for k in report.pooled)}, not only in "
            f"`{report.parameter}`: a column or a cell may hold runs with different values of it, so a difference "
            f"between columns is not {symbol}'s alone, and of the jobs with the same data set, {symbol} and seed only "
            "the most recent counts (the others are listed as duplicates). Report them apart to compare them.",
        ]
    if report.baseline_reason:
        lines += ["", f"Baseline: {report.baseline_reason}"]
    lines += strategy_settings(report)
    if any(len(seeds) == 2 for t in report.tables for per_row in t.values.values() for seeds in per_row.values()):
        lines += ["", "Cells with n = 2 seeds have t(0.975, 1) = 12.71: their intervals are wide and may pass 0 or "
                  "100 %; three seeds or more narrow them (t = 4.30, 3.18, ...)."]  # fmt: skip
    note = code_note(report.counted)
    return lines + (["", note[0]] if note else [])


def strategy_settings(report: Report) -> list[str]:
    """Where the columns are strategies by name (``--param smoothing``), the parameters each ran with (its jobs'
    ``smoothing.<name>``), since a name alone does not say which γ or ε was compared."""
    if report.parameter != "smoothing":
        return []
    settings: dict[str, set[str]] = defaultdict(set)
    for job in (j for j in report.counted if j.status == "completed"):
        values = sorted((k.split(".", 1)[1], v) for k, v in job.metrics.items() if k.startswith("smoothing."))
        settings[str(job.value("smoothing"))].add(", ".join(f"{k}={format_value(v)}" for k, v in values) or "none")
    listed = "; ".join(f"`{name}` ({' | '.join(sorted(ran))})" for name, ran in sorted(settings.items()))
    return ["", f"Strategies and their parameters: {listed}."] if listed else []


def code_note(jobs: Sequence[Job]) -> tuple[str, bool] | None:
    """Which code computed the completed ``jobs`` that the tables count (their ``code.*`` records), in Markdown, and
    whether it is more than one version (the tables then pool the numbers of different code); None without a
    completed job."""
    records = [j.metrics for j in jobs if j.status == "completed"]
    if not records:
        return None
    differing = code_keys_that_differ(records)
    if not differing:
        described = describe_code(records[0])
        if described == NOT_RECORDED:
            return "Code: not recorded in the jobs' metrics.json (no `code.*` keys).", False
        return f"Code: every completed job ran {described} (`code.*` in each metrics.json).", False
    states: dict[str, int] = defaultdict(int)
    for record in records:
        others = [f"{k}={record.get(k)}" for k in differing if k not in DESCRIBED_KEYS]
        states[", ".join([describe_code(record), *others])] += 1
    keys = ", ".join(f"`{k}`" for k in differing)
    listed = "; ".join(f"{state} ({n} job{'s' if n != 1 else ''})" for state, n in states.items())
    return (f"Code: **the tables pool jobs computed by {len(states)} versions of the code** (they differ in {keys}): "
            f"{listed}.", True)  # fmt: skip


def _metric_tables(report: Report, table: Table) -> list[str]:
    symbol, baseline = param_label(report.parameter), format_value(report.baseline)
    parts = ["", f"## Tables 1-2 · {table.metric.title} by {symbol} (`{table.metric.key}`)", ""]
    if table.values:
        header = ["data set", *(f"{symbol} = {format_value(c)}" for c in table.columns)]
        parts.append(markdown_table(header, table_rows(table)))
        for note in table.notes:
            parts += ["", note]
    else:
        parts.append(f"No completed job reports `{table.metric.key}` with `{report.parameter}`.")
    items = report.comparisons[table.metric.key]
    parts += ["", f"### Table 3 · {table.metric.title}: {table.metric.best_label(symbol)} vs {symbol} = {baseline}", ""]
    left_out = report.uncompared.get(table.metric.key, [])
    if items:
        header = ["data set", f"best {symbol}", "best", f"{symbol} = {baseline}", "diff %", "pairs", "p-value"]
        parts.append(markdown_table(header, comparison_rows(items, table)))
        if any(unpaired(c) for c in items):
            parts += ["", UNPAIRED_NOTE]
    elif all(item.lacks_baseline for item in left_out):
        parts.append(
            f"No data set has completed runs at {symbol} = {baseline}: choose the value to "
            "compare with by `report.py --baseline VALUE`."
        )
        left_out = []
    if left_out:
        parts += ["", "Not compared: " + "; ".join(map(str, left_out)) + "."]
    return parts


def _lognorm_gap(report: Report, table: Table) -> list[str]:
    """Below the logit-normalised AURC table: both AURCs side by side and whether the gap between each smoothed
    value and the unsmoothed baseline closes with the normalisation (Xia et al. 2025): ``|gap_lognorm| <
    |gap_msp|``, gap = mean AURC(value) - mean AURC(baseline), in points; asked only where smoothing made the
    max-softmax AURC worse (``gap_msp > 0``), the degradation the normalisation is meant to undo."""
    if table.metric.key != "test/aurc_lognorm" or not table.values:
        return []
    (msp,) = [t for t in report.tables if t.metric.key == "test/aurc"] or [None]
    if msp is None or not msp.values:
        return []
    symbol, baseline = param_label(report.parameter), report.baseline
    header = ["data set", symbol, "AURC max-softmax", "AURC logit-normalised", "gap max-softmax", "gap normalised",
              "gap closes"]  # fmt: skip
    rows = []
    for row in sorted(table.values):
        base_msp, base_norm = msp.estimate(row, baseline).mean, table.estimate(row, baseline).mean
        for column in table.columns:
            if column == baseline or column not in table.values[row] or column not in msp.values.get(row, {}):
                continue
            value_msp, value_norm = msp.estimate(row, column).mean, table.estimate(row, column).mean
            gap_msp, gap_norm = value_msp - base_msp, value_norm - base_norm
            if not (math.isfinite(gap_msp) and math.isfinite(gap_norm)):
                verdict = "– (no baseline runs)"
            elif gap_msp <= 0:
                verdict = "– (no gap: not worse than the baseline)"
            else:
                verdict = "yes" if abs(gap_norm) < abs(gap_msp) else "no"
            gaps = [f"{100 * gap:+.2f}" if math.isfinite(gap) else "–" for gap in (gap_msp, gap_norm)]
            rows.append([row, format_value(column), fmt(100 * value_msp), fmt(100 * value_norm), *gaps, verdict])
    if not rows:
        return []
    return [
        "",
        f"### AURC, max-softmax and logit-normalised (Xia et al. 2025), gap to {symbol} = {format_value(baseline)}",
        "",
        markdown_table(header, rows),
        "",
        "gap = mean AURC minus the baseline's (points); where smoothing makes the max-softmax AURC worse (a positive "
        "gap), the gap closes when the normalised one is the smaller in size.",
    ]


def _distillation(table: Table) -> list[str]:
    parts = [
        "",
        f"## Distillation · {table.metric.title} by the teacher's smoothing (`{STUDENT_METRIC.key}`)",
        "",
        "Rows: the student (data set and model); columns: the teacher's strategy and parameters as the student's "
        f"metrics.json records them (`{TEACHER_KEY}`, `{TEACHER_KEY}.<param>`). Students of one teacher share it, "
        "so each teacher's students are averaged first; cells are over the teachers of each setting (n: teachers, "
        "trained with other seeds). With one teacher per setting there is no interval: the students' seeds alone "
        "would not say how much another teacher of that setting would differ.",
        "",
        markdown_table(["student", *(format_value(c) for c in table.columns)], table_rows(table)),
    ]
    return parts + [line for note in table.notes for line in ("", note)]


def _duplicates(report: Report) -> list[str]:
    symbol = param_label(report.parameter)
    metrics = [t.metric for t in report.tables if t.shown]
    parts = [
        "",
        "## Duplicate runs (not counted)",
        "",
        f"Completed jobs with the same data set, {symbol} and seed as a more recent one (by the time of their "
        "`metrics.json`): only the most recent counts, so no seed counts twice in a mean or a paired test.",
        "",
    ]
    header = ["data set", symbol, "seed", "not counted", *(f"{m.key} (%)" for m in metrics), "counted"]
    rows = [
        [
            d.row,
            format_value(d.column),
            str(d.seed),
            f"`{d.job.directory}`",
            *(fmt(v * m.scale) if (v := as_float(d.job.metrics.get(m.key))) is not None else "–" for m in metrics),
            f"`{d.kept.directory}`",
        ]
        for d in report.duplicates
    ]
    return [*parts, markdown_table(header, rows)]


def render_markdown(report: Report, plots: Sequence[Path] | None = None) -> str:
    """report.md of ``report``, linking ``plots`` (default: the report's plots; none for the W&B page, which
    shows them as panels)."""
    parts = _header(report)
    for table in (t for t in report.tables if t.shown):
        parts += _metric_tables(report, table)
        parts += _lognorm_gap(report, table)
    if report.distillation is not None:
        parts += _distillation(report.distillation)
    parts += per_class_markdown(report.per_class, report.parameter)
    if report.duplicates:
        parts += _duplicates(report)
    shown = list(report.plots if plots is None else plots)
    if shown:
        parts += ["", "## Plots", ""]
        parts += [f"![{p.stem}]({os.path.relpath(p, report.out_dir)})" for p in shown]
    failed = [j for j in report.jobs if j.status != "completed"]
    parts += ["", "## Failed, unfinished and missing jobs", ""]
    if not failed and not report.missing and not report.problems:
        parts.append("None: every job completed.")
    for job in failed:
        parts.append(
            f"- `{job.directory}` ({job.status}): {' '.join(job.overrides)}" + (f" — {job.error}" if job.error else "")
        )
    for item in report.missing:
        parts.append(f"- `{item.sweep_dir}/{item.number}` (missing): {' '.join(item.overrides)}{item.holds_note}")
    parts += [f"- {problem}" for problem in report.problems]
    return "\n".join(parts) + "\n"
