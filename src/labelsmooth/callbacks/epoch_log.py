"""One line per finished training epoch in the run's log file, with every metric logged so far."""

from __future__ import annotations

import logging
import time

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from labelsmooth.callbacks.progress import format_metric
from labelsmooth.tracking.log_files import log_files, log_to_files

log = logging.getLogger("labelsmooth.epochs")


class EpochLogFile(pl.Callback):
    """``epoch 3 done: 391 steps in 4.6 s; train/loss=0.6041, val/acc=0.974, val/ece=0.031, ...`` in ``train.log``
    after each epoch: its validation metrics and ``train/loss`` (Lightning's ``callback_metrics``), so the log
    file keeps the training curve whatever the console shows (a rich bar redraws in place)."""

    def __init__(self) -> None:
        super().__init__()
        self._epoch_start = 0.0
        self._finished: tuple[int, int, float] | None = None  # (epoch, steps, seconds), written once all is logged

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The previous epoch is written here: the module logs its train/loss after this callback's epoch end.
        self._write_finished(trainer)
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        steps = trainer.num_training_batches
        self._finished = (trainer.current_epoch, int(steps) if steps != float("inf") else -1, self.elapsed())

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
        if not log_files():  # no log file (tests, benchmarks): nothing to read back from the device
            return
        metrics = ", ".join(f"{k}={format_metric(v)}" for k, v in sorted(trainer.callback_metrics.items()))
        log_to_files(log, logging.INFO, f"epoch {epoch} done: {steps} steps in {seconds:.3g} s; {metrics}")
