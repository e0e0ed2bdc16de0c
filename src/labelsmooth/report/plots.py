"""Plots of the tables' numbers (a metric against the swept parameter, per data set) and the test reliability
diagrams of each parameter value from the runs' bins CSVs (``calibration/reliability_test.csv``)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from labelsmooth.calibration.bins_csv import bins_by_split, read_bins_csv
from labelsmooth.calibration.reliability import reliability_figure
from labelsmooth.report.base import ParameterValue, as_parameter_value, column_order, format_value, param_label, slug
from labelsmooth.report.jobs import Job, row_labels
from labelsmooth.report.tables import Table
from labelsmooth.runs.files import save_figure_atomic


def plot_metric_vs_parameter(
    path: Path, tables: Sequence[Table], parameter: str, ylabel: str, labels: Sequence[str] | None = None
) -> Path | None:
    """One panel per data set: mean ± 95% CI of each table's metric against the parameter, with each seed's
    value as a faint dot. With few seeds the Student-t interval is wide (n = 2: ±12.7 standard errors) and can
    reach past the metric's range; the y axis stays within [0, 1]·scale (every report metric is a fraction)
    and the bars are clipped there, while the tables keep the exact numbers. A value of one seed has no interval
    and no bar; seeds that agree exactly have a bar of zero width."""
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
            errors = [e.half_width * scale for e in estimates]  # one seed: NaN, no bar (a zero-width one: no spread)
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
        ax.set_xlabel(param_label(parameter))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(tables) > 1:
            ax.legend(fontsize=8)
    return save_figure_atomic(figure, path, dpi=110)


def read_bins(job: Job) -> dict[str, list[dict[str, float]]]:
    """The per-bin test numbers the calibration callback saved, by split (``test``, ``test_ts``), read by
    ``labelsmooth.calibration.bins_csv``; empty when the file is missing or damaged."""
    try:
        return bins_by_split(read_bins_csv(job.run.reliability_csv("test")))
    except (OSError, ValueError):
        return {}


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
    row_of = row_labels(jobs)
    for job in jobs:
        value = as_parameter_value(job.value(parameter))
        if job.status == "completed" and value is not None and (bins := read_bins(job)):
            grouped[row_of(job)][value].append(bins)
    paths = []
    symbol = param_label(parameter)
    for row, by_value in sorted(grouped.items()):
        for split, suffix, what in (("test", "", "test"), ("test_ts", "_ts", "test after temperature scaling")):
            panels = {
                f"{symbol}={format_value(v)} ({len(runs)} runs)": pool_bins(r[split] for r in runs if split in r)
                for v, runs in sorted(by_value.items(), key=lambda item: column_order(item[0]))
            }
            panels = {title: bins for title, bins in panels.items() if bins}
            if panels:
                path = out_dir / f"reliability_{slug(row)}{suffix}.png"
                figure = reliability_figure(
                    panels, panel_width=3.0, title=f"{row}: {what}, seeds pooled (ECE of the pooled bins)"
                )
                paths.append(save_figure_atomic(figure, path, dpi=100))
    return paths
