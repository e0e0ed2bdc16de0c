"""Bootstrapping (Reed et al. 2014, "Training Deep Neural Networks on Noisy Labels with Bootstrapping"):
the target mixes the given label with the network's own current prediction.

* soft: ``q = β·onehot(y) + (1 - β)·p``
* hard: ``q = β·onehot(y) + (1 - β)·onehot(argmax_k p_k)``

``loss = -Σ_k q_k log p_k``. Reed et al. used ``β = 0.95`` (soft) and ``β = 0.8`` (hard).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing.base import HasTargetDistribution
from labelsmooth.smoothing.parameters import RealParameter


class BootstrapStrategy(HasTargetDistribution):
    """Shared part of the two bootstrapping targets: ``q = β·hard + (1 - β)·prediction_target(logits)``.

    The target depends on the prediction, so ``target_distribution(target, num_classes, logits=...)`` needs the
    logits (the contract's two-argument form raises ``ValueError`` saying so); the training loss always has them.
    """

    beta = RealParameter(0.0, 1.0, unsmoothed=1.0)

    def __init__(self, num_classes: int, beta: float) -> None:
        super().__init__(num_classes)
        self.beta = beta

    def prediction_target(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def smooth(self, hard_target: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        if logits is None:
            raise ValueError(f"{type(self).__name__}'s target depends on the prediction: pass logits=")
        return self.beta * hard_target.float() + (1.0 - self.beta) * self.prediction_target(logits.float())


class SoftBootstrapping(BootstrapStrategy):
    """Soft bootstrapping, ``q = β·onehot(y) + (1 - β)·p`` (Reed et al. 2014, §3.2).

    By default (``detach_prediction=False``) the gradient flows through ``p`` in the target too, and the loss is
    ``β·CE - (1 - β)·Σ_k p_k log p_k = β·CE + (1 - β)·H(p)``: Reed et al.'s objective, which they show to be softmax
    regression with minimum-entropy regularisation. ``detach_prediction=True`` treats ``p`` in the target as a
    constant (a cross entropy against a moving target, as some reimplementations do): another objective.
    """

    options = ("detach_prediction",)

    def __init__(self, num_classes: int, beta: float = 0.95, detach_prediction: bool = False) -> None:
        super().__init__(num_classes, beta)
        if not isinstance(detach_prediction, bool):
            raise ConfigurationError(f"smoothing.detach_prediction={detach_prediction!r} must be true or false.")
        self.detach_prediction = detach_prediction

    def prediction_target(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits, dim=-1)
        return probs.detach() if self.detach_prediction else probs


class HardBootstrapping(BootstrapStrategy):
    """Hard bootstrapping, ``q = β·onehot(y) + (1 - β)·onehot(argmax_k p_k)`` (Reed et al. 2014, §3.2).

    The argmax has no gradient, so the target is a constant either way (there is nothing to detach).
    """

    def __init__(self, num_classes: int, beta: float = 0.8) -> None:
        super().__init__(num_classes, beta)

    def prediction_target(self, logits: torch.Tensor) -> torch.Tensor:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
