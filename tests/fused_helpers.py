"""A callback that records every training step's loss (a fused group's: every member's), for the equality tests, and
a strategy with a learned parameter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from labelsmooth.smoothing import UniformSmoothing


class StepLosses(pl.Callback):
    """The loss of each training step: a list of floats, or of lists (one per member) for a fused group; written
    to ``path`` (JSON) when training ends, and kept in ``losses``."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.losses: list[Any] = []

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch, idx) -> None:
        if "member_losses" in outputs:
            self.losses.append([float(value) for value in outputs["member_losses"]])
        else:
            self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.path:
            Path(self.path).write_text(json.dumps(self.losses))


class LearnedScaleSmoothing(UniformSmoothing):
    """Uniform smoothing of logits times a learned scale: a strategy with a parameter of its own."""

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__(num_classes, epsilon)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().compute_loss(logits * self.scale, target)
