"""The confusion-matrix figure, drawn with matplotlib from a (K, K) count matrix (rows: true class, columns:
predicted class), each row normalised to sum to 1 (a class absent from the split: an empty row). Readable up to
about 100 classes: the cell values are written only for at most ``ANNOTATE_MAX_CLASSES`` classes, the class names
(or indices) only where they fit. Returns a ``matplotlib.figure.Figure`` (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ANNOTATE_MAX_CLASSES = 20
LABEL_MAX_CLASSES = 40
COLOUR_BAR = (0.046, 0.04)  # its width and its gap to the matrix, as fractions of the matrix's cell
LABEL_CHARACTER_INCHES = 0.075  # the width of a character of an 8-point tick label, with room to spare


def row_normalised(counts: np.ndarray) -> np.ndarray:
    """``counts`` with each row divided by its sum (rows without samples: zeros)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix is K x K, got shape {counts.shape}")
    support = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)


def confusion_figure(counts: np.ndarray, class_names: Sequence[str] | None = None, title: str = "test") -> Figure:
    """The row-normalised confusion matrix of ``counts`` as a heat map, labelled with ``class_names`` (K names)
    or the class indices."""
    from matplotlib.figure import Figure

    from labelsmooth.calibration.reliability import panel_grid

    rates = row_normalised(counts)
    k = rates.shape[0]
    names = [str(n) for n in class_names] if class_names is not None and len(class_names) == k else None
    labels = (names if names is not None else [str(i) for i in range(k)]) if k <= LABEL_MAX_CLASSES else []
    label_inches = LABEL_CHARACTER_INCHES * max(map(len, labels), default=1)
    # Margins in inches from the longest label, not a layout engine (tight_layout measured every label and the
    # figure was then drawn twice to save it: 2/3 of its time); the colour bar takes COLOUR_BAR of the cell's width.
    left = 0.75 + label_inches
    bottom = 0.55 + (label_inches if names is not None else LABEL_CHARACTER_INCHES)
    top, right = 0.45, 0.9
    side = min(3.5 + 0.3 * k, 15.0)
    figure = Figure(figsize=(left + side / (1 - sum(COLOUR_BAR)) + right, bottom + side + top))
    ax = figure.add_subplot(panel_grid(figure, 1, 1, margins=(left, right, bottom, top))[0, 0])
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=ax, fraction=COLOUR_BAR[0], pad=COLOUR_BAR[1], label="fraction of the true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix, {title} (rows normalised)")
    if labels:
        ticks = np.arange(k)
        ax.set_xticks(ticks, labels, rotation=90 if names is not None else 0, fontsize=8)
        ax.set_yticks(ticks, labels, fontsize=8)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                value = rates[i, j]
                if value > 0:
                    colour = "white" if value > 0.5 else "black"
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    return figure


def per_class_accuracy(counts: np.ndarray) -> list[float | None]:
    """The accuracy of each true class of a (K, K) confusion matrix (rows: true class): its diagonal count over its
    row sum, None for a class with no sample (so that an absent class is not counted as 0).

    >>> per_class_accuracy(np.array([[3, 1], [0, 0]]))
    [0.75, None]
    """
    pairs = zip(np.diagonal(counts).tolist(), np.asarray(counts).sum(axis=1).tolist(), strict=True)
    return [float(correct) / float(total) if total > 0 else None for correct, total in pairs]


def worst_class_accuracy(per_class: Sequence[float | None]) -> float | None:
    """The lowest per-class accuracy over the classes present (None when none is)."""
    present = [accuracy for accuracy in per_class if accuracy is not None]
    return min(present) if present else None
