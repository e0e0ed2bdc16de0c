"""Smooth ECE (smECE) of the top-1 confidence against correctness (Błasiok & Nakkiran 2023).

smECE replaces the bins of the ECE by a kernel: with the residuals ``r_i = c_i - a_i`` smoothed by a Gaussian
kernel of bandwidth σ, reflected at 0 and 1, ``r̂_σ(t) = Σ_i K_σ(t, c_i) r_i / Σ_i K_σ(t, c_i)`` and the smoothed
density ``δ̂_σ(t) ∝ Σ_i K_σ(t, c_i)``,

    smECE_σ = ∫ |r̂_σ(t)| δ̂_σ(t) dt,

at the bandwidth σ* that solves ``smECE_σ = σ`` (found by bisection). Unlike the binned ECE it is continuous in
the predictions and consistent, with no bin count to choose (Błasiok & Nakkiran 2023, "Smooth ECE: principled
reliability diagrams via kernel smoothing").

Computed as their package ``relplot`` computes it (``relplot.smECE``: the same bisection, ten halvings from
σ = 1, stopping below 0.001; the samples spread linearly onto a grid of ``max(2000, 20/σ) // 2 + 1`` points, the
grid mirrored at 0 and 1 and convolved with the Gaussian sampled on it; the integral summed over
``max(200, 10/σ)`` points with a density floor of 1e-4), with one change: the convolutions are done by FFT, the
grid's transform computed once for each grid size, instead of relplot's 24 direct ``np.convolve`` of ~3,000 by
~1,000 points. It runs at every validation epoch of every run: relplot took 8.6-11.6 ms per value on this
project's 2-core machine (269 and 10,000 samples), this 2.6-3.2 ms, and the values are relplot's to 4e-15
relative (tests/test_formulas.py, relplot being a test dependency); nor is relplot imported, whose import brings
pandas, seaborn and scikit-learn (~0.45 s after torch).

>>> import numpy as np
>>> round(smooth_ece(np.full(1000, 0.9), np.r_[np.ones(600), np.zeros(400)]), 3)  # |0.9 - 0.6|
0.3
"""

from __future__ import annotations

import numpy as np

SEARCH_FLOOR = 0.001  # relplot.smECE's eps: bandwidths below it pass
SEARCH_HALVINGS = 10
DENSITY_FLOOR = 1e-4


def smooth_ece(confidence: np.ndarray, correct: np.ndarray) -> float:
    """smECE of confidences in [0, 1] against outcomes in {0, 1}, both (N,); NaN for N = 0 or a non-finite
    confidence."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence has {confidence.size} values but correct {correct.size}")
    import torch

    from labelsmooth.calibration.binning import check_confidences

    check_confidences(torch.from_numpy(confidence), torch.from_numpy(correct), "smooth_ece")
    if confidence.size == 0 or not np.isfinite(confidence).all():
        return float("nan")
    smoother = ReflectedGaussianSmoother(confidence, np.stack([confidence - correct, np.ones_like(confidence)]))

    def at(sigma: float) -> float:  # smECE_σ (relplot.smECE_sigma)
        points = np.linspace(0, 1, max(round(10 / sigma), 200))
        residuals, density = smoother(sigma, points)
        density = density + DENSITY_FLOOR
        return float(np.sum(np.abs(residuals / density) * density) / np.sum(density))

    def passes(sigma: float) -> bool:
        return sigma < SEARCH_FLOOR or sigma < at(sigma)

    if passes(1.0):
        return at(1.0)
    failing, passing = 1.0, 0.0
    for _ in range(SEARCH_HALVINGS):
        middle = (failing + passing) / 2
        if passes(middle):
            passing = middle
        else:
            failing = middle
    return at(failing)


class ReflectedGaussianSmoother:
    """``values`` (rows, each at ``confidence``) smoothed by the Gaussian kernel of bandwidth σ reflected at 0 and
    1: spread linearly onto a grid of ``n = max(2000, 20/σ) // 2 + 1`` points, the grid mirrored at both ends and
    convolved with the kernel sampled at ``linspace(0, 1, n)`` around 0.5, then interpolated linearly at the points
    asked for. The grid's transform is kept for each ``n`` (one for every σ >= 0.01)."""

    def __init__(self, confidence: np.ndarray, values: np.ndarray) -> None:
        self.confidence, self.values = confidence, values
        self.transforms: dict[int, tuple[int, np.ndarray]] = {}

    def grid_transform(self, n: int) -> tuple[int, np.ndarray]:
        if n not in self.transforms:
            from scipy.fft import next_fast_len

            cell = (self.confidence * (n - 1)).astype(int).clip(0, n - 2)
            fraction = self.confidence * (n - 1) - cell
            grid = np.zeros((len(self.values), n))
            for row, value in zip(grid, self.values, strict=True):
                np.add.at(row, cell, (1 - fraction) * value)
                np.add.at(row, cell + 1, fraction * value)
            mirrored = np.concatenate([grid[:, ::-1][:, :-1], grid, grid[:, ::-1][:, 1:]], axis=1)
            length = next_fast_len(4 * n - 3, real=True)
            self.transforms[n] = length, np.fft.rfft(mirrored, length, axis=1)
        return self.transforms[n]

    def __call__(self, sigma: float, points: np.ndarray) -> np.ndarray:
        n = max(2000, round(20 / sigma)) // 2 + 1
        length, grid = self.grid_transform(n)
        offsets = np.linspace(0, 1, n) - 0.5
        kernel = np.exp(-offsets * offsets / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
        full = np.fft.irfft(grid * np.fft.rfft(kernel, length), length, axis=1)
        convolved = full[:, n - 1 + n // 2 : n - 1 + n // 2 + n]  # the middle n of the valid part
        at = (points * (n - 1)).astype(int).clip(0, n - 2)
        weight = (points - at / (n - 1)) * (n - 1)
        return convolved[:, at] * (1 - weight) + convolved[:, at + 1] * weight
