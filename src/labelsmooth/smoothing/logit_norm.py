"""Logit normalisation, LogitNorm (Wei, Xie, Cheng, Feng, An, Li, ICML 2022, "Mitigating Neural Network
Overconfidence with Logit Normalization")."""

from __future__ import annotations

import math

import torch

from labelsmooth.smoothing.base import TakesMixedTargets, class_index_cross_entropy, float32_log_softmax
from labelsmooth.smoothing.parameters import RealParameter

# Added to the norm so that all-zero logits give zero normalised logits (the authors' constant).
NORM_FLOOR = 1e-7


class LogitNormalization(TakesMixedTargets):
    """LogitNorm (Wei et al., ICML 2022, Eq. 5): cross entropy of the logits scaled to the norm ``1/τ``,

        ``loss = CE(ẑ, y)``, ``ẑ = z / (τ · (‖z‖₂ + 1e-7))``,

    so training cannot lower the loss by growing the logits' norm, only by their direction. ``τ > 0`` (the
    authors' CIFAR-10 setting, 0.04). The normalisation is the training loss's alone: the model predicts
    ``softmax(z)`` of its raw logits, which the validation / test metrics, reliability diagrams and temperature
    scaling read, as the authors evaluate calibration and confidence (``net(x)``, in their ``common/ood_tools.py``).
    Under MixUp / CutMix the loss is the soft-target cross entropy ``-Σ_k q_k log softmax(ẑ)_k`` of the mixed
    target ``q``.

    No value of ``τ`` is plain cross entropy (every ``τ`` fixes the logits' norm), so ``unsmoothed`` declares
    nothing: a report compares LogitNorm with ``smoothing=none``, and ``two_stage`` has no value to switch to.
    """

    temperature = RealParameter(0.0, math.inf, low_inclusive=False, high_inclusive=False)

    def __init__(self, num_classes: int, temperature: float = 0.04) -> None:
        super().__init__(num_classes)
        self.temperature = temperature

    def normalized_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``z / (τ · (‖z‖₂ + 1e-7))`` of float32 logits (norm over the class dimension)."""
        norms = torch.linalg.vector_norm(logits, dim=-1, keepdim=True) + NORM_FLOOR
        return logits / (norms * self.temperature)

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return class_index_cross_entropy(self.normalized_logits(logits), target)

    def compute_mixed_loss(self, logits: torch.Tensor, mixed_target: torch.Tensor) -> torch.Tensor:
        return -(mixed_target * float32_log_softmax(self.normalized_logits(logits))).sum(dim=-1).mean()
