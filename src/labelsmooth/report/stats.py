"""Statistics over seeds: the mean with its 95% Student-t confidence interval, and the paired t-test of the best
parameter value against the baseline (``scipy.stats``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labelsmooth.report.base import column_number, column_order


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


# The runs' values are float32 (about 7 significant digits): numbers closer than this are the same value.
SAME_VALUE_RELATIVE = 1e-6


def same_value(a: float, b: float, scale: float | None = None) -> bool:
    """Whether ``a`` and ``b`` are one value at the float32 precision of the runs' records, relative to their own
    size or to ``scale`` (the size of the records two differences come from).

    >>> same_value(0.9157373110, 0.9157372912), same_value(0.9157, 0.9161), same_value(4.1e-4, 4.2e-4)
    (True, False, False)
    """
    return abs(a - b) <= SAME_VALUE_RELATIVE * (max(abs(a), abs(b)) if scale is None else scale)


def distance_to(value: Any, baseline: Any) -> tuple[float, tuple[int, float, str]]:
    """How far a parameter value is from the baseline (numbers), then its place in the report's columns: the order
    that breaks ties."""
    numeric = isinstance(value, (int, float)) and isinstance(baseline, (int, float))
    return (column_number(abs(value - baseline)) if numeric else 0.0), column_order(value)  # 0.7 - 0.5 = 0.5 - 0.3


@dataclass(frozen=True)
class PairedComparison:
    """Best parameter value against the baseline on one data set (Table 3)."""

    row: str
    best: float | str
    best_estimate: Estimate
    baseline: float | str
    baseline_estimate: Estimate
    relative_difference: float  # diff %: 100 · (best - baseline) / best (the paper's, for accuracies) or / baseline
    n_pairs: int
    mean_difference: float
    t_statistic: float
    p_value: float
    tied: tuple[float | str, ...] = ()  # other values whose means equal the best's


def paired_comparison(
    row: str,
    by_value: dict[Any, dict[Any, float]],
    baseline: float | str,
    higher_is_better: bool,
    chosen: float | str | None = None,
    chosen_among: Sequence[float | str] = (),
) -> PairedComparison | None:
    """Pick the best value by mean (or take ``chosen``, the value another table chose, tied there with
    ``chosen_among``), compare with ``baseline`` on the seeds both have (paired t-test).

    Means that are ``same_value`` tie: the baseline wins a tie (no gain is claimed), else the value nearest it
    (numbers), else the first in sorted order, so neither the command line's order nor float32 rounding decides;
    ``tied`` names the others. ``diff %`` is the paper's ``100 · (best - baseline) / best`` for a metric where
    higher is better (its accuracies); for an error, ``100 · (best - baseline) / baseline``, the change relative to
    the baseline (divided by the smaller best, halving an error read as -100 %).
    Paired differences that are all the same value (one image more on every seed) have no variance: no t-test
    (p "–"), as for fewer than 2 pairs."""
    from scipy import stats

    estimates = {v: mean_confidence_interval(list(seeds.values())) for v, seeds in by_value.items() if seeds}
    if baseline not in estimates:
        return None

    if chosen is not None:
        if chosen not in estimates:
            return None
        best, tied = chosen, [chosen, *chosen_among]
    else:
        top = (max if higher_is_better else min)(e.mean for e in estimates.values())
        tied = [v for v, e in estimates.items() if same_value(e.mean, top)]
        best = baseline if baseline in tied else min(tied, key=lambda value: distance_to(value, baseline))
    seeds = sorted(set(by_value[best]) & set(by_value[baseline]), key=str)
    a = [by_value[best][s] for s in seeds]
    b = [by_value[baseline][s] for s in seeds]
    t_stat = p_value = math.nan
    differences = [x - y for x, y in zip(a, b, strict=True)]
    scale = max((abs(x) for x in a + b), default=0.0)
    if best != baseline and len(seeds) >= 2 and not all(same_value(d, differences[0], scale) for d in differences):
        result = stats.ttest_rel(a, b)
        t_stat, p_value = float(result.statistic), float(result.pvalue)
    best_mean, base_mean = estimates[best].mean, estimates[baseline].mean
    reference = best_mean if higher_is_better else base_mean
    return PairedComparison(
        row=row,
        best=best,
        best_estimate=estimates[best],
        baseline=baseline,
        baseline_estimate=estimates[baseline],
        relative_difference=100.0 * (best_mean - base_mean) / reference if reference else math.nan,
        n_pairs=len(seeds),
        mean_difference=(sum(a) - sum(b)) / len(seeds) if seeds else math.nan,
        t_statistic=t_stat,
        p_value=p_value,
        tied=tuple(sorted((value for value in tied if value != best), key=str)),
    )
