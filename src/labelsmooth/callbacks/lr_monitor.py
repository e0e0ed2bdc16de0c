"""Lightning's learning-rate monitor, with each epoch's rates logged at that epoch."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor


class EpochLearningRateMonitor(LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (the same names: ``lr-Adam``, or ``lr-Adam/pg1``, ... with several
    parameter groups), whose rates logged at an epoch's start carry that ``epoch``.

    Lightning logs them at the epoch's first step without an ``epoch``. W&B plots the epoch-level metrics against
    ``epoch`` (``labelsmooth.tracking.wandb_run.EPOCH_METRICS``) and files a row without one under the last epoch
    logged, so each epoch's rate showed at the epoch before it.
    """

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval == "step":
            super().on_train_epoch_start(trainer, *args, **kwargs)
            return
        rates = self._extract_stats(trainer, "epoch" if self.logging_interval is None else "any")
        step = trainer.fit_loop.epoch_loop._batches_that_stepped
        for logger in trainer.loggers if rates else ():
            logger.log_metrics({**rates, "epoch": trainer.current_epoch}, step=step)
