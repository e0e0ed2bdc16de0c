"""Per-class test accuracy by the swept parameter (strategy, γ, ...): smoothing is known to move accuracy between
classes. One table per data set (row label of the other tables): rows are the parameter's values, columns the
classes, cells ``mean ± h (n)`` over seeds as in the other tables (``format_cell``), from each job's
``test/acc_per_class`` (a list in class order; ``null`` for a class absent from the test split). With more than
``ALL_CLASSES_MAX`` classes only the ``WORST_SHOWN`` classes worst on the baseline (lowest mean) are shown, chosen on
its validation accuracy (``val/acc_per_class``): classes chosen for their low test accuracy would look better under
any other value by chance alone (regression to the mean), so the test cells are not selected on themselves. Jobs
that record no validation per-class accuracy are chosen on test, and the table says so. The last column is always
the mean over classes (per seed, over the classes present)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelsmooth.report.base import (
    ParameterValue,
    as_float,
    as_parameter_value,
    column_order,
    format_value,
    markdown_table,
    param_label,
    slug,
)
from labelsmooth.report.jobs import Job, counted_jobs, row_labels
from labelsmooth.report.stats import Estimate, mean_confidence_interval
from labelsmooth.report.tables import format_cell, write_csv

PER_CLASS_KEY = "test/acc_per_class"
SELECTION_KEY = "val/acc_per_class"
ALL_CLASSES_MAX = 20
WORST_SHOWN = 10
MEAN_COLUMN = "mean over classes"
SCALE = 100.0


@dataclass
class PerClassTable:
    """``values[parameter value][class][seed]`` of one data set (``row``); ``classes``: the classes shown, in
    order (all, or the worst of ``reference`` first); ``num_classes``: K."""

    row: str
    values: dict[ParameterValue, dict[int, dict[Any, float]]]
    means: dict[ParameterValue, dict[Any, float]]
    classes: list[int]
    num_classes: int
    reference: ParameterValue
    class_names: list[str] | None = None  # where every job of the row records the same names
    chosen_on: str = "validation"  # the split whose accuracy at ``reference`` chose the worst classes

    def label(self, cls: int) -> str:
        return self.class_names[cls] if self.class_names else f"class {cls}"

    @property
    def parameter_values(self) -> list[ParameterValue]:
        return sorted(self.values, key=column_order)

    def estimate(self, value: ParameterValue, cls: int | None) -> Estimate:
        """Over seeds, of class ``cls`` (None: the mean over classes)."""
        seeds = self.means.get(value, {}) if cls is None else self.values.get(value, {}).get(cls, {})
        return mean_confidence_interval(list(seeds.values()))

    @property
    def worst_only(self) -> bool:
        return self.num_classes > ALL_CLASSES_MAX


def _per_class(value: Any) -> list[float | None] | None:
    if not isinstance(value, list) or not value:
        return None
    return [as_float(v) for v in value]


def build_per_class_tables(
    jobs: Sequence[Job], parameter: str, baseline: ParameterValue, key: str = PER_CLASS_KEY
) -> list[PerClassTable]:
    """One table per data set whose completed jobs record ``key``, duplicates not counted (``counted_jobs``)."""
    jobs, _ = counted_jobs(jobs, parameter)
    row_of = row_labels(jobs)
    values: dict[str, dict[ParameterValue, dict[int, dict[Any, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    means: dict[str, dict[ParameterValue, dict[Any, float]]] = defaultdict(lambda: defaultdict(dict))
    validation: dict[str, dict[ParameterValue, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    sizes: dict[str, int] = defaultdict(int)
    names: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for job in (j for j in jobs if j.status == "completed"):
        column, accuracies = as_parameter_value(job.value(parameter)), _per_class(job.metrics.get(key))
        if column is None or accuracies is None:
            continue
        row = row_of(job)
        seed = job.seed if job.seed is not None else str(job.directory)
        present = [a for a in accuracies if a is not None]
        if not present:
            continue
        sizes[row] = max(sizes[row], len(accuracies))
        recorded = job.metrics.get("class_names")
        names[row].add(tuple(map(str, recorded)) if isinstance(recorded, list) else ())
        for cls, accuracy in enumerate(accuracies):
            if accuracy is not None:
                values[row][column][cls][seed] = accuracy
        means[row][column][seed] = sum(present) / len(present)
        for cls, accuracy in enumerate(_per_class(job.metrics.get(SELECTION_KEY)) or []):
            if accuracy is not None:
                validation[row][column][cls].append(accuracy)
    tables = []
    for row in sorted(values):
        per_value = values[row]
        reference = baseline if baseline in per_value else sorted(per_value, key=column_order)[0]
        k = sizes[row]
        classes, chosen_on = list(range(k)), "validation"
        if k > ALL_CLASSES_MAX:
            chosen = validation[row].get(reference) or {c: list(v.values()) for c, v in per_value[reference].items()}
            chosen_on = "validation" if validation[row].get(reference) else "test"
            mean_of = {c: sum(v) / len(v) for c, v in chosen.items()}
            classes = sorted(mean_of, key=lambda c: (mean_of[c], c))[:WORST_SHOWN]
        tables.append(
            PerClassTable(
                row,
                {v: dict(c) for v, c in per_value.items()},
                {v: dict(s) for v, s in means[row].items()},
                classes,
                k,
                reference,
                list(next(iter(names[row]))) if len(names[row]) == 1 and len(next(iter(names[row]))) == k else None,
                chosen_on,
            )
        )
    return tables


def per_class_markdown(tables: Sequence[PerClassTable], parameter: str) -> list[str]:
    """The report.md section: one table per data set."""
    if not tables:
        return []
    symbol = param_label(parameter)
    parts = [
        "",
        f"## Per-class test accuracy by {symbol} (`{PER_CLASS_KEY}`)",
        "",
        "Smoothing can move accuracy between classes. Cells as above (`mean ± h (n)` over seeds, in percent); "
        f"`{MEAN_COLUMN}`: per seed, the mean over the classes (balanced accuracy). With more than "
        f"{ALL_CLASSES_MAX} classes only the {WORST_SHOWN} classes with the lowest mean validation accuracy at the "
        f"baseline (`{SELECTION_KEY}`) are shown, worst first: classes chosen for their low test accuracy would look "
        "better under any other value by chance alone (regression to the mean). Jobs that record no validation "
        "per-class accuracy have their classes chosen on test, which the table's heading says.",
    ]
    for table in tables:
        caveat = ", chosen on these test numbers: the other rows gain by chance" if table.chosen_on == "test" else ""
        which = (
            f", the {len(table.classes)} worst of {table.num_classes} classes at {symbol} = "
            f"{format_value(table.reference)}{caveat}"
            if table.worst_only
            else ""
        )
        header = [symbol, *(table.label(c) for c in table.classes), MEAN_COLUMN]
        rows = [
            [
                format_value(v),
                *(format_cell(table.estimate(v, c), SCALE) for c in table.classes),
                format_cell(table.estimate(v, None), SCALE),
            ]
            for v in table.parameter_values
        ]
        parts += ["", f"### {table.row}{which}", "", markdown_table(header, rows)]
    return parts


def write_per_class_csv(path: Path, tables: Sequence[PerClassTable], parameter: str) -> Path:
    """One row per data set, parameter value and class (every class, shown or not; ``mean`` for the mean over
    classes): mean, 95% interval, standard deviation, n."""
    rows = []
    for table in tables:
        for value in table.parameter_values:
            for cls in [*range(table.num_classes), None]:
                e = table.estimate(value, cls)
                if e.n:
                    name = "mean" if cls is None else cls
                    label = "" if cls is None or not table.class_names else table.class_names[cls]
                    rows.append([table.row, value, name, label, e.mean, e.half_width, e.low, e.high, e.std, e.n])
    header = ["row", parameter, "class", "class_name", "mean", "ci95_half_width", "ci95_low", "ci95_high", "std", "n"]
    return write_csv(path, header, rows)


def per_class_csv_name(key: str = PER_CLASS_KEY) -> str:
    return f"table_{slug(key.replace('/', '_'))}.csv"
