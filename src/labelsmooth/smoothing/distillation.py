"""Knowledge distillation (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network").

The student's logits ``s`` are trained on the hard targets and on the teacher's logits ``t``::

    loss = (1 - α)·L(s, y) + α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ))

with ``L`` the hard-target loss (cross entropy ``CE(s, y)`` in Hinton et al. and in Müller, Kornblith and Hinton
2019, §4, "When does label smoothing help?"; here the loss of the configured strategy, which is cross entropy for
``smoothing=none``). ``τ²`` keeps the soft term's gradients on the scale of the hard term's as ``τ`` grows (Hinton
et al. §2). ``α = 0`` is the hard-target loss alone, ``α = 1`` the teacher's soft targets alone. The KL term is the
mean over the batch of ``Σ_k p_t,k (log p_t,k − log p_s,k)``, computed in float32 with autocast disabled, like
every strategy's loss; the teacher's logits carry no gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from labelsmooth.errors import ConfigurationError
from labelsmooth.smoothing.base import in_float32


def tempered_kl_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(t/τ) ‖ softmax(s/τ))``, the mean over the batch, in float32 (call with autocast disabled)."""
    student_log_p = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    teacher_log_p = torch.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    return F.kl_div(student_log_p, teacher_log_p, reduction="batchmean", log_target=True)


class DistillationLoss(nn.Module):
    """``(1 - α)·hard_loss + α·τ²·KL(softmax(t/τ) ‖ softmax(s/τ))`` (see the module docstring).

    Args:
        alpha: weight of the teacher's term, in [0, 1] (``distill.alpha``).
        temperature: ``τ > 0``, the softmax temperature of both distributions in the KL term
            (``distill.temperature``).
    """

    def __init__(self, alpha: float = 0.5, temperature: float = 4.0) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
            raise ConfigurationError(f"distill.alpha={alpha!r} must be a number in [0, 1] (the teacher term's weight)")
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ConfigurationError(f"distill.temperature={temperature!r} must be a finite number > 0")
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def forward(
        self, hard_loss: torch.Tensor, student_logits: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        if student_logits.dim() != 2:  # batchmean divides by the first dimension: (K,) would be averaged over K
            raise ValueError(f"the logits must be (N, K), got shape {tuple(student_logits.shape)}")
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"the teacher's logits have shape {tuple(teacher_logits.shape)}, the student's "
                f"{tuple(student_logits.shape)}: teacher and student must predict the same classes"
            )
        soft = in_float32(tempered_kl_divergence, student_logits, teacher_logits, self.temperature)
        return (1.0 - self.alpha) * hard_loss + self.alpha * self.temperature**2 * soft

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}"
