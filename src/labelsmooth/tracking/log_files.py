"""Write a log record to the run's log files only (Hydra's ``train.log``), not to the console."""

from __future__ import annotations

import logging


def log_files() -> list[logging.FileHandler]:
    """The root logger's file handlers (none outside a Hydra app, e.g. in tests and benchmarks)."""
    return [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]


def log_to_files(logger: logging.Logger, level: int, message: str) -> None:
    """Hand ``message`` to every file handler of the root logger (where Hydra puts the job's log file): for what
    the console already shows another way (the progress bar, Hydra's own error message)."""
    record = logger.makeRecord(logger.name, level, __file__, 0, message, None, None)
    for handler in log_files():
        if record.levelno >= handler.level:
            handler.handle(record)
