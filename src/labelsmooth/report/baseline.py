"""The baseline column of Table 3: the parameter value that means "no smoothing".

The strategies declare it (``SmoothingStrategy.unsmoothed``) and training records it in each job's metrics.json
as ``unsmoothed.<parameter>`` (``"unsmoothed.smoothing.gamma": 1.0``, ``"unsmoothed.smoothing.epsilon": 0.0``);
the report reads it from there and knows nothing about particular strategies. For a swept strategy name the
baseline is ``none``. Jobs that record no such value (runs from before it was recorded) or disagree on it get the
rule of thumb: 1 when swept, else 0 when swept, else 1. ``Baseline.reason`` says which applied, for Table 3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labelsmooth.report.base import ParameterValue, as_float, column_number, format_value, param_label
from labelsmooth.report.jobs import Job, ParameterError
from labelsmooth.runs.record import UNSMOOTHED_PREFIX

NO_SMOOTHING = "none"


@dataclass(frozen=True)
class Baseline:
    """The column Table 3 compares the best value with, and why that one."""

    value: ParameterValue
    reason: str


def _column(wanted: float | str, columns: Sequence[ParameterValue]) -> ParameterValue:
    """The column that ``wanted`` names (``"1"`` matches 1.0), else ``wanted`` as a number or a name."""
    number = column_number(found) if (found := as_float(wanted)) is not None else None
    for column in columns:
        if (isinstance(column, float) and number is not None and column == number) or column == str(wanted):
            return column
    return number if number is not None else str(wanted)


def _rule_of_thumb(numbers: set[float]) -> float:
    return 1.0 if 1.0 in numbers or 0.0 not in numbers else 0.0


def resolve_baseline(
    baseline: float | str | None, columns: Iterable[ParameterValue], unsmoothed: float | None = None
) -> ParameterValue:
    """The column that ``baseline`` names (``"1"`` matches 1.0). By default: ``none`` (the strategy without
    smoothing) when the columns are names; else ``unsmoothed``, the value the jobs record as unsmoothed, when
    given (Table 3 says so when no job ran it); else 1.0 when swept, else 0 when swept, else 1.0."""
    columns = list(columns)
    if baseline is None:
        if columns and all(isinstance(c, str) for c in columns):
            baseline = NO_SMOOTHING
        elif unsmoothed is not None:
            baseline = unsmoothed
        else:
            baseline = _rule_of_thumb({c for c in columns if isinstance(c, float)})
    return _column(baseline, columns)


def recorded_unsmoothed(jobs: Sequence[Job], parameter: str) -> tuple[list[float], int]:
    """The distinct values of ``unsmoothed.<parameter>`` the completed jobs record (sorted), and how many
    completed jobs record none."""
    values, lacking = set(), 0
    for job in jobs:
        if job.status != "completed":
            continue
        value = as_float(job.metrics.get(UNSMOOTHED_PREFIX + parameter))
        if value is None:
            lacking += 1
        else:
            values.add(column_number(value))
    return sorted(values), lacking


def choose_baseline(
    jobs: Sequence[Job], parameter: str, columns: Iterable[ParameterValue], given: float | str | None = None
) -> Baseline:
    """The baseline of Table 3 (:func:`resolve_baseline`) with the jobs' recorded unsmoothed value, and the
    sentence that says which baseline that is and why."""
    columns = list(columns)
    symbol, key = param_label(parameter), f"`{UNSMOOTHED_PREFIX}{parameter}`"
    if given is not None:
        value = resolve_baseline(given, columns)
        if columns and value not in columns:
            shown = ", ".join(format_value(c) for c in sorted(columns, key=str))
            raise ParameterError(f"--baseline {given}: no completed job has {parameter}={given} (the values: {shown})")
        return Baseline(value, f"{symbol} = {format_value(value)}, given by `--baseline`.")
    if columns and all(isinstance(c, str) for c in columns):
        return Baseline(NO_SMOOTHING, f"{symbol} = {NO_SMOOTHING}, the strategy without smoothing.")
    recorded, lacking = recorded_unsmoothed(jobs, parameter)
    if len(recorded) == 1:
        value = resolve_baseline(None, columns, recorded[0])
        reason = (
            f"{symbol} = {format_value(value)}, the value at which the jobs' strategy does not smooth, as they "
            f"record it ({key} in metrics.json"
            + (f"; {lacking} completed job{'s' if lacking != 1 else ''} do not record it)" if lacking else ")")
            + ("." if value in columns else "; no job ran it.")
        )
        return Baseline(value, reason)
    value = resolve_baseline(None, columns)
    numbers = {c for c in columns if isinstance(c, float)}
    if 1.0 in numbers:
        rule = "1 is swept"
    elif 0.0 in numbers:
        rule = "0 is swept and 1 is not"
    else:
        rule = "neither 0 nor 1 is swept"
    why = (
        f"the jobs record different values of {key} ({', '.join(format_value(v) for v in recorded)})"
        if recorded
        else f"no job records {key} (runs from before it was recorded, or not a strategy parameter)"
    )
    fallback = f"so the fallback rule applies (1 if swept, else 0 if swept, else 1): {rule}"
    return Baseline(value, f"{symbol} = {format_value(value)}: {why}, {fallback}.")
