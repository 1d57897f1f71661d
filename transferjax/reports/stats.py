"""Statistics for reports, in numpy and `math` only: mean/std over seeds and paired tests.

* Paired t-test (two-sided). With differences d_i = x_i - y_i over the n seeds present in
  both methods, t = mean(d) / (sd(d) / sqrt(n)) with the sample sd (ddof=1) and df = n - 1.
  The p-value uses the Student t tail through the regularized incomplete beta function,
  p = P(|T_df| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2),
  evaluated with the continued fraction of Numerical Recipes (Press et al., 3rd ed., 6.4)
  by the modified Lentz method.
* Wilcoxon signed-rank test (two-sided, exact). Zero differences are dropped (Wilcoxon's
  convention), |d| are ranked with average ranks for ties, W+ = sum of the ranks of the
  positive differences; under H0 each rank's sign is +/- with probability 1/2, and the exact
  null distribution of W+ is computed by dynamic programming over the (doubled, hence
  integer) ranks; p = min(1, 2 min(P(W+ <= w), P(W+ >= w))).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

TESTS = {
    "ttest": "two-sided paired t-test",
    "wilcoxon": "two-sided exact Wilcoxon signed-rank test",
}

_EPS = 1e-15
_TINY = 1e-300


@dataclasses.dataclass(frozen=True)
class TestResult:
    """Outcome of a paired test; pvalue is nan when the test is undefined (too few pairs)."""

    test: str
    statistic: float
    pvalue: float
    n: int


def mean_std(values) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1, n); std is nan for n < 2 and mean is nan for n = 0."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n >= 2 else math.nan
    return mean, std, n


def _betacf(a: float, b: float, x: float, *, max_iter: int = 10_000) -> float:
    """Continued fraction of I_x(a, b) (modified Lentz), valid for x < (a + 1) / (a + b + 2)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"betainc continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0, 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc needs 0 <= x <= 1, got x={x}")
    if x == 0.0 or x == 1.0:
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value P(|T| >= |t|) of Student's t with `df` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def paired_ttest(x, y) -> TestResult:
    """Two-sided paired t-test of x against y (equal-length sequences, paired by position).

    All-zero differences give t = 0, p = 1; constant non-zero differences give t = +/-inf,
    p = 0; fewer than 2 pairs give nan.
    """
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    n = int(d.size)
    if n < 2:
        return TestResult("ttest", math.nan, math.nan, n)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        t = mean / (sd / math.sqrt(n))
    return TestResult("ttest", t, t_pvalue(t, n - 1), n)


def _avg_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of `a` with ties given their average rank."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    ranks = np.empty(a.size, np.float64)
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j + 2) / 2.0
        i = j + 1
    return ranks


def wilcoxon_exact(x, y, *, max_n: int = 400) -> TestResult:
    """Two-sided exact Wilcoxon signed-rank test of x against y (paired by position).

    The statistic reported is W+ (sum of ranks of positive differences). n counts the
    non-zero differences; with none, p = 1.
    """
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    d = d[d != 0.0]
    n = int(d.size)
    if n == 0:
        return TestResult("wilcoxon", 0.0, 1.0, 0)
    if n > max_n:
        raise ValueError(f"exact Wilcoxon test limited to {max_n} pairs, got {n}")
    r2 = np.rint(2.0 * _avg_ranks(np.abs(d))).astype(np.int64)  # doubled ranks: integers
    w2 = int(r2[d > 0].sum())
    dist = np.zeros(int(r2.sum()) + 1, np.float64)  # P(2 W+ = k)
    dist[0] = 1.0
    for r in r2:
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[: dist.size - r]
        dist = 0.5 * (dist + shifted)
    lower, upper = float(dist[: w2 + 1].sum()), float(dist[w2:].sum())
    return TestResult("wilcoxon", w2 / 2.0, min(1.0, 2.0 * min(lower, upper)), n)


def paired_test(x, y, *, test: str = "ttest") -> TestResult:
    """Runs the paired test named `test` ("ttest" or "wilcoxon") of x against y."""
    if test == "ttest":
        return paired_ttest(x, y)
    if test == "wilcoxon":
        return wilcoxon_exact(x, y)
    raise ValueError(f"unknown test {test!r}; choose one of {sorted(TESTS)}")
