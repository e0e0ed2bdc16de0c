"""Selective classification in the report: risk–coverage curves per parameter value, from each job's saved test
predictions (``predictions/test.npz``: ``logits`` float32 N × K, ``targets`` int64 N).

The confidence is the max softmax; sorted most confident first, the selective risk at coverage ``i/N`` is the
error rate among the ``i`` most confident samples (Geifman & El-Yaniv 2017), computed by
``labelsmooth.calibration.selective.risk_coverage_curve``. The curve of a parameter value is the mean over its
seeds of the seeds' curves, pointwise in coverage (the area under the mean curve is then the mean AURC when the
seeds have the same test set).

A predictions file that cannot be used (cut short, damaged, not N × K logits with N targets) is left out of the
curves with one line naming it among the report's problems; the other jobs' curves are drawn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labelsmooth.errors import describe
from labelsmooth.report.base import ParameterValue, as_parameter_value, column_order, format_value, param_label, slug
from labelsmooth.report.jobs import Job, row_labels
from labelsmooth.runs.files import save_figure_atomic

if TYPE_CHECKING:
    import numpy as np


LEFT_OUT = "left out of the risk–coverage curves"


class PredictionsError(ValueError):
    """A saved predictions file that cannot be used; the message names the file and why."""


def confidence_and_correct(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Max-softmax confidence (float64) and correctness of the argmax of the saved ``logits`` against
    ``targets``; ``PredictionsError`` when the file cannot be read (missing, cut short, damaged) or does not hold
    N × K logits with N targets."""
    import zipfile

    import numpy as np

    try:
        with np.load(path) as saved:
            logits, targets = np.asarray(saved["logits"], dtype=np.float64), np.asarray(saved["targets"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise PredictionsError(f"{path} cannot be read ({describe(error)}): cut short or damaged") from error
    if logits.ndim != 2 or logits.shape[1] == 0 or targets.shape != (logits.shape[0],):
        raise PredictionsError(
            f"{path} holds logits of shape {logits.shape} and targets of shape {targets.shape}, not N × K logits "
            "with N targets"
        )
    shifted = logits - logits.max(axis=1, keepdims=True)  # max_k softmax(z)_k = 1 / Σ_k exp(z_k - max z)
    return 1.0 / np.exp(shifted).sum(axis=1), logits.argmax(axis=1) == targets


@dataclass(frozen=True)
class MeanCurve:
    """The seeds' risk–coverage curves averaged pointwise: ``risk[j]`` at ``coverage[j]``, over ``runs`` jobs."""

    coverage: np.ndarray
    risk: np.ndarray
    runs: int


def mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> MeanCurve:
    """The pointwise mean of ``(coverage, risk)`` curves; on the coverage grid ``i/M`` of the largest test set
    ``M``, the smaller ones interpolated linearly (identical grids, the usual case, are averaged as they are)."""
    import numpy as np

    grid = max((coverage for coverage, _ in curves), key=len)
    risks = [risk if len(coverage) == len(grid) else np.interp(grid, coverage, risk) for coverage, risk in curves]
    return MeanCurve(grid, np.mean(risks, axis=0), len(curves))


def risk_coverage_curves(
    jobs: Sequence[Job], parameter: str, problems: list[str] | None = None
) -> dict[str, dict[ParameterValue, MeanCurve]]:
    """Per table row (data set, or data set and model) and value of ``parameter``: the mean test risk–coverage
    curve over the completed jobs that saved their test predictions. A predictions file that cannot be used is
    left out, with one line naming it appended to ``problems``."""
    from labelsmooth.calibration.selective import risk_coverage_curve

    row_of = row_labels(jobs)
    found: dict[str, dict[ParameterValue, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
    for job in jobs:
        value = as_parameter_value(job.value(parameter))
        if job.status != "completed" or value is None or not job.run.predictions("test").is_file():
            continue
        try:
            pairs = confidence_and_correct(job.run.predictions("test"))
        except PredictionsError as error:
            if problems is not None:
                problems.append(f"{error}; {LEFT_OUT}")
            continue
        if pairs[0].size:
            found[row_of(job)][value].append(risk_coverage_curve(*pairs))
    return {
        row: {v: mean_curve(by_value[v]) for v in sorted(by_value, key=column_order)}
        for row, by_value in sorted(found.items())
    }


def plot_risk_coverage(
    out_dir: Path, jobs: Sequence[Job], parameter: str, problems: list[str] | None = None
) -> list[Path]:
    """``risk_coverage_<row>.png`` per table row: one curve per value of ``parameter``, the mean over seeds;
    predictions files that cannot be used are named in ``problems`` (:func:`risk_coverage_curves`)."""
    from matplotlib.figure import Figure

    symbol, paths = param_label(parameter), []
    for row, by_value in risk_coverage_curves(jobs, parameter, problems).items():
        figure = Figure(figsize=(5.2, 3.8), layout="constrained")
        ax = figure.subplots()
        for value, curve in by_value.items():
            runs = f"{curve.runs} run{'s' if curve.runs != 1 else ''}"
            ax.plot(curve.coverage, 100 * curve.risk, label=f"{symbol}={format_value(value)} ({runs})")
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(bottom=0.0)
        ax.set_xlabel("coverage (fraction answered, most confident first)")
        ax.set_ylabel("selective risk: error rate (%)")
        ax.set_title(f"{row}: test risk–coverage, max-softmax confidence,\nmean over seeds", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(save_figure_atomic(figure, out_dir / f"risk_coverage_{slug(row)}.png", dpi=110))
    return paths
