"""Stop training at the first non-finite loss, before a poisoned checkpoint can be written."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Watches the training loss; raises ``NonFiniteLossError`` naming the first bad step and likely causes.

    The check is kept on the device (no host sync per step): the first non-finite step is recorded in a
    device tensor and read back every ``check_every_n_steps`` steps and always before validation, which is
    where checkpoints are written, so the last checkpoint on disk is always a finite one.
    """

    def __init__(self, check_every_n_steps: int = 10) -> None:
        super().__init__()
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps={check_every_n_steps} must be >= 1")
        self.check_every_n_steps = int(check_every_n_steps)
        self._first_bad_step: torch.Tensor | None = None
        self._bad_loss: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach()
        step = trainer.global_step
        if self._first_bad_step is None or self._first_bad_step.device != loss.device:
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        bad_now = ~torch.isfinite(loss) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(bad_now, torch.as_tensor(step, device=loss.device), self._first_bad_step)
        self._bad_loss = torch.where(bad_now, loss.float(), self._bad_loss)
        if step % self.check_every_n_steps == 0:
            self._raise_if_bad(trainer)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.training or trainer.state.fn == "fit":
            self._raise_if_bad(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._raise_if_bad(trainer)

    def _raise_if_bad(self, trainer: pl.Trainer) -> None:
        if self._first_bad_step is None:
            return
        first_bad = int(self._first_bad_step.item())
        if first_bad < 0:
            return
        value = float(self._bad_loss.item())
        precision = str(trainer.precision)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        lr = optimizer.param_groups[0].get("lr") if optimizer else None
        checkpoint = trainer.checkpoint_callback
        last = getattr(checkpoint, "last_model_path", "") or getattr(checkpoint, "best_model_path", "")
        raise NonFiniteLossError(
            f"the training loss became {value} at global step {first_bad} (epoch {trainer.current_epoch}). "
            f"Likely causes: a learning rate too high (optimizer.lr={lr}), "
            + (
                f"overflow in half precision (trainer.precision={precision}; try bf16-mixed or 32), "
                if "16" in precision
                else ""
            )
            + "or diverging inputs. "
            + (
                f"The last good checkpoint is kept: start from it with a lower learning rate via ckpt_path={last}"
                if last
                else "No checkpoint had been written yet."
            )
        )
