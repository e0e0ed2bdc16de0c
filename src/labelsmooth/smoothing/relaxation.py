"""Label relaxation (Lienen & Hüllermeier, AAAI 2021, "From Label Smoothing to Label Relaxation")."""

from __future__ import annotations

import math

import torch

from labelsmooth.smoothing.base import SmoothingStrategy, float32_log_softmax, weighted_log_probs
from labelsmooth.smoothing.parameters import RealParameter

# Where every other class's probability underflows (p_y = 1 in float32), r is taken at the smallest normal float:
# such a sample lies in the credal set for α > 0 (loss 0), and for α = 0 its terms α·(...) stay 0, not NaN.
_SMALLEST_PROBABILITY = torch.finfo(torch.float32).tiny


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


class LabelRelaxation(SmoothingStrategy):
    """Label relaxation (Lienen, Hüllermeier, AAAI 2021, "From Label Smoothing to Label Relaxation", §3).

    The target is the credal set of distributions giving the label at least ``1 - α``; the loss is the KL
    divergence from the prediction to the closest member of that set,

        ``loss_i = 0`` where ``p_y >= 1 - α``, else ``KL(q ‖ p)`` with ``q_y = 1 - α``, ``q_k = α · p_k / (1 - p_y)``,

    averaged over the batch. ``q`` is a constant (computed from ``p`` without gradient, as in the authors' code), so
    the gradient of an active sample is ``(p - q)/N``. ``α`` in [0, 1) (the paper's 0.1); ``α = 0`` is cross
    entropy. ``1 - p_y`` is computed as the sum of the other classes' probabilities, which stays accurate where
    ``p_y`` is close to 1, and the test ``p_y >= 1 - α`` as ``log p_y >= log(1 - α)``.

    It refuses MixUp / CutMix: the credal set is defined by the probability of one label, and a mixture of two
    labels has no such lower bound in the paper (a choice of one would be a new method).
    """

    alpha = RealParameter(0.0, 1.0, high_inclusive=False, unsmoothed=0.0)

    def __init__(self, num_classes: int, alpha: float = 0.1) -> None:
        super().__init__(num_classes)
        self.alpha = alpha

    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # With r = 1 - p_y and A = Σ_{k≠y} p_k log p_k: KL(q ‖ p) = Σ_k q_k log q_k - (1 - α) log p_y - (α / r) A,
        # where Σ_k q_k log q_k = (1 - α) log(1 - α) + α log α - α log r + (α / r) A, without gradient (q is a
        # constant). r is summed from the other probabilities, accurate also where p_y is close to 1.
        alpha = self.alpha
        log_probs = float32_log_softmax(logits)
        label = target.long().unsqueeze(-1)
        true_log_prob = log_probs.gather(-1, label).squeeze(-1)
        with torch.no_grad():
            other_probs = log_probs.exp().scatter_(-1, label, 0.0)
            rest = other_probs.sum(dim=-1).clamp_min(_SMALLEST_PROBABILITY)
        weighted = weighted_log_probs(other_probs, log_probs).sum(dim=-1)  # A, with its gradient through log p
        cross_entropy = -(1.0 - alpha) * true_log_prob - (alpha / rest) * weighted  # -Σ_k q_k log p_k
        negative_entropy = _xlogx(1.0 - alpha) + _xlogx(alpha) - alpha * rest.log() + (alpha / rest) * weighted.detach()
        divergence = negative_entropy + cross_entropy
        satisfied = true_log_prob.detach() >= math.log1p(-alpha)
        return torch.where(satisfied, torch.zeros_like(divergence), divergence).mean()
