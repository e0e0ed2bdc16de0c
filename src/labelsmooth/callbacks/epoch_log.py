"""The training curve, kept after each epoch: one line in the run's log file and one row in its ``history.csv``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only

from labelsmooth.callbacks.progress import format_metric
from labelsmooth.errors import describe
from labelsmooth.lr_schedules import learning_rates
from labelsmooth.runs.history import read_history_csv, write_history_csv
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.tracking.log_files import log_files, log_to_files

log = logging.getLogger("labelsmooth.epochs")
HISTORY_CHECKPOINT_KEY = "labelsmooth_history"


class EpochLogFile(pl.Callback):
    """After each training epoch, ``epoch 3 done: 391 steps in 4.6 s; train/loss=0.6041, val/acc=0.974, ...`` in
    ``train.log``, with the optimizer steps the epoch took and its row's values (the validation metrics only of an
    epoch that validated), so that the log file keeps
    the training curve whatever the console shows (a rich bar redraws in place); and, with ``output_dir``, the
    epoch's row in ``<output_dir>/history.csv`` (``labelsmooth.runs.history``): ``train/loss``, the learning rate
    at the epoch's start and the validation metrics of the epochs that ran validation. A resumed run keeps the rows
    of the epochs before the one it resumes at: each checkpoint carries the rows up to its epoch
    (``HISTORY_CHECKPOINT_KEY``), so that a run continued from a checkpoint in another directory (``ckpt_path=``)
    has the whole curve its ``val/acc_best`` was taken over; a checkpoint without them resumes with the rows of the
    run directory's ``history.csv``."""

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.rows: list[dict[str, float]] = []
        self._epoch_start = 0.0
        self._epoch_start_step = 0
        self._rates: dict[str, float] = {}
        self._validated_epoch = -1
        self._finished: tuple[int, int, float] | None = None  # (epoch, steps, seconds), written once all is logged
        self._checkpoint_rows: list[dict[str, float]] | None = None  # those of the checkpoint a fit continues

    @property
    def history_csv(self) -> Path | None:
        return RunDirectory(self.output_dir).history_csv if self.output_dir else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = self._earlier_rows(trainer.current_epoch)

    def _earlier_rows(self, epoch: int) -> list[dict[str, float]]:
        """The rows of the epochs before ``epoch`` that the continued checkpoint, else ``history.csv``, holds (a
        resumed run); none for a new run."""
        if epoch == 0 or self.history_csv is None:
            return []
        if self._checkpoint_rows is not None:
            return [row for row in self._checkpoint_rows if row["epoch"] < epoch]
        if not self.history_csv.is_file():
            return []
        try:
            return [row for row in read_history_csv(self.history_csv) if row["epoch"] < epoch]
        except (OSError, ValueError) as error:
            log.warning("history.csv starts again at epoch %d: %s", epoch, describe(error))
            return []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The previous epoch, unless its checkpoint wrote it (the module logs train/loss after this epoch-end hook).
        self._write_finished(trainer)
        self._epoch_start, self._epoch_start_step = time.perf_counter(), trainer.global_step
        self._rates = learning_rates(trainer.optimizers[0]) if trainer.optimizers else {}

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == TrainerFn.FITTING:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finished = (trainer.current_epoch, trainer.global_step - self._epoch_start_step, self.elapsed())

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # The epoch's checkpoint is saved after the module's epoch end: its row goes first, so that a run killed
        # after the checkpoint resumes with the row of every epoch the checkpoint holds.
        self._write_finished(trainer)
        if self.history_csv is not None:
            checkpoint[HISTORY_CHECKPOINT_KEY] = [dict(row) for row in self.rows]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        rows = checkpoint.get(HISTORY_CHECKPOINT_KEY)
        self._checkpoint_rows = rows if isinstance(rows, list) else None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_finished(trainer)

    def elapsed(self) -> float:
        return time.perf_counter() - self._epoch_start

    @rank_zero_only
    def _write_finished(self, trainer: pl.Trainer) -> None:
        if self._finished is None:
            return
        epoch, steps, seconds = self._finished
        self._finished = None
        row = self._row(trainer, epoch)  # the rates also where no logger has their monitor
        if self.history_csv is not None:
            self.rows.append(row)
            write_history_csv(self.history_csv, self.rows)
        if not log_files():  # no log file (tests, benchmarks): nothing to read back from the device
            return
        metrics = ", ".join(f"{k}={format_metric(v)}" for k, v in sorted(row.items()) if k not in ("epoch", "step"))
        log_to_files(log, logging.INFO, f"epoch {epoch} done: {steps} steps in {seconds:.3g} s; {metrics}")

    def _row(self, trainer: pl.Trainer, epoch: int) -> dict[str, float]:
        validated = self._validated_epoch == epoch
        values = {
            name: float(value)
            for name, value in trainer.callback_metrics.items()
            if _is_scalar(value) and (validated or not name.startswith("val/"))
        }
        # The rates as the optimizer holds them (LearningRateMonitor's copies in callback_metrics are float32).
        return {"epoch": epoch, "step": trainer.global_step, **values, **self._rates}


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)
