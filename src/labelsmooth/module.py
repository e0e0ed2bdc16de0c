"""The LightningModule: a network, a smoothing strategy and the accuracy / calibration metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassConfusionMatrix

from labelsmooth.calibration.confusion import per_class_accuracy, worst_class_accuracy
from labelsmooth.calibration.metrics import PredictionLogits, classification_metrics
from labelsmooth.calibration.post_hoc import post_hoc_metrics, refinement_nll
from labelsmooth.errors import whole_number
from labelsmooth.mixing import check_mixable
from labelsmooth.models.l2_penalty import HasOptimizerGroups, L2Terms, apply_l2_penalties, l2_penalty
from labelsmooth.models.teacher import FrozenTeacher
from labelsmooth.prediction import PredictsRawImages
from labelsmooth.smoothing import SmoothingStrategy
from labelsmooth.specification import SPECIFICATION_KEY, RunSpecification

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]
# What validation logs beside val/<ClassificationMetrics.NAMES> (val/nll_ts: only where a checkpoint monitors it)
VALIDATION_RECORDS = ("val/acc_best", "val/acc_best_epoch", "val/nll_ts")
STRATEGY_PARAMETERS_KEY = "strategy_parameters"  # in checkpoints: the strategy's values when it was written


def _as_set(gathered: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``PredictionLogits.compute()`` as (N, K) logits and (N,) targets (torchmetrics squeezes a one-sample set)."""
    logits, target = gathered
    return logits.reshape(target.numel(), -1), target.reshape(-1)


class LabelSmoothingClassifier(PredictsRawImages, pl.LightningModule):
    """Trains ``net`` with the loss ``criterion(logits, target)`` (a smoothing strategy).

    Validation and test use the unsmoothed metrics of ``labelsmooth.calibration.metrics`` (accuracy, NLL, ECE, MCE,
    Brier) logged as ``val/<metric>`` and ``test/<metric>``, plus ``val/acc_best``, the best validation accuracy so far
    (the paper's number; on its split with ``dataset.val_size=0``), and ``val/acc_best_epoch``, the 0-based epoch that
    reached it (the last epoch when the run was still improving). They read the strategy's ``prediction_logits(z)``,
    logits whose softmax is the predictive distribution (``z`` for softmax strategies; ``logsigmoid(z)`` for sigmoid
    heads, whose normalised one-vs-rest probabilities are the distribution), and so do temperature scaling and the
    callbacks that receive the step outputs (reliability diagrams, saved predictions). At test epoch end the module fits
    the temperature on the latest validation epoch's logits (gathered over DDP processes; Guo et al. 2017) and logs
    ``temperature`` and ``test/<m>_ts`` for ``labelsmooth.calibration.temperature.SCALED_METRICS`` (skipped, with an
    info line, when no validation ran before the test); ``temperature`` stays readable as an attribute (the calibration
    callback's scaled diagram). ``n_bins`` equal-width (and equal-mass) bins serve every binned metric and its ``_ts``
    form. ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) completed with the parameters /
    optimizer here. A network that needs per-group optimizer settings exposes ``optimizer_param_groups()``; a group's
    ``l2`` entry (Keras' L2 on convolution kernels) is applied as ``labelsmooth.models.l2_penalty`` says, the same under
    any optimizer.

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
        validation_temperature_nll: bool = False,
    ) -> None:
        super().__init__()
        if (teacher is None) != (distillation is None):
            raise ValueError("distillation needs both a teacher network and a distillation loss (or neither)")
        if augment is not None:
            check_mixable(type(augment), type(criterion))
        self.net, self.criterion, self.augment = net, criterion, augment
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.num_classes = int(num_classes)
        # nan_strategy='disable': no per-step `isnan(x).any()` host sync (a NaN loss shows in the epoch mean,
        # and the NaN guard callback stops the run).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.n_bins = whole_number("n_bins", n_bins, 1, "the bins of the calibration errors")
        self.val_metrics = classification_metrics(self.num_classes, prefix="val/", n_bins=n_bins)
        self.test_metrics = classification_metrics(self.num_classes, prefix="test/", n_bins=n_bins)
        # Per-class accuracy (``<split>/acc_per_class`` in metrics.json, ``test/acc_worst_class``) from DDP-synchronised
        # confusion matrices: rows are true classes, so a class absent from a split is None, not an accuracy of 0.
        self.val_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.val_acc_per_class: list[float | None] | None = None  # of the latest validation (not the sanity check)
        self.test_acc_per_class: list[float | None] | None = None
        self.test_confusion_matrix: torch.Tensor | None = None  # (K, K) counts of the latest test, on the CPU
        # Temperature scaling: the prediction logits of the latest validation epoch (the held-out set) and of the
        # test epoch, gathered over processes at test epoch end; not in checkpoints (non-persistent states).
        self.val_predictions = PredictionLogits()
        self.test_predictions = PredictionLogits()
        self.has_val_predictions = False  # a validation epoch (not the sanity check) has filled val_predictions
        self.temperature: float | None = None  # fitted at test epoch end; None without a validation before test
        # val/nll_ts each validation epoch (a temperature fitted on it): only when a checkpoint monitors it.
        self.validation_temperature_nll = bool(validation_temperature_nll)
        self.lognorm_p: float | None = None  # the p of the logit normalisation, chosen at test epoch end
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
        starting_weights: bool = True,
    ) -> LabelSmoothingClassifier:
        """The module a run specification describes, freshly initialised; ``criterion`` replaces the strategy the
        specification would build (a run builds it once, before its data is read); ``starting_weights=False``
        where a checkpoint's weights will replace the network's (``RunSpecification.build_network``)."""
        module = cls(
            net=specification.build_network(starting_weights),
            criterion=criterion if criterion is not None else specification.build_strategy(),
            optimizer=specification.build_optimizer_factory(),
            num_classes=specification.num_classes,
            scheduler=specification.build_scheduler_factory(),
            augment=specification.build_augment(),
            teacher=teacher,
            distillation=distillation,
            teacher_record=teacher_record,
            n_bins=specification.n_bins,
            validation_temperature_nll=specification.monitors_temperature_scaled,
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
        specification = RunSpecification.from_checkpoint(checkpoint, checkpoint_path)
        module = cls.from_specification(specification, starting_weights=False)
        module.load_state_dict(checkpoint["state_dict"], strict=strict)
        module.on_load_checkpoint(checkpoint)
        if map_location is not None:
            module.to(torch.device(map_location) if isinstance(map_location, str) else map_location)
        return module.eval()

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
        best.update(self.per_class_record())
        if self.distillation is None:
            return best
        distill = {"distill.alpha": self.distillation.alpha, "distill.temperature": self.distillation.temperature}
        return {**best, **distill, **self.teacher_record}

    def per_class_record(self) -> dict[str, Any]:
        """``val/acc_per_class`` (the latest validation: in ``train`` and ``evaluate`` the best checkpoint's) and
        ``test/acc_per_class``: lists in class order (``class_names``, where the data set names them), None for a
        class absent from the split; ``test/acc_worst_class``, their minimum over the classes present."""
        splits = {"val": self.val_acc_per_class, "test": self.test_acc_per_class}
        record: dict[str, Any] = {f"{split}/acc_per_class": v for split, v in splits.items() if v is not None}
        worst = worst_class_accuracy(self.test_acc_per_class) if self.test_acc_per_class is not None else None
        if worst is not None:
            record["test/acc_worst_class"] = worst
        if record and self.specification is not None and self.specification.class_names:
            record["class_names"] = list(self.specification.class_names)
        return record

    def _per_class_accuracy(self, confusion: MulticlassConfusionMatrix) -> tuple[torch.Tensor, list[float | None]]:
        """The (K, K) counts of ``confusion`` (synchronised, on the CPU; then reset) and ``per_class_accuracy``."""
        counts = confusion.compute().detach().cpu().long()
        confusion.reset()
        return counts, per_class_accuracy(counts.numpy())

    def end_criterion_epoch(self) -> None:
        """Stateful strategies (online label smoothing) turn the epoch's statistics into their next targets."""
        self.criterion.on_train_epoch_end()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the epoch's last batch, before validation and the epoch's checkpoint: the checkpoint then holds
        # the new targets and no per-process statistics (under DDP only rank 0's would be saved).
        if batch_idx + 1 == self.trainer.num_training_batches:
            self.end_criterion_epoch()

    def on_train_epoch_start(self) -> None:  # a no-op after the hook above, but for data of unknown length
        self.end_criterion_epoch()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, target = self.mix(*batch)
        logits = self(inputs)
        loss = self.training_loss(logits, target)
        if self.teacher is not None:
            teacher_logits = self.teacher(inputs, like=next(self.net.parameters()))
            loss = self.distillation(loss, self.prediction_logits(logits), teacher_logits)
        # once per sample: the epoch's mean over samples (torchmetrics drops `weight` under nan_strategy="disable")
        self.train_loss.update(loss.detach().expand(len(target)))  # update: no per-step value (logged per epoch)
        if self.l2_in_loss:
            loss = loss + l2_penalty(self.l2_in_loss)
        return loss

    def mix(self, inputs: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch mixing's inputs and (N, K) mixed targets (MixUp / CutMix); without one, the batch as given."""
        return self.augment(inputs, target) if self.augment is not None else (inputs, target)

    def training_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The strategy's loss; after mixing it smooths the mixed target once (``mixed_target_loss``)."""
        if self.augment is not None:
            return self.criterion.mixed_target_loss(logits, target)
        return self.criterion(logits, target)

    def on_train_epoch_end(self) -> None:
        # The epoch's mean loss, logged once per epoch: a per-step self.log costs ~0.5 ms of Lightning
        # bookkeeping per step on a small CPU (bench/RESULTS.md). compute() has already reduced over processes.
        self.log("train/loss", self.train_loss.compute(), prog_bar=True, sync_dist=True)
        self.train_loss.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        inputs, target = batch
        logits = self.prediction_logits(self(inputs))
        self.update_validation(logits, target, self.trainer.sanity_checking)
        # Handed to callbacks' on_validation_batch_end (reliability diagrams, saved predictions).
        return {"logits": logits.detach(), "target": target}

    def update_validation(self, logits: torch.Tensor, target: torch.Tensor, sanity_checking: bool) -> None:
        """One validation batch's prediction logits into the metrics (a fused group calls it for each member)."""
        self.val_metrics.update(logits, target)
        self.val_confusion.update(logits, target)
        if not sanity_checking:
            self.val_predictions.update(logits, target)  # kept on the device: no host synchronisation

    def on_validation_epoch_start(self) -> None:
        self.start_validation(self.trainer.sanity_checking)

    def start_validation(self, sanity_checking: bool) -> None:
        if not sanity_checking:  # the sanity check keeps the latest validation's logits
            self.val_predictions.reset()
            self.has_val_predictions = False

    def on_validation_epoch_end(self) -> None:
        fitting = self.trainer.state.fn == TrainerFn.FITTING
        values = self.end_validation(self.trainer.sanity_checking, fitting, self.current_epoch)
        # torchmetrics has already reduced the values over processes; sync_dist only quiets Lightning.
        self.log("val/acc", values.pop("val/acc"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)

    def end_validation(self, sanity_checking: bool, fitting: bool, epoch: int) -> dict[str, Any]:
        """The validation epoch's values (``val/*``, ``val/acc_best`` and its epoch); of the sanity check's, which are
        discarded, only ``val/acc`` (the others, the smooth ECE's bandwidth search among them, would delay the first
        step)."""
        if sanity_checking:
            self.val_metrics.reset()
            counts, _ = self._per_class_accuracy(self.val_confusion)
            return {"val/acc": (counts.diag().sum() / counts.sum().clamp(min=1)).float()}
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        _, self.val_acc_per_class = self._per_class_accuracy(self.val_confusion)
        self.has_val_predictions = True
        values.update(self._validation_nll_ts())
        self._update_best(values["val/acc"], fitting, epoch)
        values["val/acc_best"] = self.val_acc_best.compute()
        if self.val_acc_best_epoch is not None:
            values["val/acc_best_epoch"] = float(self.val_acc_best_epoch)
        return values

    def _update_best(self, accuracy: torch.Tensor, fitting: bool, epoch: int) -> None:
        """``val_acc_best`` and ``val_acc_best_epoch``. Fit's validations count; a validation outside fit counts only
        where there is no best yet (a fresh or reset metric, as in the evaluation app), so evaluating the best
        checkpoint after fit (``trainer.validate(ckpt_path=best)``) keeps fit's best and its epoch."""
        if not fitting and torch.isfinite(self.val_acc_best.max_value):
            return
        if fitting and accuracy > self.val_acc_best.max_value:  # strictly, as ModelCheckpoint(mode="max")
            self.val_acc_best_epoch = epoch
        self.val_acc_best.update(accuracy)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_acc_best_epoch"] = self.val_acc_best_epoch
        checkpoint[STRATEGY_PARAMETERS_KEY] = self.criterion.numeric_parameters()  # a schedule's latest values
        if self.specification is not None:
            checkpoint[SPECIFICATION_KEY] = self.specification.to_checkpoint()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed fit continues from the checkpoint's best; an evaluation after fit keeps fit's, the run's best
        if self.val_acc_best_epoch is None:
            self.val_acc_best_epoch = checkpoint.get("val_acc_best_epoch")
        if self._trainer is None or self.trainer.state.fn != TrainerFn.FITTING:  # the values its epoch trained with
            self.criterion.restore_parameters(checkpoint.get(STRATEGY_PARAMETERS_KEY, {}))
            if torch.isfinite(best := self.val_acc_best.max_value) and "state_dict" in checkpoint:
                checkpoint["state_dict"]["val_acc_best.max_value"] = best.detach().clone()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        inputs, target = batch
        logits = self.prediction_logits(self(inputs))
        self.test_metrics.update(logits, target)
        self.test_confusion.update(logits, target)
        if self.has_val_predictions:  # only kept when there is a temperature to fit
            self.test_predictions.update(logits, target)
        return {"logits": logits.detach(), "target": target}

    def on_test_epoch_start(self) -> None:
        self.test_predictions.reset()

    def on_test_epoch_end(self) -> None:
        self._log_per_class_test()
        values = self.test_metrics.compute()
        self.test_metrics.reset()
        self.log_dict(values, sync_dist=True)
        scaled = self._temperature_scaling()
        if scaled:  # plain floats, equal on every process (fitted on the same gathered logits)
            self.log_dict(scaled, sync_dist=True)

    def _log_per_class_test(self) -> None:
        """The test confusion matrix and per-class accuracy (``per_class_record``); ``test/acc_worst_class`` logged."""
        self.test_confusion_matrix, self.test_acc_per_class = self._per_class_accuracy(self.test_confusion)
        worst = self.per_class_record().get("test/acc_worst_class")
        if worst is not None:  # equal on every process (from the synchronised matrix)
            self.log("test/acc_worst_class", float(worst), sync_dist=True)

    def _temperature_scaling(self) -> dict[str, float]:
        """The post-hoc metrics of the test logits given the latest validation epoch's (``post_hoc_metrics``:
        ``temperature`` and ``test/<m>_ts``, ``lognorm_p`` and ``test/a(u)(g)rc_lognorm``); in ``train`` and
        ``evaluate`` that validation is ``trainer.validate`` on the best checkpoint, just before ``test``. Both sets
        are gathered over DDP processes. Without a validation before the test: nothing (one info line)."""
        self.temperature = self.lognorm_p = None
        if not self.has_val_predictions:
            self.test_predictions.reset()
            if self.trainer.is_global_zero:
                log.info("No validation before this test: no temperature fitted, the test/*_ts metrics are skipped.")
            return {}
        val_logits, val_target = _as_set(self.val_predictions.compute())
        test_logits, test_target = _as_set(self.test_predictions.compute())
        self.test_predictions.reset()
        values = post_hoc_metrics(val_logits, val_target, test_logits, test_target, self.n_bins)
        self.temperature, self.lognorm_p = values["temperature"], values["lognorm_p"]
        return values

    def _validation_nll_ts(self) -> dict[str, float]:
        """``val/nll_ts`` (``refinement_nll``: the validation NLL after temperature scaling, Berta et al. 2025's
        proxy for selecting a checkpoint); empty unless ``validation_temperature_nll`` (something monitors it)."""
        if not self.validation_temperature_nll:
            return {}
        return {"val/nll_ts": refinement_nll(*_as_set(self.val_predictions.compute()))}

    def configure_optimizers(self) -> dict[str, Any]:
        return self.optimization(lambda parameter: parameter)

    def optimization(self, stored: Callable[[nn.Parameter], nn.Parameter]) -> dict[str, Any]:
        """The optimizer (and scheduler) of the network's parameters, each ``stored(p)`` (a fused group passes the
        stacked tensor that holds ``p``), in the network's ``optimizer_param_groups()`` where it has them."""
        if isinstance(self.net, HasOptimizerGroups):
            groups = self.net.optimizer_param_groups()
            parameters: Any = [{**group, "params": [stored(p) for p in group["params"]]} for group in groups]
        else:
            parameters = [stored(p) for p in self.parameters()]
        optimizer = self.optimizer_factory(parameters)
        self.l2_in_loss = apply_l2_penalties(optimizer)
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}
