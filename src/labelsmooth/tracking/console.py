"""What a run prints when it is done: its metrics as a table, and where its outputs are."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from labelsmooth.runs.record import still_improving

STILL_IMPROVING = "still improving: the best validation accuracy came in the last epoch (train longer to compare)"
log = logging.getLogger("labelsmooth.results")


def print_run_summary(
    title: str, summary: dict[str, Any], output_dir: Path, extra_keys: Iterable[str] = (), table: bool = True
) -> None:
    """A rich table of the ``val/`` and ``test/`` entries of ``summary`` (and ``extra_keys``) on the console (not
    with ``table=False``: a sweep's job, whose ``metrics.json`` holds them), then the headline as a log line, so that
    the run's log file (``train.log``) ends with it too."""
    if table:
        print_metrics_table(title, summary, extra_keys)
    if still_improving(summary):
        log.warning(STILL_IMPROVING)
    log.info("%s", headline(summary, output_dir))


def print_metrics_table(title: str, summary: dict[str, Any], extra_keys: Iterable[str] = ()) -> None:
    """The ``val/`` and ``test/`` entries of ``summary`` (and ``extra_keys``) as a rich table on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    extra = [key for key in extra_keys if key in summary]
    for key in sorted(k for k in summary if k.startswith(("val/", "test/"))) + extra:
        value = summary[key]
        table.add_row(key, shown_value(value))
    Console().print(table)


def headline(summary: dict[str, Any], output_dir: Path) -> str:
    """The line a run ends with: its test accuracy and ECE (before and after temperature scaling), its outputs.

    >>> headline({"test/acc": 0.98, "test/ece": 0.0312, "test/ece_ts": 0.01}, Path("out"))
    'test accuracy: 0.9800, test ECE: 0.0312 (0.0100 after temperature scaling); outputs: out'
    """
    parts = []
    if isinstance(accuracy := summary.get("test/acc"), float):
        parts.append(f"test accuracy: {accuracy:.4f}")
    if isinstance(ece := summary.get("test/ece"), float):
        scaled = summary.get("test/ece_ts")
        parts.append(
            f"test ECE: {ece:.4f}" + (f" ({scaled:.4f} after temperature scaling)" if isinstance(scaled, float) else "")
        )
    return ", ".join(parts) + ("; " if parts else "") + f"outputs: {output_dir}"


def shown_value(value: Any) -> str:
    """A summary value in the run's table: numbers to 4 decimals, lists (per-class values) element by element.

    >>> shown_value(0.123456), shown_value([0.5, 1 / 3]), shown_value(3)
    ('0.1235', '[0.5000, 0.3333]', '3')
    """
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown_value(v) for v in value) + "]"
    return str(value)
