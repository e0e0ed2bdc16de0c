"""The reliability CSV of a run (``calibration/reliability_<split>.csv``): its one writer and its one reader.

One row per non-empty bin, columns ``BIN_COLUMNS``: ``split`` (``val``, ``test``, ``test_ts`` = test after
temperature scaling), the bin's confidence range ``lower``, ``upper``, its ``count``, ``accuracy`` (mean
correctness) and ``confidence`` (mean top-1 confidence), as ``labelsmooth.calibration.binning.binned_statistics``
gives them. The calibration callback writes it (``bins_csv_text``, atomically); the report reads it
(``read_bins_csv``). No torch: the report imports it.

>>> from labelsmooth.calibration.bins import CalibrationBin
>>> text = bins_csv_text({"test": [CalibrationBin(0.8, 0.9, 3, 2 / 3, 0.85)]})
>>> text.splitlines()
['split,lower,upper,count,accuracy,confidence', 'test,0.8,0.9,3,0.6666666666666666,0.85']
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from labelsmooth.calibration.bins import BIN_FIELDS, BinRow, CalibrationBin

BIN_COLUMNS = ("split", *BIN_FIELDS)


def bins_table_rows(rows: Mapping[str, Sequence[BinRow]]) -> list[list[Any]]:
    """The rows of the CSV (and of the W&B table ``<split>/reliability_bins``), in ``BIN_COLUMNS`` order."""
    table = []
    for split, bins in rows.items():
        for b in bins:
            values = b.as_dict() if isinstance(b, CalibrationBin) else b
            table.append([split, *(values[name] for name in BIN_FIELDS)])
    return table


def bins_csv_text(rows: Mapping[str, Sequence[BinRow]]) -> str:
    """The CSV of the bins of each split (``{"test": bins, "test_ts": bins}``), header first; floats as ``repr``
    (round-trip exact)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(BIN_COLUMNS)
    writer.writerows(bins_table_rows(rows))
    return buffer.getvalue()


def read_bins_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a reliability CSV as dicts: ``split`` (str), ``count`` (int), ``lower``, ``upper``,
    ``accuracy``, ``confidence`` (float). Raises ``OSError`` when it cannot be read and ``ValueError`` naming the
    file and line when a column is missing or a value is not a number."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in BIN_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not a reliability CSV, columns {missing} missing (expected {list(BIN_COLUMNS)})")
        rows = []
        for record in reader:
            try:
                row: dict[str, Any] = {"split": record["split"]}
                row.update({name: (int if name == "count" else float)(record[name]) for name in BIN_FIELDS})
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {reader.line_num}: {error}") from error
            rows.append(row)
    return rows


def bins_by_split(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``read_bins_csv``'s rows grouped by ``split``, in file order, without the ``split`` key."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["split"]].append({k: v for k, v in row.items() if k != "split"})
    return dict(grouped)
