"""Distillation (Müller, Kornblith & Hinton 2019, "When does label smoothing help?", §4): student test accuracy
by the teacher's smoothing.

A student job records its teacher's strategy in metrics.json as ``teacher.smoothing`` (its name) and the
teacher's parameters as ``teacher.smoothing.<param>``. The table has one row per student (data set and model)
and one column per teacher setting (strategy and parameter values); a cell is the mean with its 95% interval
over the student runs of that setting (their seeds, and teachers of the same setting trained with other seeds).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from labelsmooth.report.base import (
    ParameterValue,
    ReportMetric,
    as_float,
    as_parameter_value,
    format_value,
    param_label,
)
from labelsmooth.report.jobs import Job, still_improving, swept_parameters
from labelsmooth.report.tables import Table
from labelsmooth.runs.record import TEACHER_PREFIX

TEACHER_KEY = f"{TEACHER_PREFIX}smoothing"
STUDENT_METRIC = ReportMetric("test/acc", "Student test accuracy (%)", higher_is_better=True, accuracy=True)
TEACHER_COLUMN = "teacher"
TEACHER_CHECKPOINT_KEY = "teacher_ckpt"  # its teachers of one setting (their seeds) are the cell's replicates


def teacher_setting(job: Job) -> str | None:
    """The teacher's strategy and parameters as a column label (``gamma (γ=0.8)``, ``none``); None when the job
    records no teacher."""
    name = job.metrics.get(TEACHER_KEY)
    if name is None or isinstance(name, dict | list):
        return None
    prefix = TEACHER_KEY + "."
    parameters = []
    for key in sorted(k for k in job.metrics if k.startswith(prefix)):
        value = as_parameter_value(job.metrics[key])
        if value is not None:
            parameters.append(f"{param_label(key)}={format_value(value)}")
    return f"{name} ({', '.join(parameters)})" if parameters else str(name)


def build_distillation_table(jobs: Sequence[Job]) -> Table | None:
    """Student ``test/acc`` per student (``data set (model)``) and teacher setting over the completed student
    jobs (one replicate per job directory; pass each run once: ``distinct_jobs``); None when no completed job
    records a teacher. Any other key the students vary (``distill.temperature``) joins the column label, so that a
    cell never pools students trained differently."""
    completed = [j for j in jobs if j.status == "completed"]
    student_keys = [k for k in swept_parameters(completed) if k != TEACHER_CHECKPOINT_KEY]
    values: dict[str, dict[ParameterValue, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    improving: dict[str, dict[ParameterValue, set[Any]]] = defaultdict(lambda: defaultdict(set))
    for job in completed:
        column, value = teacher_setting(job), as_float(job.metrics.get(STUDENT_METRIC.key))
        if column is None or value is None:
            continue
        if student_keys:
            column += " · " + ", ".join(f"{k}={format_value(as_parameter_value(job.value(k)))}" for k in student_keys)
        row, replicate = f"{job.dataset} ({job.model})", str(job.directory)
        values[row][column][replicate] = value
        if still_improving(job):
            improving[row][column].add(replicate)
    if not values:
        return None
    return Table(
        STUDENT_METRIC,
        {r: dict(v) for r, v in sorted(values.items())},
        {r: {c: s for c, s in v.items() if s} for r, v in improving.items()},
    )
