"""``history.csv``: a run's training curve, one row per finished epoch.

Columns: ``epoch``, ``step`` (the global step at the epoch's end), then every value of the epoch in name order:
``train/loss`` (the epoch's mean training loss), the learning rate at the epoch's start (``lr-Adam``, as Lightning's
``LearningRateMonitor`` names it), a strategy schedule's value (``schedule/<parameter>``) and, in the epochs that
ran validation, the validation metrics (``val/acc``, ``val/nll``, ``val/ece``, ``val/acc_best``, ...). A value the
epoch does not have is an empty cell. The file is rewritten whole and atomically after every epoch; the report
draws a sweep's learning curves from it (``labelsmooth.report.curves``).

>>> rows = [{"epoch": 0, "step": 19, "train/loss": 2.0, "val/acc": 0.5}, {"epoch": 1, "step": 38, "train/loss": 1.5}]
>>> print(history_csv_text(rows), end="")
epoch,step,train/loss,val/acc
0,19,2.0,0.5
1,38,1.5,
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from labelsmooth.runs.files import write_text_atomic
from labelsmooth.runs.layout import RunDirectory

LEADING = ("epoch", "step")


def history_csv_text(rows: Sequence[Mapping[str, float]]) -> str:
    """The CSV text of ``rows`` (one mapping per epoch, ``epoch`` and ``step`` in each)."""
    names = sorted({name for row in rows for name in row} - set(LEADING))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*LEADING, *names])
    for row in rows:
        writer.writerow([int(row[name]) for name in LEADING] + [_cell(row.get(name)) for name in names])
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def write_history_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, float]]) -> Path:
    return write_text_atomic(path, history_csv_text(rows))


def read_history_csv(path: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of a ``history.csv`` (``epoch`` and ``step`` as int, the other cells as float, empty cells left
    out); ``ValueError`` naming the file when it is not such a table, ``OSError`` when it cannot be read."""
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    if not table or tuple(table[0][: len(LEADING)]) != LEADING:
        raise ValueError(f"{path} is not a history.csv: its header does not start with {', '.join(LEADING)}")
    header, rows = table[0], []
    for number, cells in enumerate(table[1:], start=2):
        if len(cells) != len(header):
            raise ValueError(f"{path}, line {number}: {len(cells)} cells under a header of {len(header)}")
        try:
            row = {name: float(cell) for name, cell in zip(header, cells, strict=True) if cell != ""}
            rows.append({**row, **{name: int(row[name]) for name in LEADING}})
        except (KeyError, ValueError) as error:
            raise ValueError(f"{path}, line {number}: not a number ({error})") from error
    return rows


def recorded_history(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """The rows of the run's ``history.csv``; none where it has none, or one that cannot be read."""
    try:
        return read_history_csv(RunDirectory(run_dir).history_csv)
    except (OSError, ValueError):
        return []
