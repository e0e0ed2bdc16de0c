"""Hydra callbacks of the apps (``conf/hydra/default.yaml``: ``hydra.callbacks``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class CheckOutputDirectory(Callback):
    """Create the run directory (``hydra.run.dir``) or the sweep directory (``hydra.sweep.dir``) before Hydra does,
    so a directory that cannot be made (``hydra.run.dir=/proc/x``, a read-only ``paths.log_dir``) is refused with
    the key and the reason, instead of pathlib's traceback from inside Hydra. Hydra turns a callback's exception
    into a warning, so the refusal is a message and ``SystemExit(1)``."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        make_directory(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        make_directory(config.hydra.sweep.dir, "hydra.sweep.dir")


def make_directory(path: str, key: str) -> None:
    try:
        Path(str(path)).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        sys.stderr.write(
            f"{key}={path}: cannot create the directory ({error.strerror or error}). Choose a writable place with "
            f"{key}=... or paths.log_dir=... (LABELSMOOTH_ROOT moves outputs/ too).\n"
        )
        raise SystemExit(1) from error
