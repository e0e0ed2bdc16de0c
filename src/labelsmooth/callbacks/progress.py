"""A rich progress bar on interactive terminals, plain progress lines in logs and CI."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar


def progress_bar(refresh_rate: int = 1, non_interactive_refresh_rate: int = 50) -> ProgressBar:
    """``RichProgressBar`` when stdout is a terminal; otherwise ``LineProgress``, a line every
    ``non_interactive_refresh_rate`` training steps and one per epoch, so log files are not flooded with redraws."""
    if sys.stdout.isatty():
        return RichProgressBar(refresh_rate=refresh_rate)
    return LineProgress(refresh_rate=non_interactive_refresh_rate)


def format_metric(value: Any) -> str:
    """A logged value (tensor or number) as progress and log lines show it: 4 significant digits."""
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class LineProgress(ProgressBar):
    """Progress as whole lines (no carriage returns, no redraws), written to ``stream`` (stderr by default).

    Training: ``Epoch 3/199: 100/391 steps, 85.2 steps/s`` every ``refresh_rate`` steps within an epoch, and
    once the epoch is over (its validation and its ``train/loss`` logged) ``Epoch 3/199 done: 391 steps in
    4.6 s, train/loss=0.6041, val/acc=0.974`` with the metrics logged with ``prog_bar=True``. Validation and
    test outside ``fit`` (``trainer.validate`` / ``trainer.test``): a line every ``refresh_rate`` batches and
    one when done; the validation inside ``fit`` shows in the epoch's line.

    Lightning's TQDM bar redraws ~10 times per epoch (training and validation bars: created, reset, updated,
    closed); under a W&B run each write is also forwarded to W&B's console capture, which cost ~6 ms of CPU per
    epoch of the digits MLP (bench/NOTES.md). Here it is one write per epoch plus one per ``refresh_rate`` steps.
    """

    def __init__(self, refresh_rate: int = 50, stream: TextIO | None = None) -> None:
        super().__init__()
        self._refresh_rate = int(refresh_rate)
        self._enabled = True
        self._stream = stream
        self._epoch_start = 0.0
        self._eval_start = 0.0
        self._finished_epoch: tuple[int, int, float] | None = None  # (epoch, steps, seconds), printed once logged

    # -- the ProgressBar interface -----------------------------------------------------------------------
    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        return self._enabled and self._refresh_rate > 0

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        if self.is_enabled:
            print(*args, sep=sep, file=self._stream or sys.stderr, flush=True)

    # -- training ----------------------------------------------------------------------------------------
    def _epoch_label(self, trainer: pl.Trainer, epoch: int) -> str:
        """``Epoch 3/199``: epochs count from 0 (as in Lightning and the checkpoint names); after the slash the last."""
        max_epochs = trainer.max_epochs
        return f"Epoch {epoch}/{max_epochs - 1}" if max_epochs is not None and max_epochs > 0 else f"Epoch {epoch}"

    def _print_finished_epoch(self, trainer: pl.Trainer) -> None:
        if self._finished_epoch is None:
            return
        epoch, steps, seconds = self._finished_epoch
        self._finished_epoch = None
        metrics = "".join(f", {k}={format_metric(v)}" for k, v in trainer.progress_bar_metrics.items())
        self.print(f"{self._epoch_label(trainer, epoch)} done: {steps} steps in {seconds:.3g} s{metrics}")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The previous epoch's line waits until here: its train/loss is logged in the module's on_train_epoch_end,
        # after this callback's own on_train_epoch_end.
        self._print_finished_epoch(trainer)
        self._epoch_start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        n = self._steps = batch_idx + 1
        total = self.total_train_batches
        if self.is_enabled and n % self._refresh_rate == 0 and n != total:
            rate = n / max(time.perf_counter() - self._epoch_start, 1e-9)
            of_total = f"/{total}" if math.isfinite(total) else ""
            self.print(f"{self._epoch_label(trainer, trainer.current_epoch)}: {n}{of_total} steps, {rate:.1f} steps/s")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finished_epoch = (trainer.current_epoch, self._steps, time.perf_counter() - self._epoch_start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print_finished_epoch(trainer)

    # -- validation and test outside fit ------------------------------------------------------------------
    def _eval_batch(self, trainer: pl.Trainer, description: str, total: int | float, batch_idx: int) -> None:
        n = batch_idx + 1
        if self.is_enabled and n % self._refresh_rate == 0 and n != total:
            self.print(f"{description}: {n}/{total} batches")

    def _eval_done(self, description: str, batches: int | float) -> None:
        self.print(f"{description}: {batches} batches in {time.perf_counter() - self._eval_start:.3g} s")

    def _standalone_validation(self, trainer: pl.Trainer) -> bool:
        return not trainer.sanity_checking and trainer.state.fn != "fit"

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start = time.perf_counter()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx=0) -> None:
        if self._standalone_validation(trainer):
            self.has_dataloader_changed(dataloader_idx)
            self._eval_batch(trainer, self.validation_description, self.total_val_batches_current_dataloader, batch_idx)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._standalone_validation(trainer):
            self._eval_done(self.validation_description, sum(_as_list(trainer.num_val_batches)))
        self.reset_dataloader_idx_tracker()

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_start = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx=0) -> None:
        self.has_dataloader_changed(dataloader_idx)
        self._eval_batch(trainer, self.test_description, self.total_test_batches_current_dataloader, batch_idx)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._eval_done(self.test_description, sum(_as_list(trainer.num_test_batches)))
        self.reset_dataloader_idx_tracker()


def _as_list(batches: int | float | list) -> list:
    return batches if isinstance(batches, list) else [batches]
