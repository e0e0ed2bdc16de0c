"""The learning-rate schedule of the Keras ``cifar10_resnet`` example that Mezzini (2018) trained with.

Written by hand because ``torch.optim.lr_scheduler.MultiStepLR`` multiplies by one constant ``gamma`` at each
milestone, while Keras' ``lr_schedule`` sets the rate to ``lr₀·f_i`` with per-milestone factors
(0.1, 0.01, 0.001, 0.0005 — the last step is ×0.5, not ×0.1), and ``LambdaLR`` with a lambda cannot be
checkpointed.

``learning_rates`` reads an optimizer's current rates under the names Lightning's ``LearningRateMonitor`` logs them,
for a run's ``history.csv`` (``labelsmooth.callbacks.epoch_log``) and a fused member's epoch values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from labelsmooth.errors import ConfigurationError


class KerasStepLR(LRScheduler):
    """``lr(e) = lr₀ · factors[i]`` for the last milestone ``milestones[i] < e`` (``lr₀`` before the first).

    ``e`` is the 0-based epoch, as Keras' ``LearningRateScheduler`` passes it, and the comparison is strict as
    in the example (``if epoch > 180: lr *= 0.5e-3 elif epoch > 160: ...``): with milestones 80/120/160/180 the
    rate drops from the 82nd epoch (0-based 81) on. Step it once per epoch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        milestones: Sequence[int] = (80, 120, 160, 180),
        factors: Sequence[float] = (1e-1, 1e-2, 1e-3, 5e-4),
        last_epoch: int = -1,
    ) -> None:
        if len(milestones) != len(factors) or list(milestones) != sorted(milestones):
            raise ConfigurationError("KerasStepLR: milestones must be increasing and as many as factors")
        if not all(math.isfinite(float(f)) and float(f) > 0 for f in factors) or any(int(m) < 0 for m in milestones):
            raise ConfigurationError(
                f"scheduler.factors={list(factors)} must be finite and > 0 and scheduler.milestones={list(milestones)} "
                "epochs >= 0 (a factor <= 0 turns the learning rate off or makes it climb the loss)"
            )
        self.milestones = [int(m) for m in milestones]
        self.factors = [float(f) for f in factors]
        super().__init__(optimizer, last_epoch)

    def factor(self, epoch: int) -> float:
        value = 1.0
        for milestone, factor in zip(self.milestones, self.factors, strict=True):
            if epoch > milestone:
                value = factor
        return value

    def get_lr(self) -> list[float]:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]


def learning_rates(optimizer: Optimizer) -> dict[str, float]:
    """The learning rates as Lightning's ``LearningRateMonitor`` names them: ``lr-<Optimizer>``, or with several
    parameter groups ``lr-<Optimizer>/pg<i>`` (from 1)."""
    name = f"lr-{type(optimizer).__name__}"
    groups = optimizer.param_groups
    if len(groups) == 1:
        return {name: float(groups[0]["lr"])}
    return {f"{name}/pg{i}": float(group["lr"]) for i, group in enumerate(groups, start=1)}
