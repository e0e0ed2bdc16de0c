"""The penultimate-layer picture across strategies (Müller, Kornblith & Hinton 2019, "When does label smoothing
help?", Fig. 1): the runs' own ``penultimate_projection.png`` (training writes one per run), the first seed of
each value of the swept parameter side by side, one figure per table row."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from labelsmooth.report.base import (
    ParameterValue,
    as_float,
    as_parameter_value,
    column_order,
    format_value,
    param_label,
    slug,
)
from labelsmooth.report.jobs import Job, row_labels
from labelsmooth.runs.files import save_figure_atomic

PANEL_WIDTH = 5.5  # inches per run's picture


def _seed_order(job: Job) -> tuple[float, str, str]:
    number = as_float(job.seed)
    return (number if number is not None else math.inf, str(job.seed), str(job.directory))


def penultimate_images(jobs: Sequence[Job], parameter: str) -> dict[str, dict[ParameterValue, Job]]:
    """Per table row and value of ``parameter``: the completed job of the first (lowest) seed among those that
    have a ``penultimate_projection.png``."""
    row_of = row_labels(jobs)
    found: dict[str, dict[ParameterValue, list[Job]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        value = as_parameter_value(job.value(parameter))
        if job.status == "completed" and value is not None and job.run.penultimate_projection.is_file():
            found[row_of(job)][value].append(job)
    return {
        row: {v: min(by_value[v], key=_seed_order) for v in sorted(by_value, key=column_order)}
        for row, by_value in sorted(found.items())
    }


def plot_penultimate_grid(out_dir: Path, jobs: Sequence[Job], parameter: str) -> list[Path]:
    """``penultimate_<row>.png`` per table row: the first seed's projection of each parameter value in a row of
    panels. An image that cannot be read is left out of its figure."""
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    symbol, paths = param_label(parameter), []
    for row, by_value in penultimate_images(jobs, parameter).items():
        images = {}
        for value, job in by_value.items():
            try:
                images[f"{symbol}={format_value(value)} (seed {job.seed})"] = imread(job.run.penultimate_projection)
            except (OSError, ValueError, SyntaxError):  # Pillow's errors for a damaged PNG
                continue
        if not images:
            continue
        aspect = max(image.shape[0] / image.shape[1] for image in images.values())  # height / width
        figure = Figure(figsize=(PANEL_WIDTH * len(images), PANEL_WIDTH * aspect + 0.7), layout="constrained")
        for ax, (title, image) in zip(figure.subplots(1, len(images), squeeze=False)[0], images.items(), strict=True):
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
        figure.suptitle(f"{row}: penultimate-layer projections, first seed of each {symbol}", fontsize=10)
        paths.append(save_figure_atomic(figure, out_dir / f"penultimate_{slug(row)}.png", dpi=110))
    return paths
