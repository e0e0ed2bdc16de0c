"""Statistics over seeds: the mean with its 95% Student-t confidence interval, and the paired t-test of the best
parameter value against the baseline (``scipy.stats``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with the half-width of its two-sided confidence interval (NaN for n < 2)."""

    mean: float
    half_width: float
    n: int
    std: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_confidence_interval(values: Sequence[float], level: float = 0.95) -> Estimate:
    """``mean ± t_{(1+level)/2, n-1} · s / √n`` with ``s`` the sample standard deviation (ddof = 1)."""
    from scipy import stats

    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, 0, math.nan)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, math.nan, 1, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, float(stats.t.ppf((1 + level) / 2, n - 1)) * std / math.sqrt(n), n, std)


@dataclass(frozen=True)
class PairedComparison:
    """Best parameter value against the baseline on one data set (Table 3)."""

    row: str
    best: float | str
    best_estimate: Estimate
    baseline: float | str
    baseline_estimate: Estimate
    relative_difference: float  # 100 · (best - baseline) / best, the paper's "diff %"
    n_pairs: int
    mean_difference: float
    t_statistic: float
    p_value: float


def paired_comparison(
    row: str,
    by_value: dict[Any, dict[Any, float]],
    baseline: float | str,
    higher_is_better: bool,
) -> PairedComparison | None:
    """Pick the best value by mean, compare with ``baseline`` on the seeds both have (paired t-test)."""
    from scipy import stats

    estimates = {v: mean_confidence_interval(list(seeds.values())) for v, seeds in by_value.items() if seeds}
    if baseline not in estimates:
        return None

    def rank(value: Any) -> tuple[float, float]:  # by mean; among equal means the value nearest the baseline
        near = -abs(value - baseline) if isinstance(value, float) and isinstance(baseline, float) else 0.0
        return estimates[value].mean, near if higher_is_better else -near

    best = (max if higher_is_better else min)(estimates, key=rank)
    seeds = sorted(set(by_value[best]) & set(by_value[baseline]), key=str)
    a = [by_value[best][s] for s in seeds]
    b = [by_value[baseline][s] for s in seeds]
    t_stat = p_value = math.nan
    if best != baseline and len(seeds) >= 2:
        differences = [x - y for x, y in zip(a, b, strict=True)]
        if any(d != differences[0] for d in differences):
            result = stats.ttest_rel(a, b)
            t_stat, p_value = float(result.statistic), float(result.pvalue)
    best_mean, base_mean = estimates[best].mean, estimates[baseline].mean
    return PairedComparison(
        row=row,
        best=best,
        best_estimate=estimates[best],
        baseline=baseline,
        baseline_estimate=estimates[baseline],
        relative_difference=100.0 * (best_mean - base_mean) / best_mean if best_mean else math.nan,
        n_pairs=len(seeds),
        mean_difference=(sum(a) - sum(b)) / len(seeds) if seeds else math.nan,
        t_statistic=t_stat,
        p_value=p_value,
    )
