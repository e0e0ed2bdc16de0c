"""The distillation teacher as the student's module holds it."""

from __future__ import annotations

import torch
from torch import nn


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
