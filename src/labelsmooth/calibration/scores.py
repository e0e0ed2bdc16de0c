"""Proper scores and the predictive entropy, per sample and as means, from (N, K) log-probabilities (torch).

With ``log p = log_softmax(z)`` and true classes ``y``:

* negative log-likelihood ``-log p_y`` (nats);
* multiclass Brier score (Brier 1950, "Verification of forecasts expressed in terms of probability")
  ``Σ_k (p_k - [k = y])² = (1 - p_y)² + Σ_{k≠y} p_k²``, in [0, 2], with ``1 - p_y`` taken as ``Σ_{k≠y} p_k``
  (without a dense one-hot). Both terms are then sums of the small probabilities, each to its own relative
  precision, whereas the expanded ``Σ_k p_k² - 2 p_y + 1`` (this module's formula before) cancels as ``p_y → 1``,
  and ``1 - p_y`` of a float32 ``p_y`` keeps only the absolute precision 6e-8 of ``p_y``: on confident float32
  predictions the expanded form was 0.9 % low at a score of 8.3e-7, and 0 at 5.6e-13 (``brier_per_sample``).
  torch-uncertainty's ``BrierScore`` (the default, not ``top_class``) is the same quantity, computed as
  ``Σ_k (p_k - [k = y])²`` on the probabilities it is given (``mse_loss`` against the one-hot), so on float32
  probabilities its ``1 - p_y`` is that of the rounded ``p_y``;
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

import warnings

import torch

from labelsmooth.errors import check_class_indices


def check_logits(logits: torch.Tensor, target: torch.Tensor, owner: str) -> None:
    """``labelsmooth.errors.check_class_indices`` of ``owner``'s inputs, and a warning where CPU ``logits`` look
    like probabilities (non-negative rows that sum to 1): the metrics take logits (or log-probabilities), and a
    second softmax of probabilities changes every value (an ECE of 0.18 read as 0.55)."""
    check_class_indices(logits, target, owner=owner)
    warn_of_probabilities(logits, owner)


def warn_of_probabilities(logits: torch.Tensor, owner: str, stacklevel: int = 4) -> None:
    """The warning of ``check_logits`` where CPU ``logits`` look like probabilities (``stacklevel``: the caller's
    caller's frame, the user's call of ``owner``)."""
    if logits.device.type != "cpu" or not logits.numel() or logits.shape[1] < 2 or bool(logits.min() < 0):
        return
    if torch.allclose(logits.double().sum(dim=-1), torch.ones((), dtype=torch.float64), atol=1e-4):
        warnings.warn(
            f"{owner}: every row of the logits is non-negative and sums to 1, as probabilities do; it takes "
            "logits (or log-probabilities), and applies the softmax itself",
            stacklevel=stacklevel,
        )


def true_class_log_prob(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log p_{y_i}`` of each sample."""
    return log_probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1)


def nll_per_sample(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-log p_{y_i}``."""
    return -true_class_log_prob(log_probs, target)


def brier_per_sample(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(Σ_{k≠y_i} p_ik)² + Σ_{k≠y_i} p_ik²``: the Brier score with ``1 - p_{i y_i}`` as the sum of the other
    probabilities, which does not cancel as ``p_{i y_i} → 1`` (module docstring).

    >>> log_probs = torch.tensor([[0.0, -15.0, -15.0]]).log_softmax(-1)  # float32, p_y = 1 - 6.1e-7
    >>> float(brier_per_sample(log_probs, torch.tensor([0])))  # float64 of the same logits: 5.61457e-13
    5.61456...e-13
    >>> float(log_probs.exp().square().sum(-1) - 2 * log_probs[:, 0].exp() + 1)  # expanded: cancels
    0.0
    """
    classes = torch.arange(log_probs.shape[-1], device=log_probs.device)
    others = log_probs.exp().masked_fill(classes == target.long().unsqueeze(-1), 0.0)  # p_ik, 0 at k = y_i
    return others.sum(dim=-1).square() + others.square().sum(dim=-1)


def entropy_per_sample(log_probs: torch.Tensor) -> torch.Tensor:
    """``-Σ_k p_ik log p_ik``, with ``0 · log 0 = 0`` (a class masked by a logit of -inf adds nothing).

    >>> entropy_per_sample(torch.tensor([[0.0, 0.0, float("-inf")]]).log_softmax(-1))
    tensor([0.6931])
    """
    probs = log_probs.exp()
    return -torch.where(probs != 0, probs * log_probs, 0.0).sum(dim=-1)  # a NaN row stays NaN


def negative_log_likelihood(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean NLL of (N, K) logits, computed in float32 and averaged in float64."""
    check_logits(logits, target, "negative_log_likelihood")
    return nll_per_sample(logits.float().log_softmax(dim=-1), target).double().mean()


def brier_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean multiclass Brier score of (N, K) logits, computed in float32 and averaged in float64."""
    check_logits(logits, target, "brier_score")
    return brier_per_sample(logits.float().log_softmax(dim=-1), target).double().mean()
