"""Reliability diagrams and saved predictions, as a Lightning callback: figures and files only.

The scalar metrics (accuracy, scores, binned / class-wise / smooth calibration errors, AURC, AUGRC) and temperature
scaling (``temperature``, ``test/<m>_ts``) are the LightningModule's: they are logged with or without this
callback. This callback needs the logits themselves: the module's
``validation_step`` / ``test_step`` return ``{"logits", "target"}``, which arrive here in ``on_*_batch_end``.
Those logits are the strategy's ``prediction_logits``, whose softmax is the model's predictive distribution (for
sigmoid heads ``logsigmoid(z)``: the normalised one-vs-rest probabilities), the same distribution the logged
metrics read. Per evaluation epoch the callback gathers them over DDP processes (in the data set's order when the
sampler is an unshuffled ``DistributedSampler``, as the data modules' evaluation sampler is; ``in_dataset_order``)
and

* validation (not the sanity check): draws the reliability diagram with its confidence histogram
  (``n_bins`` equal-width bins, the module's) to ``calibration/reliability_val.png`` (the latest epoch), logs it to
  W&B as ``val/reliability_diagram`` and the per-bin numbers as the W&B table ``val/reliability_bins``; it keeps
  the logits of the latest validation epoch (``val_logits``, ``val_target``);
* test (at ``on_test_end``, after the module's ``on_test_epoch_end`` fitted its temperature): draws the test
  diagrams before and after scaling by the module's ``temperature`` side by side
  (``calibration/reliability_test.png`` and ``.csv``; W&B ``test/reliability_diagram``, ``test/reliability_bins``)
  and the module's test confusion matrix, rows normalised, with the data set's class names where it has them
  (``confusion_matrix.png``; W&B ``test/confusion_matrix``);
* after ``trainer.validate`` and ``trainer.test`` (not during ``fit``), writes ``predictions/val.npz`` and
  ``predictions/test.npz``: ``logits`` (float32, N × K) and ``targets`` (int64, N), from which every logged metric
  can be recomputed; skipped, with a warning and a ``predictions.<split>`` entry in ``metrics.json``, when
  ``N · K > predictions_max_values``.

Files are written by process 0 only, atomically, with any logger (W&B, CSV, none); images and tables go to W&B
only. A diagram that cannot be drawn or saved is skipped with a one-line warning: it never fails a run. Paths
come from ``labelsmooth.runs.layout.RunDirectory``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from labelsmooth.calibration.binning import binned_statistics, confidences_and_correct
from labelsmooth.calibration.bins import DEFAULT_BINS
from labelsmooth.calibration.bins_csv import BIN_COLUMNS, bins_csv_text, bins_table_rows
from labelsmooth.calibration.confusion import confusion_figure
from labelsmooth.calibration.reliability import reliability_figure
from labelsmooth.callbacks.contracts import TestedClassifier
from labelsmooth.errors import is_disk_full, whole_number
from labelsmooth.runs.files import save_figure_atomic, write_atomic, write_text_atomic
from labelsmooth.runs.layout import RunDirectory
from labelsmooth.tracking.wandb_run import is_wandb

log = logging.getLogger(__name__)

DEFAULT_PREDICTIONS_MAX_VALUES = 50_000_000


def gather_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (its first dimension may differ per process) from every DDP process; on CPU."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor.cpu()
    from torchmetrics.utilities.distributed import gather_all_tensors

    return torch.cat([part.cpu() for part in gather_all_tensors(tensor.contiguous())])


def in_dataset_order(gathered: torch.Tensor, sampler: Any) -> torch.Tensor:
    """The per-process parts of ``gathered`` (process 0's first) put back in the data set's order, when ``sampler``
    is an unshuffled ``DistributedSampler`` or Lightning's ``UnrepeatedDistributedSampler`` (the data modules'
    evaluation sampler): process ``r`` of ``W`` holds positions ``r, r + W, r + 2W, …`` of ``range(total_size)``,
    and a ``DistributedSampler`` repeats the first samples (``i mod N``) to give every process as many, which are
    dropped here. Any other sampler, or no DDP: ``gathered`` unchanged."""
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

    kinds = (torch.utils.data.DistributedSampler, UnrepeatedDistributedSampler)
    if type(sampler) not in kinds or sampler.shuffle or sampler.drop_last:
        return gathered
    n, world, total = len(sampler.dataset), sampler.num_replicas, sampler.total_size
    if gathered.shape[0] != total or n == 0:
        return gathered
    positions = torch.cat([torch.arange(rank, total, world) for rank in range(world)])
    ordered = gathered.new_empty((n, *gathered.shape[1:]))
    ordered[positions % n] = gathered  # a repeated sample is written twice, with the same values
    return ordered


def write_predictions(path: Path, logits: torch.Tensor, targets: torch.Tensor) -> Path:
    """``logits`` (float32) and ``targets`` (int64) as an ``.npz`` file at ``path``, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.savez would append ".npz" to a file name
            np.savez(handle, logits=logits.float().numpy(), targets=targets.long().numpy())
            handle.flush()
            os.fsync(handle.fileno())

    return write_atomic(path, write)


class CalibrationCallback(pl.Callback):
    """Reliability diagrams (PNG + W&B image and table) each validation epoch and at test, the test one also
    after temperature scaling (the temperature the LightningModule fitted); the predictions of ``validate`` and
    ``test`` saved.

    Args:
        output_dir: the run directory (``calibration/``, ``predictions/``); ``trainer.default_root_dir`` if None.
        n_bins: equal-width bins of the diagrams (the config gives the module's ``n_bins``).
        plot_every_n_epochs: draw the validation diagram after every this many epochs (epochs n, 2n, ... counted
            from 1; 0: never); the final validation and the test always draw theirs.
        temperature_scaling: draw the test diagram after temperature scaling too (the module's ``temperature``).
        save_predictions: write ``predictions/<split>.npz`` after ``trainer.validate`` and ``trainer.test``.
        predictions_max_values: skip saving a split whose logits hold more than this many values (N · K).
        figures: draw the diagrams (PNG, W&B image) and the test confusion matrix; False: the diagrams' CSV and W&B
            table only.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        n_bins: int = DEFAULT_BINS,
        plot_every_n_epochs: int = 1,
        temperature_scaling: bool = True,
        save_predictions: bool = True,
        predictions_max_values: int = DEFAULT_PREDICTIONS_MAX_VALUES,
        figures: bool = True,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.n_bins = whole_number("n_bins", n_bins, 1, "the bins of the calibration errors")
        self.plot_every_n_epochs = whole_number(
            "callbacks.calibration.plot_every_n_epochs", plot_every_n_epochs, 0, "0: the final diagrams only"
        )
        self.temperature_scaling = temperature_scaling
        self.save_predictions = save_predictions
        self.predictions_max_values = whole_number("predictions_max_values", predictions_max_values, 0, "values N·K")
        self.figures = figures
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.val_logits: torch.Tensor | None = None
        self.val_target: torch.Tensor | None = None
        self.temperature: float | None = None  # the module's, read at test end
        self.predictions: dict[str, str] = {}  # split -> the file written, or why it was skipped

    def run_record(self) -> dict[str, Any]:
        """``predictions.<split>``: the saved file relative to the run directory, or why it was skipped."""
        return {f"predictions.{split}": what for split, what in sorted(self.predictions.items())}

    # -- collecting --------------------------------------------------------------------------------------
    def _collect(self, outputs: Any) -> None:
        if isinstance(outputs, dict) and "logits" in outputs and "target" in outputs:
            # Kept on the device until the epoch ends: no host synchronisation per batch.
            self._batches.append((outputs["logits"].detach().float(), outputs["target"].detach()))

    def _gathered(self, dataloaders: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        batches, self._batches = self._batches, []
        if not batches:
            return None
        logits = gather_across_processes(torch.cat([b[0] for b in batches]))
        target = gather_across_processes(torch.cat([b[1] for b in batches]))
        sampler = dataloaders.sampler if isinstance(dataloaders, DataLoader) else None  # several: left as gathered
        return in_dataset_order(logits, sampler), in_dataset_order(target, sampler)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._collect(outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(outputs)

    # -- validation --------------------------------------------------------------------------------------
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        gathered = self._gathered(trainer.val_dataloaders)
        if gathered is None:
            return
        self.val_logits, self.val_target = gathered
        final = trainer.state.fn == TrainerFn.VALIDATING
        every = self.plot_every_n_epochs
        if final or (every and (trainer.current_epoch + 1) % every == 0):
            # the final validation evaluates a checkpoint (train.py's best, eval.py's given): the trainer's epoch
            # count is then the end of fit, not the checkpoint's epoch
            title = "validation, evaluated checkpoint" if final else f"validation, epoch {trainer.current_epoch}"
            self._publish(trainer, "val", {"val": (title, gathered[0])}, gathered[1])
        if final:
            self._save_predictions(trainer, "val", *gathered)

    # -- test --------------------------------------------------------------------------------------------
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on_test_epoch_end: callbacks' epoch-end hooks run before the module's, which fits the temperature.
        gathered = self._gathered(trainer.test_dataloaders)
        if gathered is None:
            return
        logits, target = gathered
        curves = {"test": ("test", logits)}
        scaled = self.temperature_scaling and isinstance(pl_module, TestedClassifier)
        self.temperature = pl_module.temperature if scaled else None
        if self.temperature is not None:  # None: no validation before this test (the module says so)
            curves["test_ts"] = (f"test, temperature {self.temperature:.3f}", logits / self.temperature)
        self._publish(trainer, "test", curves, target)
        self._publish_confusion(trainer, pl_module)
        self._save_predictions(trainer, "test", logits, target)

    # -- output ------------------------------------------------------------------------------------------
    def _run_directory(self, trainer: pl.Trainer) -> RunDirectory:
        return RunDirectory(self.output_dir or trainer.default_root_dir)

    def _save_predictions(self, trainer: pl.Trainer, split: str, logits: torch.Tensor, target: torch.Tensor) -> None:
        if not self.save_predictions:
            return
        run = self._run_directory(trainer)
        values = logits.numel()
        if values > self.predictions_max_values:
            self.predictions[split] = (
                f"skipped: {logits.shape[0]} x {logits.shape[1]} = {values} values > predictions_max_values = "
                f"{self.predictions_max_values}"
            )
            if trainer.is_global_zero:
                log.warning(
                    "Not saving %s: %s (callbacks.calibration.predictions_max_values).",
                    run.predictions(split),
                    self.predictions[split],
                )
            return
        if trainer.is_global_zero:
            write_predictions(run.predictions(split), logits, target)
        self.predictions[split] = run.predictions(split).relative_to(run.root).as_posix()

    @rank_zero_only
    def _publish_confusion(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The module's test confusion matrix (``test_confusion_matrix``, synchronised over processes) as
        ``confusion_matrix.png`` and the W&B image ``test/confusion_matrix``; skipped with one warning line on
        failure, as the diagrams."""
        if not isinstance(pl_module, TestedClassifier) or pl_module.test_confusion_matrix is None or not self.figures:
            return
        counts = pl_module.test_confusion_matrix
        try:
            names = pl_module.specification.class_names if pl_module.specification is not None else None
            figure = confusion_figure(np.asarray(counts), names, title="test")
            png = save_figure_atomic(figure, self._run_directory(trainer).confusion_matrix_png, dpi=110)
            for logger in trainer.loggers:
                if is_wandb(logger):
                    logger.log_image(key="test/confusion_matrix", images=[str(png)])
        except Exception as error:  # as _publish: a figure never fails a run, a full disk does
            if is_disk_full(error):
                raise
            reason = (str(error).splitlines() or [""])[0]
            log.warning("Skipped the test confusion matrix: %s: %s", type(error).__name__, reason)

    @rank_zero_only
    def _publish(
        self, trainer: pl.Trainer, split: str, curves: dict[str, tuple[str, torch.Tensor]], target: torch.Tensor
    ) -> None:
        """The diagram of ``curves`` (CSV split name -> panel title, logits), side by side, its CSV and W&B image
        and table; anything that fails here skips the diagram with one warning line and never fails the run."""
        try:
            rows = {
                name: binned_statistics(*confidences_and_correct(logits, target), self.n_bins)
                for name, (_, logits) in curves.items()
            }
            panels = {title: rows[name] for name, (title, _) in curves.items()}
            run = self._run_directory(trainer)
            png = (
                save_figure_atomic(reliability_figure(panels), run.reliability_png(split), dpi=110)
                if self.figures
                else None
            )
            write_text_atomic(run.reliability_csv(split), bins_csv_text(rows))
            for logger in trainer.loggers:
                if is_wandb(logger):
                    if png is not None:
                        logger.log_image(key=f"{split}/reliability_diagram", images=[str(png)])
                    rows_table = bins_table_rows(rows)
                    logger.log_table(key=f"{split}/reliability_bins", columns=list(BIN_COLUMNS), data=rows_table)
        except Exception as error:  # a figure never fails a trained run; a full disk stops it (nothing else saves)
            if is_disk_full(error):
                raise
            reason = (str(error).splitlines() or [""])[0]
            log.warning("Skipped the %s reliability diagram: %s: %s", split, type(error).__name__, reason)
