"""Proper scores and the predictive entropy, per sample and as means, from (N, K) log-probabilities (torch).

With ``log p = log_softmax(z)`` and true classes ``y``:

* negative log-likelihood ``-log p_y`` (nats);
* multiclass Brier score (Brier 1950) ``Σ_k (p_k - [k = y])² = Σ_k p_k² - 2 p_y + 1``, in [0, 2], without a dense
  one-hot;
* predictive entropy ``-Σ_k p_k log p_k`` (nats; not a score, but the same kind of per-sample mean).

torchmetrics has no multiclass NLL or Brier score. The ``*_per_sample`` functions take log-probabilities so that a
caller computes one log-softmax for all of them (``labelsmooth.calibration.metrics``); ``negative_log_likelihood``
and ``brier_score`` take logits and return the mean.

>>> probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
>>> round(float(brier_score(probs.log(), torch.tensor([0, 1]))), 4)  # ((.09 + .04 + .01) + (.01 + .81 + .64)) / 2
0.8
>>> round(float(negative_log_likelihood(probs.log(), torch.tensor([0, 1]))), 4)  # -(log 0.7 + log 0.1) / 2
1.3296
"""

from __future__ import annotations

import torch


def true_class_log_prob(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log p_{y_i}`` of each sample."""
    return log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)


def nll_per_sample(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-log p_{y_i}``."""
    return -true_class_log_prob(log_probs, target)


def brier_per_sample(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``Σ_k p_ik² - 2 p_{i y_i} + 1``."""
    return log_probs.exp().square().sum(dim=-1) - 2.0 * true_class_log_prob(log_probs, target).exp() + 1.0


def entropy_per_sample(log_probs: torch.Tensor) -> torch.Tensor:
    """``-Σ_k p_ik log p_ik``."""
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def negative_log_likelihood(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean NLL of (N, K) logits, computed in float32 and averaged in float64."""
    return nll_per_sample(logits.float().log_softmax(dim=-1), target).double().mean()


def brier_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean multiclass Brier score of (N, K) logits, computed in float32 and averaged in float64."""
    return brier_per_sample(logits.float().log_softmax(dim=-1), target).double().mean()
