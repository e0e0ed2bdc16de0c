"""Reliability diagrams and temperature scaling as a Lightning callback.

The scalar calibration metrics (ECE, adaptive ECE, MCE, RMS, Brier, confidence, entropy) are logged by the
LightningModule's metric collection. This callback needs the logits themselves: the module's
``validation_step`` / ``test_step`` return ``{"logits", "target"}``, which arrive here in
``on_*_batch_end``. Those logits are the strategy's ``prediction_logits``, whose softmax is the model's
predictive distribution (for sigmoid heads ``logsigmoid(z)``: the normalised one-vs-rest probabilities), the same
distribution the logged metrics read. Per evaluation epoch the callback gathers them over DDP processes and

* validation (not the sanity check): draws the reliability diagram with its confidence histogram
  (15 equal-width bins) to ``<output_dir>/calibration/reliability_val.png`` (the latest epoch), logs it to
  W&B as ``val/reliability_diagram`` and the per-bin numbers as the W&B table ``val/reliability_bins``;
  it keeps the logits of the latest validation epoch;
* test: fits one temperature on those validation logits by NLL (Guo et al. 2017; in ``train`` and
  ``evaluate`` the latest validation is ``trainer.validate`` on the best checkpoint, just before ``test``),
  logs ``temperature``, ``test/nll_ts``, ``test/ece_ts``, ``test/ace_ts``, ``test/brier_ts`` (they land in
  ``metrics.json``), and draws the test diagrams before and after scaling side by side
  (``calibration/reliability_test.png`` and ``.csv``; W&B ``test/reliability_diagram``, ``test/reliability_bins``).

The PNG and CSV files are written with any logger (W&B, CSV, none); images and tables go to W&B only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn

from labelsmooth.calibration import (
    DEFAULT_BINS,
    CalibrationBin,
    binned_statistics,
    confidences_and_correct,
    fit_temperature,
    temperature_scaled_metrics,
)
from labelsmooth.reliability import save_reliability_figure
from labelsmooth.run_outputs import write_text_atomic

BIN_COLUMNS = ["split", "lower", "upper", "count", "accuracy", "confidence"]


def gather_across_processes(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (its first dimension may differ per process) from every DDP process; on CPU."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor.cpu()
    from torchmetrics.utilities.distributed import gather_all_tensors

    return torch.cat([part.cpu() for part in gather_all_tensors(tensor.contiguous())])


def write_bins_csv(path: Path, rows: dict[str, list[CalibrationBin]]) -> Path:
    """Per-bin numbers of each split (``val``, ``test``, ``test_ts``) as CSV: ``BIN_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(BIN_COLUMNS)
    for split, bins in rows.items():
        for b in bins:
            writer.writerow([split, b.lower, b.upper, b.count, b.accuracy, b.confidence])
    return write_text_atomic(path, buffer.getvalue())


class CalibrationCallback(pl.Callback):
    """Reliability diagrams (PNG + W&B image and table) each validation epoch and at test; temperature
    scaling fitted on the latest validation logits and evaluated at test.

    Args:
        output_dir: where ``calibration/`` goes (the run directory); ``trainer.default_root_dir`` if None.
        n_bins: equal-width bins of the diagrams and of the ECE after temperature scaling.
        plot_every_n_epochs: draw the validation diagram every this many epochs (0: never; test always).
        temperature_scaling: fit and report the temperature at test.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        n_bins: int = DEFAULT_BINS,
        plot_every_n_epochs: int = 1,
        temperature_scaling: bool = True,
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.n_bins = n_bins
        self.plot_every_n_epochs = plot_every_n_epochs
        self.temperature_scaling = temperature_scaling
        self._batches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.val_logits: torch.Tensor | None = None
        self.val_target: torch.Tensor | None = None
        self.temperature: float | None = None

    # -- collecting --------------------------------------------------------------------------------------
    def _collect(self, outputs: Any) -> None:
        if isinstance(outputs, dict) and "logits" in outputs and "target" in outputs:
            # Kept on the device until the epoch ends: no host synchronisation per batch.
            self._batches.append((outputs["logits"].detach().float(), outputs["target"].detach()))

    def _gathered(self, pl_module: pl.LightningModule) -> tuple[torch.Tensor, torch.Tensor] | None:
        batches, self._batches = self._batches, []
        if not batches:
            return None
        logits = torch.cat([b[0] for b in batches])
        target = torch.cat([b[1] for b in batches])
        return gather_across_processes(logits), gather_across_processes(target)

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
        gathered = self._gathered(pl_module)
        if gathered is None:
            return
        self.val_logits, self.val_target = gathered
        every = self.plot_every_n_epochs
        if every and (trainer.current_epoch % every == 0 or trainer.state.fn != TrainerFn.FITTING):
            bins = binned_statistics(*confidences_and_correct(*gathered), self.n_bins)
            self._publish(trainer, "val", {"val": bins}, {f"validation, epoch {trainer.current_epoch}": bins})

    # -- test --------------------------------------------------------------------------------------------
    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        gathered = self._gathered(pl_module)
        if gathered is None:
            return
        logits, target = gathered
        rows = {"test": binned_statistics(*confidences_and_correct(logits, target), self.n_bins)}
        panels = {"test": rows["test"]}
        if self.temperature_scaling:
            if self.val_logits is None:
                rank_zero_warn("CalibrationCallback: no validation logits to fit a temperature on; skipped.")
            else:
                self.temperature = fit_temperature(self.val_logits, self.val_target)
                scaled = temperature_scaled_metrics(logits, target, self.temperature, self.n_bins)
                pl_module.log("temperature", self.temperature, sync_dist=True)
                for name, value in scaled.items():
                    pl_module.log(f"test/{name}_ts", value, sync_dist=True)
                rows["test_ts"] = binned_statistics(
                    *confidences_and_correct(logits / self.temperature, target), self.n_bins
                )
                panels[f"test, temperature {self.temperature:.3f}"] = rows["test_ts"]
        self._publish(trainer, "test", rows, panels)

    # -- output ------------------------------------------------------------------------------------------
    def _directory(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir or trainer.default_root_dir) / "calibration"

    @rank_zero_only
    def _publish(
        self,
        trainer: pl.Trainer,
        split: str,
        rows: dict[str, list[CalibrationBin]],
        panels: dict[str, list[CalibrationBin]],
    ) -> None:
        directory = self._directory(trainer)
        png = save_reliability_figure(
            {t: [b.as_dict() for b in bins] for t, bins in panels.items()}, directory / f"reliability_{split}.png"
        )
        write_bins_csv(directory / f"reliability_{split}.csv", rows)
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                logger.log_image(key=f"{split}/reliability_diagram", images=[str(png)])
                data = [
                    [name, b.lower, b.upper, b.count, b.accuracy, b.confidence]
                    for name, bins in rows.items()
                    for b in bins
                ]
                logger.log_table(key=f"{split}/reliability_bins", columns=BIN_COLUMNS, data=data)
