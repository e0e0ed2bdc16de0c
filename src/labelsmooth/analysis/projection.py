"""The penultimate-layer picture of Müller, Kornblith and Hinton (2019), "When does label smoothing help?", Fig. 1.

The logit of class ``k`` is ``z_k = w_k·x + b_k``: the ``k``-th row ``w_k`` of the last layer's weight, the class's
*template*, scores the penultimate activation ``x``; Müller et al. fold the bias in, the template ``[w_k; b_k]``
scoring ``[x; 1]``, as ``labelsmooth.callbacks.penultimate`` passes them here. Label smoothing pulls the
activations of a class towards its template and to equal distances from the other templates, so they form tight,
equally spaced clusters; without it the clusters are broader. The picture (their §2): pick three classes, find an
orthonormal basis of the plane through their three templates, and project the penultimate activations of examples
of those classes onto it.

Coordinates are taken in that basis relative to the centroid of the three templates, with ``e1`` along
``t2 − t1`` and ``e2`` the part of ``t3 − t1`` orthogonal to ``e1`` (Gram–Schmidt, written out rather than numpy's
QR, whose signs are arbitrary: so every run draws its triangle the same way round, ``t1 → t2`` along ``+x`` and
``t3`` above). The projection is orthogonal: distances within the plane are kept, the components orthogonal to it
dropped. Everything here is a plain function of arrays; the figure needs matplotlib, imported when drawing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green")
COLLINEAR_TOLERANCE = 1e-6  # relative to the longest template difference; above float32 weights' rounding


def template_plane(templates: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The plane through three templates (rows of a (3, D) array): its origin, the templates' centroid (D,), and
    an orthonormal basis (2, D) as above; a ``ValueError`` when the templates are collinear (no single plane)."""
    points = np.asarray(templates, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] != 3 or points.shape[1] < 2:
        raise ValueError(f"templates must be 3 points of dimension >= 2 (shape (3, D)), got shape {points.shape}")
    along, across = points[1] - points[0], points[2] - points[0]
    scale = max(np.linalg.norm(along), np.linalg.norm(across), np.linalg.norm(points[2] - points[1]))
    if not np.isfinite(scale):
        raise ValueError("the templates are not finite")
    if np.linalg.norm(along) <= COLLINEAR_TOLERANCE * scale or scale == 0:
        raise ValueError("two of the three templates coincide: they span no plane")
    e1 = along / np.linalg.norm(along)
    orthogonal = across - (across @ e1) * e1
    if np.linalg.norm(orthogonal) <= COLLINEAR_TOLERANCE * scale:
        raise ValueError("the three templates are collinear: they span no plane")
    return points.mean(axis=0), np.stack([e1, orthogonal / np.linalg.norm(orthogonal)])


def project_onto_template_plane(features: ArrayLike, templates: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The plane coordinates (N, 2) of penultimate ``features`` (N, D) and those of the three ``templates`` (3, D),
    the triangle's vertices (3, 2): ``(x − centroid)·[e1, e2]ᵀ``."""
    origin, basis = template_plane(templates)
    points = np.asarray(features, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != origin.shape[0]:
        raise ValueError(f"features must have shape (N, {origin.shape[0]}) like the templates, got {points.shape}")
    vertices = (np.asarray(templates, dtype=np.float64) - origin) @ basis.T
    return (points - origin) @ basis.T, vertices


def projection_figure(
    panels: Mapping[str, tuple[ArrayLike, ArrayLike]],
    vertices: ArrayLike,
    class_names: Sequence[str],
    title: str = "",
) -> Figure:
    """One scatter per ``title -> (coordinates (N, 2), which (N,))`` panel, side by side on the same scale, each
    point coloured by its class (``which``: 0, 1, 2, positions in ``class_names``), with the templates' triangle
    (``vertices`` (3, 2)) drawn over it. Equal axis scales, so distances read as in the plane."""
    from matplotlib.figure import Figure

    from labelsmooth.calibration.reliability import panel_grid

    corners = np.asarray(vertices, dtype=np.float64)
    drawn = [(np.asarray(c, dtype=np.float64).reshape(-1, 2), np.asarray(w)) for c, w in panels.values()]
    everything = np.concatenate([corners, *(c for c, _ in drawn)])
    low, high = everything.min(axis=0), everything.max(axis=0)
    margin = 0.05 * float(np.max(high - low) or 1.0)
    figure = Figure(figsize=(4.6 * max(len(panels), 1), 4.8))
    grid = panel_grid(figure, 1, max(len(panels), 1), bool(title), margins=(0.6, 0.15, 0.5, 0.4), gaps=(0.6, 0.0))
    axes = [figure.add_subplot(grid[0, column]) for column in range(max(len(panels), 1))]
    for ax, panel_title, (coordinates, which) in zip(axes, panels, drawn, strict=False):
        for position, name in enumerate(class_names):
            chosen = coordinates[which == position]
            ax.scatter(chosen[:, 0], chosen[:, 1], s=5, alpha=0.5, color=CLASS_COLOURS[position], label=name)
        triangle = np.vstack([corners, corners[:1]])
        ax.plot(triangle[:, 0], triangle[:, 1], linestyle="--", linewidth=0.8, color="black")
        ax.scatter(corners[:, 0], corners[:, 1], marker="X", s=60, color="black", label="templates", zorder=3)
        for corner, name in zip(corners, class_names, strict=True):
            ax.annotate(name, corner, textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlim(low[0] - margin, high[0] + margin)
        ax.set_ylim(low[1] - margin, high[1] + margin)
        ax.set_aspect("equal")
        ax.set_title(f"{panel_title} ({len(coordinates)} images)", fontsize=9)
        ax.legend(loc="best", fontsize=7, markerscale=2)
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 0.1 / figure.get_size_inches()[1], va="top")
    return figure
