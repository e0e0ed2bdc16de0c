"""Reliability diagrams with a confidence histogram (Guo et al. 2017, Fig. 1), drawn with matplotlib.

Bins are ``CalibrationBin`` objects or plain mappings with ``lower``, ``upper``, ``count``, ``accuracy`` and
``confidence`` (``labelsmooth.calibration.binning.binned_statistics``, or the rows of a run's reliability CSV read
by ``labelsmooth.calibration.bins_csv.read_bins_csv``), so the report can draw them from run outputs without
importing torch or the training code. ``reliability_figure`` returns a ``matplotlib.figure.Figure`` (no pyplot
state, no GUI backend needed; the callers save it with ``labelsmooth.runs.files.save_figure_atomic``),
``draw_reliability`` draws into the axes it is given and ``panel_grid`` returns a ``GridSpec``.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from labelsmooth.calibration.bins import BinRow, CalibrationBin, summary_of_bins

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not at every job's start-up (0.3-0.5 s)
    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec

__all__ = ["draw_reliability", "panel_grid", "reliability_figure", "summary_of_bins"]


def _rows(bins: Sequence[BinRow]) -> list[Mapping[str, float]]:
    return [b.as_dict() if isinstance(b, CalibrationBin) else b for b in bins]


def draw_reliability(ax_bars, ax_hist, bins: Sequence[BinRow], title: str = "") -> None:
    """Accuracy per confidence bin against the diagonal (gaps in red) above the histogram of confidences."""
    bins = _rows(bins)
    lefts = [float(b["lower"]) for b in bins]
    widths = [max(float(b["upper"]) - float(b["lower"]), 1e-3) for b in bins]
    accuracy = [float(b["accuracy"]) for b in bins]
    confidence = [float(b["confidence"]) for b in bins]
    stats = summary_of_bins(bins)

    ax_bars.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax_bars.bar(lefts, accuracy, width=widths, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
    ax_bars.bar(
        lefts,
        [c - a for a, c in zip(accuracy, confidence, strict=True)],
        bottom=accuracy,
        width=widths,
        align="edge",
        color="tab:red",
        alpha=0.35,
        edgecolor="tab:red",
        hatch="//",
        label="gap to confidence",
    )
    ax_bars.set_xlim(0, 1)
    ax_bars.set_ylim(0, 1)
    ax_bars.set_ylabel("accuracy")
    ax_bars.set_title(f"{title}\nECE={stats['ece']:.4f}".strip(), fontsize=9)
    ax_bars.legend(loc="upper left", fontsize=7)

    total = stats["count"] or 1.0
    ax_hist.bar(lefts, [float(b["count"]) / total for b in bins], width=widths, align="edge", color="tab:grey")
    ax_hist.axvline(stats["accuracy"], color="tab:blue", linestyle="-", label=f"accuracy {stats['accuracy']:.3f}")
    ax_hist.axvline(stats["confidence"], color="tab:red", linestyle="--", label=f"confidence {stats['confidence']:.3f}")
    ax_hist.set_xlim(0, 1)
    ax_hist.set_xlabel("confidence")
    ax_hist.set_ylabel("fraction")
    ax_hist.legend(loc="upper left", fontsize=7)


# Margins in inches around and between the panels: fixed, as the text around the axes is (a layout engine, which
# measures every label before drawing, took 40 % of a diagram's time).
LEFT, RIGHT, BOTTOM, TOP, TITLE = 0.65, 0.25, 0.5, 0.5, 0.3
COLUMN_GAP, ROW_GAP = 0.75, 1.0


def panel_grid(
    figure: Figure,
    rows: int,
    columns: int,
    title: bool | int = False,
    margins: tuple[float, float, float, float] = (LEFT, RIGHT, BOTTOM, TOP),
    gaps: tuple[float, float] = (COLUMN_GAP, ROW_GAP),
) -> GridSpec:
    """A ``rows`` x ``columns`` grid on ``figure`` with margins (left, right, bottom, top) and gaps (between
    columns, between rows) in inches, and ``TITLE`` more at the top for each line of a suptitle (``title``: True
    for one line, or the number of lines)."""
    width, height = figure.get_size_inches()
    left, right, bottom, top = margins
    top = height - top - TITLE * int(title)
    cell_width = (width - left - right - gaps[0] * (columns - 1)) / columns
    cell_height = (top - bottom - gaps[1] * (rows - 1)) / rows
    return figure.add_gridspec(
        rows,
        columns,
        left=left / width,
        right=1 - right / width,
        bottom=bottom / height,
        top=top / height,
        wspace=gaps[0] / cell_width,
        hspace=gaps[1] / cell_height,
    )


def reliability_figure(
    panels: Mapping[str, Sequence[BinRow]], panel_width: float = 3.4, panels_per_row: int = 5, title: str = ""
) -> Figure:
    """One panel per ``title -> bins`` entry, side by side (``panels_per_row`` to a row): the reliability diagram
    over the confidence histogram."""
    n = max(len(panels), 1)
    columns = min(n, panels_per_row)
    rows = math.ceil(n / columns)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(panel_width * columns, 5.2 * rows))
    # the suptitle (12 pt) wrapped to the figure's width: about 11 characters per inch
    title = textwrap.fill(title, width=max(20, int(11 * panel_width * columns)))
    grid = panel_grid(figure, rows, columns, title.count("\n") + 1 if title else 0)
    for index, (panel_title, bins) in enumerate(panels.items()):
        cell = grid[index // columns, index % columns].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
        ax_bars = figure.add_subplot(cell[0])
        ax_hist = figure.add_subplot(cell[1], sharex=ax_bars)
        ax_bars.tick_params(labelbottom=False)
        draw_reliability(ax_bars, ax_hist, bins, panel_title)
    if title:
        figure.suptitle(title, y=1 - 0.15 / figure.get_size_inches()[1], va="top")
    return figure
