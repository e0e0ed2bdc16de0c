"""Write log records to the run's log files only (Hydra's ``train.log``), not to the console."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import BufferingHandler


def log_files() -> list[logging.FileHandler]:
    """The root logger's file handlers (none outside a Hydra app, e.g. in tests and benchmarks)."""
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def log_to_files(logger: logging.Logger, level: int, message: str) -> None:
    """Hand ``message`` to every file handler of the root logger (where Hydra puts the job's log file): for what
    the console already shows another way (the progress bar, Hydra's own error message)."""
    write_to_files([logger.makeRecord(logger.name, level, __file__, 0, message, None, None)])


@contextmanager
def keep_records(into: list[logging.LogRecord]) -> Iterator[list[logging.LogRecord]]:
    """Every log record that reaches the root logger inside the block, appended to ``into``: what one process logs
    once for several runs (a fused group's data set, seeds and fit), to be written to each run's log files later
    (``write_to_files``)."""
    keeper = BufferingHandler(capacity=sys.maxsize)  # never flushed: it only collects
    keeper.buffer = into
    root = logging.getLogger()
    root.addHandler(keeper)
    try:
        yield into
    finally:
        root.removeHandler(keeper)


def write_to_files(records: list[logging.LogRecord]) -> None:
    """``records``, with their own times, to the root logger's file handlers only (the console showed them)."""
    for record in records:
        for handler in log_files():
            if record.levelno >= handler.level:
                handler.handle(record)
