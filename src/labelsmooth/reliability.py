"""Reliability diagrams with a confidence histogram (Guo et al. 2017, Fig. 1), drawn with matplotlib.

Bins are plain mappings with ``lower``, ``upper``, ``count``, ``accuracy`` and ``confidence`` (the rows of
``labelsmooth.calibration.binned_statistics`` or of a run's ``calibration/reliability_*.csv``), so the
report can draw them from run outputs without importing torch or the training code. Figures are built with
``matplotlib.figure.Figure`` (no pyplot state, no GUI backend needed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not at every job's start-up (0.3-0.5 s)
    from matplotlib.figure import Figure

BinRow = Mapping[str, float]


def summary_of_bins(bins: Sequence[BinRow]) -> dict[str, float]:
    """Total count, accuracy, mean confidence and ECE (``Σ |B|/N |acc - conf|``) of a list of bins."""
    total = sum(float(b["count"]) for b in bins)
    if not total:
        return {"count": 0.0, "accuracy": float("nan"), "confidence": float("nan"), "ece": float("nan")}
    return {
        "count": total,
        "accuracy": sum(float(b["count"]) * float(b["accuracy"]) for b in bins) / total,
        "confidence": sum(float(b["count"]) * float(b["confidence"]) for b in bins) / total,
        "ece": sum(float(b["count"]) * abs(float(b["accuracy"]) - float(b["confidence"])) for b in bins) / total,
    }


def draw_reliability(ax_bars, ax_hist, bins: Sequence[BinRow], title: str = "") -> None:
    """Accuracy per confidence bin against the diagonal (gaps in red) above the histogram of confidences."""
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


def save_reliability_figure(panels: Mapping[str, Sequence[BinRow]], path: str | Path) -> Path:
    """Draw ``reliability_figure(panels)`` and save it as a PNG at ``path`` (folders created)."""
    from labelsmooth.run_outputs import save_figure_atomic

    return save_figure_atomic(reliability_figure(panels), path, dpi=110)
