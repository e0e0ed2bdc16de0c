"""The LightningModule: a network, a smoothing strategy and the accuracy / calibration metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from labelsmooth.metrics import classification_metrics
from labelsmooth.models.l2_penalty import L2Terms, apply_l2_penalties, l2_penalty

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class LabelSmoothingClassifier(pl.LightningModule):
    """Trains ``net`` with the loss ``criterion(logits, target)`` (a smoothing strategy).

    Validation and test use the unsmoothed metrics of ``labelsmooth.metrics`` (accuracy, NLL, ECE, MCE,
    Brier) logged as ``val/<metric>`` and ``test/<metric>``, plus ``val/acc_best``, the best validation
    accuracy so far (the paper's reported number). They read the strategy's ``prediction_logits(z)``, logits
    whose softmax is the model's predictive distribution (``z`` itself for softmax strategies; ``logsigmoid(z)``
    for sigmoid heads, whose normalised one-vs-rest probabilities are the distribution), and so do the callbacks
    that receive the step outputs (reliability diagrams, temperature scaling). ``optimizer`` and ``scheduler`` are
    partials (Hydra ``_partial_: true``) completed with the parameters / optimizer here. A network that needs
    per-group optimizer settings exposes ``optimizer_param_groups()``; a group's ``l2`` entry (Keras' L2 on
    convolution kernels) is applied as ``labelsmooth.models.l2_penalty`` says, the same under any optimizer.
    """

    def __init__(
        self,
        net: nn.Module,
        criterion: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if augment is not None and not callable(getattr(criterion, "mixed_target_loss", None)):
            raise ValueError(
                f"The batch augment {type(augment).__name__} mixes targets, but the smoothing strategy "
                f"{type(criterion).__name__} has no target distribution to smooth a mixed target with (it has no "
                "mixed_target_loss). Use augment=none, or a strategy with a target (README: Smoothing strategies)."
            )
        self.net = net
        self.criterion = criterion
        self.augment = augment
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.num_classes = int(num_classes)
        # nan_strategy='disable': no per-step `isnan(x).any()` host sync (a NaN loss shows in the epoch mean,
        # and the NaN guard callback stops the run).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_metrics = classification_metrics(self.num_classes, prefix="val/")
        self.test_metrics = classification_metrics(self.num_classes, prefix="test/")
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # saved in checkpoints, so a resumed run keeps its best accuracy
        self.l2_in_loss: L2Terms = []  # L2 penalties the optimizer's weight decay cannot express (AdamW)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The criterion's ``prediction_logits`` (float32); the logits in float32 for a criterion without one."""
        convert = getattr(self.criterion, "prediction_logits", None)
        return convert(logits) if callable(convert) else logits.float()

    def _end_criterion_epoch(self) -> None:
        # Stateful strategies (online label smoothing) turn the epoch's statistics into their next targets.
        hook = getattr(self.criterion, "on_train_epoch_end", None)
        if callable(hook):
            hook()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the epoch's last batch, before validation and the epoch's checkpoint: the checkpoint then holds
        # the new targets and no per-process statistics (under DDP only rank 0's would be saved).
        if batch_idx + 1 == self.trainer.num_training_batches:
            self._end_criterion_epoch()

    def on_train_epoch_start(self) -> None:
        # A no-op after the hook above; applies the statistics of data of unknown length and of older checkpoints.
        self._end_criterion_epoch()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, target = batch
        if self.augment is not None:  # MixUp / CutMix: mix first, then the strategy smooths the mixed target once
            inputs, mixed_target = self.augment(inputs, target)
            loss = self.criterion.mixed_target_loss(self(inputs), mixed_target)
        else:
            loss = self.criterion(self(inputs), target)
        self.train_loss.update(loss.detach())  # update, not forward: no per-step batch value (logged per epoch)
        if self.l2_in_loss:
            loss = loss + l2_penalty(self.l2_in_loss)
        return loss

    def on_train_epoch_end(self) -> None:
        # The epoch's mean loss, logged once per epoch: a per-step self.log costs ~0.5 ms of Lightning
        # bookkeeping per step on a small CPU (bench/RESULTS.md). compute() has already reduced over processes.
        self.log("train/loss", self.train_loss.compute(), prog_bar=True, sync_dist=True)
        self.train_loss.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        inputs, target = batch
        logits = self.prediction_logits(self(inputs))
        self.val_metrics.update(logits, target)
        # Handed to callbacks' on_validation_batch_end (reliability diagrams, temperature scaling).
        return {"logits": logits.detach(), "target": target}

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        if not self.trainer.sanity_checking:  # the check before training does not count towards the best
            self.val_acc_best.update(values["val/acc"])
            values["val/acc_best"] = self.val_acc_best.compute()
        # torchmetrics has already reduced the values over processes; sync_dist only quiets Lightning.
        self.log("val/acc", values.pop("val/acc"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        inputs, target = batch
        logits = self.prediction_logits(self(inputs))
        self.test_metrics.update(logits, target)
        return {"logits": logits.detach(), "target": target}

    def on_test_epoch_end(self) -> None:
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict(values, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        groups = getattr(self.net, "optimizer_param_groups", None)
        optimizer = self.optimizer_factory(groups() if callable(groups) else self.parameters())
        self.l2_in_loss = apply_l2_penalties(optimizer)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
