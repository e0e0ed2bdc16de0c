"""Distillation (Müller, Kornblith & Hinton 2019, "When does label smoothing help?", §4): student test accuracy
by the teacher's smoothing.

A student job records its teacher's strategy in metrics.json as ``teacher.smoothing`` (its name) and the
teacher's parameters as ``teacher.smoothing.<param>``. The table has one row per student (data set and model)
and one column per teacher setting (strategy and parameter values). The students of one teacher share it, so they
are not independent replicates of its setting: a cell first averages each teacher's students, then gives the mean
and 95% interval over the teachers of that setting (n: teachers). Intervals over the students would be too narrow
whenever teachers differ more than their students do.
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
from labelsmooth.report.tables import STILL_IMPROVING_MARK, Table
from labelsmooth.runs.overrides import override_value
from labelsmooth.runs.record import TEACHER_PREFIX

TEACHER_KEY = f"{TEACHER_PREFIX}smoothing"
STUDENT_METRIC = ReportMetric("test/acc", "Student test accuracy (%)", higher_is_better=True, accuracy=True)
TEACHER_COLUMN = "teacher"
TEACHER_CHECKPOINT_KEY = "teacher_ckpt"  # its teachers of one setting (their seeds) are the cell's replicates
TEACHER_RECORD_KEY = f"{TEACHER_PREFIX}checkpoint"
STUDENTS_IMPROVING_NOTE = (
    f"{STILL_IMPROVING_MARK}k: for k of the n teachers a student was still improving, its best validation accuracy "
    "came in the last epoch trained (`val/acc_best_epoch = epochs - 1` in metrics.json): a longer run may change "
    "these numbers."
)


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


def teacher_of(job: Job) -> str:
    """The teacher a student learnt from: its checkpoint as metrics.json records it (``teacher.checkpoint``), else
    as the job's ``teacher_ckpt`` (its override, else its config); a job that records neither is its own teacher
    (its directory)."""
    recorded = (job.metrics.get(TEACHER_RECORD_KEY), override_value(job.overrides, TEACHER_CHECKPOINT_KEY))
    for checkpoint in (*recorded, job.value(TEACHER_CHECKPOINT_KEY)):
        if isinstance(checkpoint, str) and checkpoint:
            return checkpoint
    return str(job.directory)


def build_distillation_table(jobs: Sequence[Job]) -> Table | None:
    """Student ``test/acc`` per student (``data set (model)``) and teacher setting over the completed student
    jobs (pass each run once: ``distinct_jobs``), one replicate per teacher (``teacher_of``): the mean of its
    students; None when no completed job records a teacher. Any other key the students vary
    (``distill.temperature``) joins the column label, so that a cell never pools students trained differently. A
    teacher is marked still improving when one of its students is."""
    completed = [j for j in jobs if j.status == "completed"]
    student_keys = [k for k in swept_parameters(completed) if k != TEACHER_CHECKPOINT_KEY]
    students: dict[str, dict[ParameterValue, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    improving: dict[str, dict[ParameterValue, set[Any]]] = defaultdict(lambda: defaultdict(set))
    for job in completed:
        column, value = teacher_setting(job), as_float(job.metrics.get(STUDENT_METRIC.key))
        if column is None or value is None:
            continue
        if student_keys:
            column += " · " + ", ".join(f"{k}={format_value(as_parameter_value(job.value(k)))}" for k in student_keys)
        row, teacher = f"{job.dataset} ({job.model})", teacher_of(job)
        students[row][column][teacher].append(value)
        if still_improving(job):
            improving[row][column].add(teacher)
    if not students:
        return None
    values = {
        row: {column: {t: sum(v) / len(v) for t, v in per_teacher.items()} for column, per_teacher in per_row.items()}
        for row, per_row in sorted(students.items())
    }
    marked = {r: {c: s for c, s in v.items() if s} for r, v in improving.items()}
    return Table(STUDENT_METRIC, values, marked, replicates="teachers", improving_note=STUDENTS_IMPROVING_NOTE)
