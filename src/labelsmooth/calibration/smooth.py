"""Smooth ECE (smECE) of the top-1 confidence against correctness, by ``relplot`` (Błasiok & Nakkiran 2023).

smECE replaces the bins of the ECE by a kernel: with the residuals ``r_i = c_i - a_i`` smoothed by a Gaussian
kernel of bandwidth σ, reflected at 0 and 1, ``r̂_σ(t) = Σ_i K_σ(t, c_i) r_i / Σ_i K_σ(t, c_i)`` and the smoothed
density ``δ̂_σ(t) ∝ Σ_i K_σ(t, c_i)``,

    smECE_σ = ∫ |r̂_σ(t)| δ̂_σ(t) dt,

at the bandwidth σ* that solves ``smECE_σ = σ`` (found by bisection). Unlike the binned ECE it is continuous in
the predictions and consistent, with no bin count to choose (Błasiok & Nakkiran 2023, "Smooth ECE: principled
reliability diagrams via kernel smoothing"). Their package ``relplot`` is the reference implementation and is
used as is (``relplot.smECE``: the kernel is applied on a grid of ``max(2000, 20/σ) // 2 + 1`` >= 1001 points and
the integral summed over ``max(200, 10/σ)`` points); it is a core dependency
(it brings pandas, seaborn, matplotlib and scikit-learn) and is imported on first use.

>>> import numpy as np
>>> round(smooth_ece(np.full(1000, 0.9), np.r_[np.ones(600), np.zeros(400)]), 3)  # |0.9 - 0.6|
0.3
"""

from __future__ import annotations

import numpy as np


def smooth_ece(confidence: np.ndarray, correct: np.ndarray) -> float:
    """smECE (``relplot.smECE``) of confidences in [0, 1] against outcomes in {0, 1}, both (N,); NaN for N = 0
    or a non-finite confidence."""
    try:
        import relplot
    except ImportError as error:  # pragma: no cover - relplot is a core dependency
        raise ImportError(
            "smooth_ece needs the relplot package (Błasiok & Nakkiran's smECE), a dependency of labelsmooth: "
            "pip install relplot"
        ) from error
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence has {confidence.size} values but correct {correct.size}")
    import torch

    from labelsmooth.calibration.binning import check_confidences

    check_confidences(torch.from_numpy(confidence), torch.from_numpy(correct), "smooth_ece")
    if confidence.size == 0 or not np.isfinite(confidence).all():
        return float("nan")
    return float(relplot.smECE(confidence, correct))
