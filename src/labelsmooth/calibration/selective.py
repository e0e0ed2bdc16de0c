"""Selective classification: the risk–coverage curve, AURC and AUGRC of a confidence score (numpy only).

A selective classifier answers only on the samples it is most confident about. Sort the N samples by confidence,
most confident first; at coverage ``i/N`` it answers the first ``i`` of them, and with ``E_i`` the number of errors
among those ``i`` (``E_0 = 0``):

* selective risk ``r_i = E_i / i`` (the risk–coverage curve, Geifman & El-Yaniv 2017, "Selective classification
  for deep neural networks");
* AURC ``= 1/N Σ_{i=1..N} E_i / i``, the area under the risk–coverage curve as the mean of the selective risk over
  the N operating points (Geifman et al. 2019, "Bias-reduced uncertainty estimation for deep neural classifiers");
* AUGRC, the area under the generalised risk–coverage curve (Traub et al. 2024, "Overcoming common flaws in the
  evaluation of selective classification systems", NeurIPS): the generalised risk at coverage ``i/N`` is
  ``E_i / N``, the probability that a sample is both answered and wrong, and the area is taken by trapezoids over
  the coverages ``0, 1/N, …, 1`` from the point ``(0, 0)``, as their reference code (FD-Shifts,
  ``generalized_risk_stats`` and ``evaluate_auc``) does::

      AUGRC = Σ_{i=1..N} 1/N · (E_{i-1} + E_i) / (2N) = (Σ_{i=1..N} E_i - E_N / 2) / N².

  (The mean ``1/N Σ_i E_i / N`` of the generalised risk, which this module gave before, is a right Riemann sum:
  it exceeds the paper's value by ``err / (2N)``, ``err = E_N / N`` the error rate.)

Lower is better for both. Conventions of torch-uncertainty (``AURC``, ``AUGRC``), where they differ: it breaks ties
by its sort order, and takes the trapezoid over the coverages ``1/N … 1`` only, rescaled by ``1 / (1 - 1/N)``, so
its AURC is ``1/(N-1) Σ_{i=1..N-1} (r_i + r_{i+1}) / 2 = (Σ_i r_i - (r_1 + r_N) / 2) / (N - 1)`` and its AUGRC
``(Σ_i E_i - (E_1 + E_N) / 2) / (N (N - 1))``; both agree with the values here to ``O(1/N)``.

Temperature scaling keeps each prediction but not, for K > 2 classes, the ranking of the max-softmax confidences
across samples: ``max_k softmax(z / T)_k = 1 / Σ_k exp(-(z_max - z_k) / T)`` weighs the margins differently at
each T (eleven classes: logits (1, 0, …, 0) against (0.5, 0, -100, …, -100) have confidences 0.21 < 0.62 at
T = 1 but 0.94 > 0.92 at T = 0.2). So AURC and AUGRC do change under temperature scaling (for K = 2 they do not:
the confidence is then increasing in the one margin).

Ties in confidence (common when float32 softmax saturates at 1): the samples of a group of equal confidence enter
together, and ``E_i`` inside the group is interpolated linearly, i.e. the group's errors are spread evenly over its
positions. This is the expectation over all orderings of the tied samples, so every value here depends on the
multiset of ``(confidence, correct)`` pairs only, not on the order the samples arrive in (under DDP they arrive
interleaved). For AUGRC it is exactly Traub et al.'s curve, which has one point per distinct confidence
(threshold) and is linear between them. torchmetrics has neither AURC nor AUGRC, hence they are written here.

Imports numpy only (no torch), so the report can use it.

>>> import numpy as np
>>> coverage, risk = risk_coverage_curve(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, True]))
>>> coverage.tolist(), risk.round(4).tolist()
([0.25, 0.5, 0.75, 1.0], [0.0, 0.5, 0.3333, 0.25])
>>> round(aurc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 1])), 6)  # (0 + 1/2 + 1/3 + 1/4) / 4
0.270833
>>> augrc(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 1]))  # E = (0, 1, 1, 1): (3 - 1/2) / 16
0.15625
>>> augrc(np.array([0.5, 0.5]), np.array([1, 0]))  # a tie: one step from (0, 0) to (1, 1/2), area 1/4
0.25
"""

from __future__ import annotations

import numpy as np

from labelsmooth.errors import check_outcomes


def _as_pairs(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct)
    if confidence.ndim != 1 or correct.shape != confidence.shape:
        raise ValueError(
            f"confidence and correct must be 1-D arrays of the same length, got shapes {confidence.shape} and "
            f"{correct.shape}"
        )
    check_outcomes(correct)
    return confidence, correct.astype(np.float64)


def cumulative_errors(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``E_i`` for ``i = 1..N``: the number of errors among the ``i`` most confident samples (float64), ties
    interpolated as the module docstring says. NaN everywhere if a confidence is NaN."""
    confidence, correct = _as_pairs(confidence, correct)
    n = confidence.size
    if np.isnan(confidence).any():
        return np.full(n, np.nan)
    order = np.argsort(-confidence, kind="stable")
    sorted_confidence, errors = confidence[order], 1.0 - correct[order]
    starts = np.flatnonzero(np.r_[True, sorted_confidence[1:] != sorted_confidence[:-1]])
    sizes = np.diff(np.r_[starts, n])
    errors_before = np.r_[0.0, np.cumsum(errors)][starts]  # errors of the more confident groups
    group_errors = np.add.reduceat(errors, starts) if n else np.zeros(0)
    group = np.repeat(np.arange(starts.size), sizes)
    position_in_group = np.arange(n) - starts[group] + 1  # 1..size
    return errors_before[group] + position_in_group * group_errors[group] / sizes[group]


def risk_coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage ``i/N`` and selective risk ``E_i / i`` for ``i = 1..N`` (the most confident answered first).

    ``confidence`` (N,) is any score where higher means more confident (max softmax here); ``correct`` (N,) is
    boolean or 0/1. Both returned arrays are float64 of length N (empty for N = 0).
    """
    errors = cumulative_errors(confidence, correct)
    answered = np.arange(1, errors.size + 1, dtype=np.float64)
    return answered / max(errors.size, 1), errors / answered


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk–coverage curve, the mean selective risk ``1/N Σ_{i=1..N} E_i / i`` (Geifman & El-Yaniv
    2017; Geifman et al. 2019); NaN for N = 0. torch-uncertainty's ``AURC`` is the trapezoid over coverages
    ``1/N … 1`` rescaled by ``1 / (1 - 1/N)``, ``(Σ_i r_i - (r_1 + r_N) / 2) / (N - 1)``, ties in its sort order."""
    _, risk = risk_coverage_curve(confidence, correct)
    return float(risk.mean()) if risk.size else float("nan")


def augrc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the generalised risk–coverage curve (Traub et al. 2024): the trapezoids under the generalised
    risk ``E_i / N`` over the coverages ``0, 1/N, …, 1`` from ``(0, 0)``, ``(Σ_{i=1..N} E_i - E_N / 2) / N²``;
    NaN for N = 0. torch-uncertainty's ``AUGRC`` starts at coverage ``1/N`` instead and rescales by
    ``1 / (1 - 1/N)``: ``(Σ_i E_i - (E_1 + E_N) / 2) / (N (N - 1))``, ties in its sort order."""
    errors = cumulative_errors(confidence, correct)
    n = errors.size
    if not n:
        return float("nan")
    return float((errors.sum() - errors[-1] / 2) / n / n)


# Post-hoc logit normalisation for selective classification (Xia et al. 2025).
#: The p grid: 1..10 and ∞ (``math.inf``), as in Cattelan & Silva's p-NormSoftmax search (their p = 0, no
#: normalisation, is the plain max logit and is left out: the unnormalised baseline here is the max softmax).
LOGNORM_P_GRID: tuple[float, ...] = (*(float(p) for p in range(1, 11)), float("inf"))


def lognorm_confidence(logits: np.ndarray, p: float) -> np.ndarray:
    """The confidence of post-hoc logit normalisation, ``max_k z̄_k / ‖z̄‖_p`` with ``z̄ = z - mean_k z_k``.

    Source: Xia, Laurent, Franchi & Bouganis, "Towards understanding why label smoothing degrades selective
    classification and how to fix it" (ICLR 2025), Section 5, who recover the selective classification lost to label
    smoothing with the logit normalisation of Cattelan & Silva ("How to fix a broken confidence estimator:
    evaluating post-hoc methods for selective classification with deep neural networks", UAI 2024): the logits are
    centred (their mean over the K classes subtracted), divided by their p-norm, and the confidence is the max of
    the normalised logits (MaxLogit-pNorm). The max softmax of the normalised logits divided by a temperature τ
    (p-NormSoftmax) ranks the samples alike in the τ → 0 limit of Cattelan & Silva; only the ranking matters to AURC
    and AUGRC. p is a hyperparameter picked on held-out data (``choose_lognorm_p``). Our reading of the papers, the
    centring in particular, follows Cattelan & Silva's reference code; the scale of the confidence is not
    meaningful, only its order. ``logits`` (N, K); returns (N,) float64; a row of equal logits gets 0, a row with a
    NaN or infinite logit NaN (as its NLL).

    With two classes the centred logits are ``(-d/2, d/2)`` and the confidence is ``2^(-1/p)`` whatever ``d ≠ 0``: it
    ranks nothing, and its AURC is the error rate (the tie rule of ``cumulative_errors``). It is computed as that
    constant, so that rounding (the last bits of ``d/2`` over its norm) does not rank the samples and pick a p.

    >>> lognorm_confidence(np.array([[2.0, 0.0, -2.0], [1.0, 1.0, 1.0]]), 2).round(4).tolist()  # 2 / √8
    [0.7071, 0.0]
    >>> lognorm_confidence(np.array([[3.0, 0.0, 0.0]]), float("inf")).round(4).tolist()  # centred (2, -1, -1)
    [1.0]
    >>> lognorm_confidence(np.array([[0.3, -1.1], [5.0, 7.0], [1.0, 1.0], [np.nan, 0.0]]), 2).round(4).tolist()
    [0.7071, 0.7071, 0.0, nan]
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {z.shape}")
    z = z - z.mean(axis=1, keepdims=True)
    if z.shape[1] == 2:
        confidence = np.where(z[:, 0] != 0, 2.0 ** (-1.0 / p), 0.0)
    else:
        norm = np.linalg.norm(z, ord=p, axis=1)
        top = z.max(axis=1) if z.shape[1] else np.zeros(z.shape[0])
        confidence = np.divide(top, norm, out=np.zeros_like(top), where=norm > 0)
    return np.where(np.isfinite(z).all(axis=1), confidence, np.nan)


def choose_lognorm_p(
    logits: np.ndarray, target: np.ndarray, grid: tuple[float, ...] = LOGNORM_P_GRID
) -> tuple[float, float]:
    """``(p, AURC)``: the p of ``grid`` whose ``lognorm_confidence`` has the lowest AURC on these (validation) logits
    and targets (Xia et al. 2025 pick p on the validation set by selective classification performance); ties go to
    the first p of the grid. The prediction is the argmax of the raw logits (normalisation does not change it).

    >>> z = np.array([[4.0, 0.0, 0.0], [1.0, 0.9, -5.0], [2.0, 1.9, 1.8]])
    >>> choose_lognorm_p(z, np.array([0, 1, 0]))[0]
    1.0
    """
    logits = np.asarray(logits, dtype=np.float64)
    correct = logits.argmax(axis=1) == np.asarray(target)
    scores = [(aurc(lognorm_confidence(logits, p), correct), i) for i, p in enumerate(grid)]
    best, index = min(scores, key=lambda s: (np.inf if np.isnan(s[0]) else s[0], s[1]))
    return float(grid[index]), float(best)
