"""The LightningModule: a network, a smoothing strategy and the accuracy / calibration metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from labelsmooth.calibration.metrics import classification_metrics
from labelsmooth.errors import ConfigurationError
from labelsmooth.models.l2_penalty import L2Terms, apply_l2_penalties, l2_penalty

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class FrozenTeacher:
    """A trained network that only gives logits: eval mode, frozen parameters, no gradient. A plain attribute of
    the student, not a child module, so it is in none of the student's ``state_dict`` (checkpoints),
    ``parameters()`` (optimizer), ``train()`` switches or DDP wrapper; it follows the device and parameter dtype of
    the student (``like``) when called (Lightning converts the student alone under ``*-true`` precisions)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net.eval().requires_grad_(False)

    def __call__(self, inputs: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        probe = next(self.net.parameters(), None)
        if probe is not None and (probe.device != like.device or probe.dtype != like.dtype):
            self.net.to(device=like.device, dtype=like.dtype)
        with torch.no_grad():
            return self.net(inputs)


class LabelSmoothingClassifier(pl.LightningModule):
    """Trains ``net`` with the loss ``criterion(logits, target)`` (a smoothing strategy).

    Validation and test use the unsmoothed metrics of ``labelsmooth.calibration.metrics`` (accuracy, NLL, ECE, MCE,
    Brier) logged as ``val/<metric>`` and ``test/<metric>``, plus ``val/acc_best``, the best validation
    accuracy so far (the paper's reported number), and ``val/acc_best_epoch``, the 0-based epoch that reached it
    (the last epoch when the run was still improving). They read the strategy's ``prediction_logits(z)``, logits
    whose softmax is the model's predictive distribution (``z`` itself for softmax strategies; ``logsigmoid(z)``
    for sigmoid heads, whose normalised one-vs-rest probabilities are the distribution), and so do the callbacks
    that receive the step outputs (reliability diagrams, temperature scaling). ``optimizer`` and ``scheduler`` are
    partials (Hydra ``_partial_: true``) completed with the parameters / optimizer here. A network that needs
    per-group optimizer settings exposes ``optimizer_param_groups()``; a group's ``l2`` entry (Keras' L2 on
    convolution kernels) is applied as ``labelsmooth.models.l2_penalty`` says, the same under any optimizer.

    Distillation (``teacher`` and ``distillation`` given): the training loss is
    ``distillation(criterion loss, student logits, teacher logits)`` (``labelsmooth.smoothing.distillation``), the
    teacher run on the same (augmented) batches, in eval mode, without gradient, under the same autocast as the
    student; both sides read through their strategy's ``prediction_logits``. The teacher is held outside the
    student's modules (``FrozenTeacher``), so it is in neither the checkpoints nor the optimizer.
    ``teacher_record`` (the teacher's checkpoint and strategy) goes to ``metrics.json`` with ``run_record()``.
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
        teacher: nn.Module | None = None,
        distillation: nn.Module | None = None,
        teacher_record: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (teacher is None) != (distillation is None):
            raise ValueError("distillation needs both a teacher network and a distillation loss (or neither)")
        if augment is not None and not callable(getattr(criterion, "mixed_target_loss", None)):
            raise ConfigurationError(
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
        # The 0-based epoch at which val_acc_best last improved during fit (None before the first validation), in
        # checkpoints through on_save_checkpoint / on_load_checkpoint.
        self.val_acc_best_epoch: int | None = None
        self.l2_in_loss: L2Terms = []  # L2 penalties the optimizer's weight decay cannot express (AdamW)
        self.teacher = FrozenTeacher(teacher) if teacher is not None else None
        self.distillation = distillation
        self.teacher_record = dict(teacher_record or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The criterion's ``prediction_logits`` (float32); the logits in float32 for a criterion without one."""
        convert = getattr(self.criterion, "prediction_logits", None)
        return convert(logits) if callable(convert) else logits.float()

    def run_record(self) -> dict[str, Any]:
        """The module's ``metrics.json`` entries: ``val/acc_best_epoch`` (the 0-based epoch of fit's best validation
        accuracy, once a validation ran) and, for a distillation run, ``distill.alpha``, ``distill.temperature`` and
        the ``teacher.*`` record."""
        best = {} if self.val_acc_best_epoch is None else {"val/acc_best_epoch": self.val_acc_best_epoch}
        if self.distillation is None:
            return best
        return {
            **best,
            "distill.alpha": self.distillation.alpha,
            "distill.temperature": self.distillation.temperature,
            **self.teacher_record,
        }

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
            logits = self(inputs)
            loss = self.criterion.mixed_target_loss(logits, mixed_target)
        else:
            logits = self(inputs)
            loss = self.criterion(logits, target)
        if self.teacher is not None:
            teacher_logits = self.teacher(inputs, like=next(self.net.parameters()))
            loss = self.distillation(loss, self.prediction_logits(logits), teacher_logits)
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
            self._update_best(values["val/acc"])
            values["val/acc_best"] = self.val_acc_best.compute()
            if self.val_acc_best_epoch is not None:
                values["val/acc_best_epoch"] = float(self.val_acc_best_epoch)
        # torchmetrics has already reduced the values over processes; sync_dist only quiets Lightning.
        self.log("val/acc", values.pop("val/acc"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)

    def _update_best(self, accuracy: torch.Tensor) -> None:
        """``val_acc_best`` and ``val_acc_best_epoch``. Fit's validations count; a validation outside fit counts only
        where there is no best yet (a fresh or reset metric, as in the evaluation app), so evaluating the best
        checkpoint after fit (``trainer.validate(ckpt_path=best)``) keeps fit's best and its epoch."""
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        if not fitting and torch.isfinite(self.val_acc_best.max_value):
            return
        if fitting and accuracy > self.val_acc_best.max_value:  # strictly, as ModelCheckpoint(mode="max")
            self.val_acc_best_epoch = self.current_epoch
        self.val_acc_best.update(accuracy)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_acc_best_epoch"] = self.val_acc_best_epoch

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed fit continues from the checkpoint's; loading the best checkpoint after fit keeps fit's own.
        if self.val_acc_best_epoch is None:
            self.val_acc_best_epoch = checkpoint.get("val_acc_best_epoch")

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
