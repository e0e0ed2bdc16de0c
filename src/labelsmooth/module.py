"""The LightningModule: a network, a smoothing strategy and the accuracy / calibration metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from labelsmooth.calibration.metrics import PredictionLogits, classification_metrics
from labelsmooth.calibration.temperature import fit_temperature, temperature_scaled_metrics
from labelsmooth.errors import ConfigurationError
from labelsmooth.models.l2_penalty import L2Terms, apply_l2_penalties, l2_penalty
from labelsmooth.smoothing import SmoothingStrategy, TakesMixedTargets
from labelsmooth.specification import SPECIFICATION_KEY, RunSpecification

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def _as_set(gathered: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``PredictionLogits.compute()`` as (N, K) logits and (N,) targets (torchmetrics squeezes a one-sample set)."""
    logits, target = gathered
    target = target.reshape(-1)
    return logits.reshape(target.numel(), -1), target


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
    for sigmoid heads, whose normalised one-vs-rest probabilities are the distribution), and so do temperature
    scaling and the callbacks that receive the step outputs (reliability diagrams, saved predictions). At test epoch
    end the module fits the temperature on the latest validation epoch's logits (gathered over DDP processes; Guo et
    al. 2017) and logs ``temperature`` and ``test/<m>_ts`` for ``labelsmooth.calibration.temperature.SCALED_METRICS``
    (skipped, with an info line, when no validation ran before the test); ``temperature`` stays readable as an
    attribute (the calibration callback's scaled diagram). ``n_bins`` equal-width (and equal-mass) bins serve every
    binned metric and its ``_ts`` form. ``optimizer`` and ``scheduler`` are
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
        criterion: SmoothingStrategy,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        augment: nn.Module | None = None,
        teacher: nn.Module | None = None,
        distillation: nn.Module | None = None,
        teacher_record: Mapping[str, Any] | None = None,
        n_bins: int = 15,
    ) -> None:
        super().__init__()
        if (teacher is None) != (distillation is None):
            raise ValueError("distillation needs both a teacher network and a distillation loss (or neither)")
        if augment is not None and not isinstance(criterion, TakesMixedTargets):
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
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise ConfigurationError(f"n_bins={n_bins!r} must be an integer >= 1 (the bins of the calibration errors)")
        self.n_bins = n_bins
        self.val_metrics = classification_metrics(self.num_classes, prefix="val/", n_bins=n_bins)
        self.test_metrics = classification_metrics(self.num_classes, prefix="test/", n_bins=n_bins)
        # Temperature scaling: the prediction logits of the latest validation epoch (the held-out set) and of the
        # test epoch, gathered over processes at test epoch end; not in checkpoints (non-persistent states).
        self.val_predictions = PredictionLogits()
        self.test_predictions = PredictionLogits()
        self.has_val_predictions = False  # a validation epoch (not the sanity check) has filled val_predictions
        self.temperature: float | None = None  # fitted at test epoch end; None without a validation before test
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # saved in checkpoints, so a resumed run keeps its best accuracy
        # The 0-based epoch at which val_acc_best last improved during fit (None before the first validation), in
        # checkpoints through on_save_checkpoint / on_load_checkpoint.
        self.val_acc_best_epoch: int | None = None
        self.l2_in_loss: L2Terms = []  # L2 penalties the optimizer's weight decay cannot express (AdamW)
        self.teacher = FrozenTeacher(teacher) if teacher is not None else None
        self.distillation = distillation
        self.teacher_record = dict(teacher_record or {})
        # What the checkpoints carry to rebuild this module without its run (``from_specification``).
        self.specification: RunSpecification | None = None

    @classmethod
    def from_specification(
        cls,
        specification: RunSpecification,
        criterion: SmoothingStrategy | None = None,
        teacher: nn.Module | None = None,
        distillation: nn.Module | None = None,
        teacher_record: Mapping[str, Any] | None = None,
    ) -> LabelSmoothingClassifier:
        """The module a run specification describes, freshly initialised; ``criterion`` replaces the strategy the
        specification would build (a run builds it once, before its data is read)."""
        module = cls(
            net=specification.build_network(),
            criterion=criterion if criterion is not None else specification.build_strategy(),
            optimizer=specification.build_optimizer_factory(),
            num_classes=specification.num_classes,
            scheduler=specification.build_scheduler_factory(),
            augment=specification.build_augment(),
            teacher=teacher,
            distillation=distillation,
            teacher_record=teacher_record,
            n_bins=specification.n_bins,
        )
        module.specification = specification
        return module

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path, map_location: Any = None, strict: bool = True, **_: Any
    ) -> LabelSmoothingClassifier:
        """The trained module of a checkpoint, in eval mode, from the run specification the checkpoint carries (no
        run directory, config or Hydra needed); ready for ``predict``. Weights load with ``weights_only=True``.

        >>> model = LabelSmoothingClassifier.load_from_checkpoint("model.ckpt", map_location="cpu")  # doctest: +SKIP
        >>> model.predict(images)  # raw images as the data set stores them  # doctest: +SKIP
        """
        from labelsmooth.runs.checkpoints import load_checkpoint

        checkpoint = load_checkpoint(checkpoint_path)
        module = cls.from_specification(RunSpecification.from_checkpoint(checkpoint, checkpoint_path))
        module.load_state_dict(checkpoint["state_dict"], strict=strict)
        module.on_load_checkpoint(checkpoint)
        if map_location is not None:
            module.to(torch.device(map_location) if isinstance(map_location, str) else map_location)
        return module.eval()

    def prepare_inputs(self, images: Any) -> torch.Tensor:
        """Raw images as the data set stores them → network inputs, as the run's data module prepares them.

        ``images``: a tensor or array of uint8 pixels (scaled to ``input_range`` and normalised with the training
        split's statistics, as in training) or of floats (used as they are, as the data module uses float
        batches); ``(N, C, H, W)``, channels-last ``(N, H, W, C)``, ``(N, H, W)`` for one channel, or one image.
        """
        from labelsmooth.data.preprocess import BatchPreprocessor

        if self.specification is None:
            raise RuntimeError(
                "predict needs the run specification: load the model with "
                "LabelSmoothingClassifier.load_from_checkpoint(path) or build it with from_specification"
            )
        batch = as_image_batch(images, self.specification.image_shape)
        if batch.dtype == torch.uint8 and self.specification.preprocessing is not None:
            preprocessor = BatchPreprocessor.from_record(self.specification.preprocessing)
            batch = preprocessor(batch.to(self.device), train=False)
        return batch.to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def predict_proba(self, images: Any) -> torch.Tensor:
        """The predictive distribution (N, K) of raw images (``prepare_inputs``): the softmax of the strategy's
        ``prediction_logits``, with the network in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.prediction_logits(self(self.prepare_inputs(images))).softmax(dim=-1)
        finally:
            self.train(was_training)

    def predict(self, images: Any) -> torch.Tensor:
        """The predicted class index of each raw image (``predict_proba``'s argmax), shape (N,)."""
        return self.predict_proba(images).argmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def prediction_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The strategy's ``prediction_logits`` (float32): logits whose softmax is the predictive distribution."""
        return self.criterion.prediction_logits(logits)

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
        self.criterion.on_train_epoch_end()

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
        if not self.trainer.sanity_checking:
            self.val_predictions.update(logits, target)  # kept on the device: no host synchronisation
        # Handed to callbacks' on_validation_batch_end (reliability diagrams, saved predictions).
        return {"logits": logits.detach(), "target": target}

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:  # the sanity check keeps the latest validation's logits
            self.val_predictions.reset()
            self.has_val_predictions = False

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        if not self.trainer.sanity_checking:  # the check before training does not count towards the best
            self.has_val_predictions = True
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
        if self.specification is not None:
            checkpoint[SPECIFICATION_KEY] = self.specification.to_checkpoint()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed fit continues from the checkpoint's; loading the best checkpoint after fit keeps fit's own.
        if self.val_acc_best_epoch is None:
            self.val_acc_best_epoch = checkpoint.get("val_acc_best_epoch")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        inputs, target = batch
        logits = self.prediction_logits(self(inputs))
        self.test_metrics.update(logits, target)
        if self.has_val_predictions:  # only kept when there is a temperature to fit
            self.test_predictions.update(logits, target)
        return {"logits": logits.detach(), "target": target}

    def on_test_epoch_start(self) -> None:
        self.test_predictions.reset()

    def on_test_epoch_end(self) -> None:
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict(values, sync_dist=True)
        scaled = self._temperature_scaling()
        if scaled:  # plain floats, equal on every process (fitted on the same gathered logits)
            self.log_dict(scaled, sync_dist=True)

    def _temperature_scaling(self) -> dict[str, float]:
        """``temperature``, fitted by NLL on the latest validation epoch's logits (Guo et al. 2017, ``fit_temperature``;
        in ``train`` and ``evaluate`` that is ``trainer.validate`` on the best checkpoint, just before ``test``), and
        ``test/<m>_ts`` for each of ``SCALED_METRICS`` on the test logits divided by it, over ``n_bins`` bins. Both
        sets are gathered over DDP processes. Without a validation before the test: nothing (one info line)."""
        self.temperature = None
        if not self.has_val_predictions:
            self.test_predictions.reset()
            if self.trainer.is_global_zero:
                log.info("No validation before this test: no temperature fitted, the test/*_ts metrics are skipped.")
            return {}
        val_logits, val_target = _as_set(self.val_predictions.compute())
        test_logits, test_target = _as_set(self.test_predictions.compute())
        self.test_predictions.reset()
        self.temperature = fit_temperature(val_logits, val_target)
        scaled = temperature_scaled_metrics(test_logits, test_target, self.temperature, self.n_bins)
        return {"temperature": self.temperature, **{f"test/{name}_ts": value for name, value in scaled.items()}}

    def configure_optimizers(self) -> dict[str, Any]:
        groups = getattr(self.net, "optimizer_param_groups", None)
        optimizer = self.optimizer_factory(groups() if callable(groups) else self.parameters())
        self.l2_in_loss = apply_l2_penalties(optimizer)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}


def as_image_batch(images: Any, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """``images`` as an ``(N, C, H, W)`` tensor of the data's ``image_shape``: from ``(N, C, H, W)``, channels-last
    ``(N, H, W, C)``, ``(N, H, W)`` when ``C = 1``, or a single image in any of these layouts; its dtype kept."""
    batch = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    channels, height, width = image_shape
    shape = tuple(batch.shape)
    if batch.dim() == 3 and channels == 1 and shape[1:] == (height, width):
        batch = batch.unsqueeze(1)  # (N, H, W)
    elif shape in {(channels, height, width), (height, width, channels)}:
        batch = batch.unsqueeze(0)
    elif channels == 1 and shape == (height, width):
        batch = batch[None, None]
    if batch.dim() == 4 and tuple(batch.shape[1:]) == (height, width, channels) != image_shape:
        batch = batch.permute(0, 3, 1, 2)
    if batch.dim() != 4 or tuple(batch.shape[1:]) != image_shape:
        raise ValueError(
            f"images of shape {tuple(batch.shape)} do not fit the model's inputs {image_shape} (channels, height, "
            "width): give (N, C, H, W), (N, H, W, C), (N, H, W) for one channel, or one image"
        )
    return batch.contiguous()
