"""Stop training at the first non-finite loss, before a poisoned checkpoint can be written."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from labelsmooth.errors import ConfigurationError, LabelsmoothError


class NonFiniteLossError(LabelsmoothError, FloatingPointError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Watches the training loss; raises ``NonFiniteLossError`` naming the first bad step and likely causes.

    No host sync and no tensor operation per step: the losses of the last steps are kept (as device scalars)
    and checked together every ``check_every_n_steps`` steps and always before validation, which is where
    checkpoints are written, so the last checkpoint on disk is always a finite one.

    Not Lightning's own checks: ``Trainer(detect_anomaly=True)`` runs autograd's anomaly mode (slow, every step,
    and it raises from deep inside backward without the step or a hint), and ``EarlyStopping(check_finite=True)``
    watches a logged metric once per epoch, after that epoch's checkpoint may already hold non-finite weights.
    """

    def __init__(self, check_every_n_steps: int = 10) -> None:
        super().__init__()
        if check_every_n_steps < 1:
            raise ConfigurationError(f"callbacks.nan_guard.check_every_n_steps={check_every_n_steps} must be >= 1")
        self.check_every_n_steps = int(check_every_n_steps)
        self._pending_steps: list[tuple[int, int, float | None]] = []  # (global step, batch index, lr) per loss
        self._pending_losses: list[torch.Tensor] = []
        self._epoch_start_step = 0
        self._weights_checked_at = -1  # the global step the weights were last found finite at

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A batch's global step is derived from this (by on_train_batch_end the optimizer step has counted the
        # batch already): one hook per epoch rather than one more per step.
        self._epoch_start_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        step = self._epoch_start_step + batch_idx // max(int(trainer.accumulate_grad_batches), 1)
        self._pending_steps.append((step, batch_idx, _learning_rate(trainer)))  # the rate this step used
        self._pending_losses.append(loss.detach())
        if len(self._pending_losses) >= self.check_every_n_steps:
            self._raise_if_bad(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.training or trainer.state.fn == "fit":
            self._raise_if_bad(trainer)
            self._raise_if_weights_bad(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._raise_if_bad(trainer)
        self._raise_if_weights_bad(trainer, pl_module)

    def _raise_if_bad(self, trainer: pl.Trainer) -> None:
        if not self._pending_losses:
            return
        losses = torch.stack([loss.float() for loss in self._pending_losses])
        steps, self._pending_steps, self._pending_losses = self._pending_steps, [], []
        bad = ~torch.isfinite(losses)
        if not bool(bad.any()):  # the one host sync, every check_every_n_steps steps
            return
        first = int(bad.nonzero()[0, 0])
        (first_bad, batch_index, lr), value = steps[first], float(losses[first])
        raise NonFiniteLossError(
            f"the training loss became {value} at global step {first_bad} (epoch {trainer.current_epoch}, batch "
            f"{batch_index}; steps count from 0). " + _causes_and_fix(trainer, lr)
        )

    def _raise_if_weights_bad(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A step whose loss was finite can still write NaN into the weights (its update overflowed): checked once
        per epoch, before validation and the checkpoint (one fused reduction, one host sync)."""
        if trainer.global_step == self._weights_checked_at:  # validation at the epoch's end checked them already
            return
        flags = [torch.isfinite(p).all() for p in pl_module.parameters() if p.is_floating_point()]
        if not flags or bool(torch.stack(flags).all()):
            self._weights_checked_at = trainer.global_step
            return
        raise NonFiniteLossError(
            f"the weights became non-finite by global step {trainer.global_step - 1} (epoch {trainer.current_epoch}):"
            " an update overflowed although the losses were finite. "
            + _causes_and_fix(trainer, _learning_rate(trainer))
        )


def _learning_rate(trainer: pl.Trainer) -> float | None:
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    return optimizer.param_groups[0].get("lr") if optimizer else None


def _causes_and_fix(trainer: pl.Trainer, lr: float | None) -> str:
    precision = str(trainer.precision)
    checkpoint = trainer.checkpoint_callback
    last = (checkpoint.last_model_path or checkpoint.best_model_path) if isinstance(checkpoint, ModelCheckpoint) else ""
    half = (
        f"overflow in half precision (trainer.precision={precision}; try bf16-mixed or 32), "
        if "16" in precision
        else ""
    )
    kept = (
        f"The last good checkpoint is kept ({last}); ckpt_path= would continue it with its own learning rate and "
        "schedule (they are restored with the optimizer), so retrain with a lower optimizer.lr instead."
        if last
        else "No checkpoint had been written yet."
    )
    return (
        f"Likely causes: a learning rate too high (this step's learning rate: {lr}), {half}or diverging inputs. {kept}"
    )
