"""Rates, means and paired comparisons with their uncertainty, for feedback and evaluation runs.

Standard library only, so that importing it stays cheap:

- `proportion`: a rate with its Wilson score interval.
- `mean_interval`, `bootstrap_mean_interval`: a mean with a t-based or bootstrap interval.
- `paired_difference`, `verdict`: candidate against control on the same items.
- `percentile`: latency p50, p95 and the like.
- `normal_quantile`, `t_quantile`, `t_cdf`, `sign_test_p`: the distributions behind them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Interval",
    "PairedComparison",
    "Verdict",
    "bootstrap_mean_interval",
    "mean_interval",
    "normal_quantile",
    "paired_difference",
    "percentile",
    "proportion",
    "sign_test_p",
    "t_cdf",
    "t_quantile",
    "verdict",
]

Verdict = Literal["improved", "regressed", "no detectable change"]


@dataclass(frozen=True)
class Interval:
    """An estimate over `n` observations with its confidence interval.

    `value` is None when n == 0; `low` and `high` are None when the interval is undefined.
    """

    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class PairedComparison:
    """Candidate against control, pair by pair (difference = candidate - control).

    `p_value` is two-sided, None when there are fewer than 2 pairs; `test` names the test used.
    """

    n: int
    wins: int
    losses: int
    ties: int
    mean_difference: Interval
    p_value: float | None
    test: str


def proportion(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """`successes` out of `n` with its Wilson score interval (sound near 0 and 1 and for small n)."""
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n ({n}), got {successes}")
    z = normal_quantile(_upper(confidence))
    if n == 0:
        return Interval(None, None, None, 0)
    rate = successes / n
    scale = 1 + z * z / n
    center = (rate + z * z / (2 * n)) / scale
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / scale
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Interval(rate, low, high, n)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean with a Student t interval; the interval is None with fewer than 2 values."""
    data = _finite(values)
    level = _upper(confidence)
    n = len(data)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = math.fsum(data) / n
    if n == 1:
        return Interval(mean, None, None, 1)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in data) / (n - 1))
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def bootstrap_mean_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """The mean with a percentile bootstrap interval, reproducible for a given `seed`.

    Assumes nothing about the distribution; the interval is None with fewer than 2 values.
    """
    data = _finite(values)
    level = _upper(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    n = len(data)
    if n == 0:
        return Interval(None, None, None, 0)
    mean = math.fsum(data) / n
    if n == 1:
        return Interval(mean, None, None, 1)
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(data, k=n)) / n for _ in range(resamples))
    return Interval(mean, _sorted_quantile(means, 1 - level), _sorted_quantile(means, level), n)


def paired_difference(
    candidate: Sequence[float], control: Sequence[float], confidence: float = 0.95
) -> PairedComparison:
    """Compare paired scores: a paired t-test, or the exact sign test when all scores are 0/1.

    The mean difference always carries a t interval. All-zero differences give p = 1.0.
    """
    if len(candidate) != len(control):
        raise ValueError(
            f"candidate and control must pair up, got {len(candidate)} and {len(control)} values"
        )
    treated, base = _finite(candidate), _finite(control)
    differences = [c - b for c, b in zip(treated, base, strict=True)]
    n = len(differences)
    wins = sum(1 for d in differences if d > 0)
    losses = sum(1 for d in differences if d < 0)
    interval = mean_interval(differences, confidence)
    p_value: float | None
    if n < 2:
        p_value, test = None, f"no test: {n} pair{'s' if n != 1 else ''}, at least 2 needed"
    elif all(x in (0, 1) for x in (*treated, *base)):
        p_value = sign_test_p(wins, losses)
        test = f"exact sign test (McNemar) on {wins + losses} discordant pairs"
    else:
        p_value, test = _paired_t_p(differences), f"paired t-test on {n} pairs"
    return PairedComparison(n, wins, losses, n - wins - losses, interval, p_value, test)


def verdict(
    comparison: PairedComparison, *, higher_is_better: bool = True, alpha: float = 0.05
) -> Verdict:
    """Whether the candidate "improved" or "regressed": p < `alpha`, direction by the mean."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    p, difference = comparison.p_value, comparison.mean_difference.value
    if comparison.n < 2 or p is None or difference is None or p >= alpha or difference == 0:
        return "no detectable change"
    return "improved" if (difference > 0) == higher_is_better else "regressed"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0 to 100), interpolating linearly between ranks; None if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q}")
    data = sorted(_finite(values))
    return _sorted_quantile(data, q / 100) if data else None


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test (McNemar's exact test on discordant pairs); ties excluded."""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be non-negative, got {wins} and {losses}")
    n, k = wins + losses, min(wins, losses)
    if 2 * k >= n:
        return 1.0
    # P(X <= k) for X ~ Binomial(n, 1/2) is I_{1/2}(n - k, k + 1).
    return min(1.0, 2 * _incomplete_beta(n - k, k + 1, 0.5, 0.5))


def normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's algorithm, one Halley step: error < 1e-12)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be between 0 and 1 (exclusive), got {p}")
    if p > 0.5:
        return -normal_quantile(1 - p)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        x = _poly(_ACKLAM_C, q) / (_poly(_ACKLAM_D, q) * q + 1)
    else:
        q = p - 0.5
        r = q * q
        x = _poly(_ACKLAM_A, r) * q / (_poly(_ACKLAM_B, r) * r + 1)
    error = 0.5 * math.erfc(-x / math.sqrt(2)) - p
    u = error * math.sqrt(2 * math.pi) * math.exp(x * x / 2)
    return x - u / (1 + x * u / 2)


def t_quantile(p: float, df: float) -> float:
    """Inverse of Student's t CDF with `df` (at least 1) degrees of freedom.

    Exact for df 1 and 2; otherwise Hill's (1970) approximation refined by Newton steps on
    `t_cdf`, accurate to about 1e-9.
    """
    if not 0 < p < 1:
        raise ValueError(f"p must be between 0 and 1 (exclusive), got {p}")
    if not df >= 1:
        raise ValueError(f"df must be at least 1, got {df}")
    tail = min(p, 1 - p)
    if tail == 0.5:
        return 0.0
    if df == 1:
        q = 1 / math.tan(math.pi * tail)
    elif df == 2:
        q = (1 - 2 * tail) / math.sqrt(2 * tail * (1 - tail))
    else:
        q = _hill(2 * tail, df)
        for _ in range(5):
            density = _t_density(q, df)
            if density == 0:
                break
            step = (_t_tail(q, df) - tail) / density
            q = max(q + step, q / 2)
            if abs(step) <= 1e-13 * q:
                break
    return q if p > 0.5 else -q


def t_cdf(t: float, df: float) -> float:
    """Student's t CDF with `df` degrees of freedom, P(T <= t)."""
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    tail = _t_tail(abs(t), df)
    return tail if t < 0 else 1 - tail


# Acklam's rational approximation, coefficients highest power first.
_ACKLAM_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_ACKLAM_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_ACKLAM_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_ACKLAM_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)


def _poly(coefficients: Sequence[float], x: float) -> float:
    result = 0.0
    for coefficient in coefficients:
        result = result * x + coefficient
    return result


def _hill(two_tailed: float, df: float) -> float:
    """Hill (1970), Algorithm 396: the positive t with P(|T| > t) = `two_tailed`."""
    a = 1 / (df - 0.5)
    b = 48 / (a * a)
    c = ((20700 * a / b - 98) * a - 16) * a + 96.36
    d = ((94.5 / (b + c) - 3) / b + 1) * math.sqrt(a * math.pi / 2) * df
    y = (d * two_tailed) ** (2 / df)
    if (df < 2.1 and two_tailed > 0.5) or y > 0.05 + a:
        x = normal_quantile(0.5 * two_tailed)
        y = x * x
        if df < 5:
            c += 0.3 * (df - 4.5) * (x + 0.6)
        c = (((0.05 * d * x - 5) * x - 7) * x - 2) * x + b + c
        y = (((((0.4 * y + 6.3) * y + 36) * y + 94.5) / c - y - 3) / b + 1) * x
        y = math.expm1(a * y * y)
    else:
        y = (
            (1 / (((df + 6) / (df * y) - 0.089 * d - 0.822) * (df + 2) * 3) + 0.5 / (df + 4)) * y
            - 1
        ) * (df + 1) / (df + 2) + 1 / y
    return math.sqrt(df * y)


def _t_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0."""
    t2 = t * t
    if math.isinf(t2):
        return 0.0
    return 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t2), t2 / (df + t2))


def _t_density(t: float, df: float) -> float:
    log_density = (
        math.lgamma((df + 1) / 2)
        - math.lgamma(df / 2)
        - 0.5 * math.log(df * math.pi)
        - (df + 1) / 2 * math.log1p(t * t / df)
    )
    return math.exp(log_density)


def _paired_t_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of the one-sample t-test that the mean difference is zero."""
    n = len(differences)
    mean = math.fsum(differences) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
    if sd == 0:
        # Every pair moved by the same amount: no evidence if that is zero, certainty otherwise.
        return 1.0 if mean == 0 else 0.0
    return min(1.0, 2 * _t_tail(abs(mean) / (sd / math.sqrt(n)), n - 1))


def _incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b), with y = 1 - x passed in to keep its precision."""
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    )
    # The continued fraction converges fast below the mean; use the symmetry above it.
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, y) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta, modified Lentz (Numerical Recipes betacf)."""
    tiny = 1e-300
    c = 1.0
    d = 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    fraction = d
    # Iterations grow like sqrt(max(a, b)): this cap covers df in the millions.
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return fraction


def _sorted_quantile(data: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks of sorted, non-empty `data`."""
    position = fraction * (len(data) - 1)
    below = math.floor(position)
    above = min(below + 1, len(data) - 1)
    return data[below] + (data[above] - data[below]) * (position - below)


def _upper(confidence: float) -> float:
    """The upper quantile level of a two-sided interval at `confidence`."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    return 0.5 + confidence / 2


def _finite(values: Sequence[float]) -> list[float]:
    data = [float(v) for v in values]
    if not all(math.isfinite(v) for v in data):
        raise ValueError("values must be finite numbers")
    return data
