"""Learning curves in the report: per table row (a data set, or a data set and model), the validation accuracy, the
validation NLL and the training loss against the epoch, one curve per value of the swept parameter, from the jobs'
``history.csv`` (``labelsmooth.runs.history``).

A curve is the mean over the seeds that have the epoch, with the band from their lowest to their highest value; a
seed whose value is not finite there (``nan`` in its ``history.csv``) does not have it. A ``history.csv`` that cannot
be read is left out with one line naming it among the report's problems.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labelsmooth.errors import describe
from labelsmooth.report.base import ParameterValue, as_parameter_value, column_order, format_value, param_label, slug
from labelsmooth.report.jobs import Job, row_labels
from labelsmooth.runs.files import save_figure_atomic
from labelsmooth.runs.history import read_history_csv

# (history.csv column, axis label, scale). The training loss is each strategy's own objective (smoothed targets
# raise its floor), so it compares epochs of one strategy; the validation NLL compares strategies.
CURVES = (
    ("val/acc", "validation accuracy (%)", 100.0),
    ("val/nll", "validation NLL", 1.0),
    ("train/loss", "training loss (each strategy's own objective)", 1.0),
)
MARKED_EPOCHS = 25  # up to this many epochs a curve marks each epoch


@dataclass(frozen=True)
class SeedBand:
    """One metric of one parameter value by epoch: the mean over the seeds with that epoch, their range."""

    epochs: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    runs: int


def seed_band(histories: Sequence[Sequence[dict[str, float]]], metric: str) -> SeedBand | None:
    """``metric`` of the runs' ``histories`` by epoch (None when no run has it)."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    runs = 0
    for rows in histories:
        values = {int(row["epoch"]): row[metric] for row in rows if math.isfinite(row.get(metric, math.nan))}
        runs += bool(values)
        for epoch, value in values.items():
            by_epoch[epoch].append(value)
    if not by_epoch:
        return None
    epochs = sorted(by_epoch)
    return SeedBand(
        epochs,
        [sum(by_epoch[e]) / len(by_epoch[e]) for e in epochs],
        [min(by_epoch[e]) for e in epochs],
        [max(by_epoch[e]) for e in epochs],
        runs,
    )


def histories(
    jobs: Sequence[Job], parameter: str, problems: list[str] | None = None
) -> dict[str, dict[ParameterValue, list[list[dict[str, float]]]]]:
    """Per table row and value of ``parameter``: the ``history.csv`` rows of its completed jobs that have one."""
    row_of = row_labels(jobs)
    found: dict[str, dict[ParameterValue, list[list[dict[str, float]]]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        value = as_parameter_value(job.value(parameter))
        if job.status != "completed" or value is None or not job.run.history_csv.is_file():
            continue
        try:
            rows = read_history_csv(job.run.history_csv)
        except (OSError, ValueError) as error:
            if problems is not None:
                problems.append(f"{job.run.history_csv}: {describe(error)}; left out of the learning curves")
            continue
        if rows:
            found[row_of(job)][value].append(rows)
    return found


def plot_learning_curves(
    out_dir: Path, jobs: Sequence[Job], parameter: str, problems: list[str] | None = None
) -> list[Path]:
    """``curves_<row>.png`` per table row: ``CURVES`` against the epoch, one curve per value of ``parameter`` (mean
    over seeds, their range shaded)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    symbol, paths = param_label(parameter), []
    for row, by_value in sorted(histories(jobs, parameter, problems).items()):
        figure = Figure(figsize=(4.2 * len(CURVES), 3.8), layout="constrained")
        axes = figure.subplots(1, len(CURVES))
        for ax, (metric, label, scale) in zip(axes, CURVES, strict=True):
            for value in sorted(by_value, key=column_order):
                band = seed_band(by_value[value], metric)
                if band is None:
                    continue
                runs = f"{band.runs} run{'s' if band.runs != 1 else ''}"
                marker = "o" if len(band.epochs) <= MARKED_EPOCHS else None
                legend = f"{symbol}={format_value(value)} ({runs})"
                mean = [scale * v for v in band.mean]
                line = ax.plot(band.epochs, mean, marker=marker, markersize=3, label=legend)[0]
                if band.runs > 1:
                    low, high = [scale * v for v in band.low], [scale * v for v in band.high]
                    if len(band.epochs) > 1:
                        ax.fill_between(band.epochs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
                    else:  # one epoch: the seeds' range as an error bar (a band of no width would not show)
                        below, above = mean[0] - low[0], high[0] - mean[0]
                        ax.errorbar(band.epochs, mean, yerr=[[below], [above]], color=line.get_color(), capsize=3)
            ax.set_xlabel("epoch")
            first, last = ax.dataLim.intervalx
            if not ax.has_data():  # no job of the row records this metric
                ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center", va="center", color="grey")
            elif last - first < 1:  # one epoch: its tick alone (a locator would divide the autoscaled ±0.05)
                ax.set_xlim(first - 0.5, last + 0.5)
                ax.set_xticks([round(first)])
            else:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        figure.suptitle(f"{row}: learning curves, mean over seeds (band: lowest to highest seed)", fontsize=10)
        paths.append(save_figure_atomic(figure, out_dir / f"curves_{slug(row)}.png", dpi=110))
    return paths
