"""Reliability diagrams with a confidence histogram (Guo et al. 2017, Fig. 1), drawn with matplotlib.

Bins are ``CalibrationBin`` objects or plain mappings with ``lower``, ``upper``, ``count``, ``accuracy`` and
``confidence`` (``labelsmooth.calibration.binning.binned_statistics``, or the rows of a run's reliability CSV read
by ``labelsmooth.calibration.bins_csv.read_bins_csv``), so the report can draw them from run outputs without
importing torch or the training code. The functions return ``matplotlib.figure.Figure`` objects (no pyplot state,
no GUI backend needed); the callers save them (``labelsmooth.runs.files.save_figure_atomic``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from labelsmooth.calibration.bins import BinRow, CalibrationBin, summary_of_bins

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not at every job's start-up (0.3-0.5 s)
    from matplotlib.figure import Figure

__all__ = ["draw_reliability", "reliability_figure", "summary_of_bins"]


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


def reliability_figure(
    panels: Mapping[str, Sequence[BinRow]], panel_width: float = 3.4, panels_per_row: int = 5, title: str = ""
) -> Figure:
    """One panel per ``title -> bins`` entry, side by side (``panels_per_row`` to a row): the reliability diagram
    over the confidence histogram."""
    n = max(len(panels), 1)
    columns = min(n, panels_per_row)
    rows = math.ceil(n / columns)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(panel_width * columns, 5.2 * rows), layout="constrained")
    subfigures = figure.subfigures(rows, columns, squeeze=False)
    for index, (panel_title, bins) in enumerate(panels.items()):
        axes = subfigures[index // columns][index % columns].subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        draw_reliability(axes[0], axes[1], bins, panel_title)
    if title:
        figure.suptitle(title)
    return figure
