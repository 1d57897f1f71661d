"""benchmarks.shift_gain: Spearman's rho and its p-value against closed forms, and the
correlation table's bookkeeping (pooled and per method)."""

import math

import numpy as np
import pytest

from benchmarks import shift_gain as S


def test_spearman_against_ranks_and_t():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    rho, p = S.spearman(x, [10, 20, 30, 40, 50])
    assert rho == pytest.approx(1.0) and p < 1e-12
    rho, p = S.spearman(x, [5, 6, 7, 9, 8])  # ranks 1 2 3 5 4: d^2 sum 2 -> 1 - 6*2/120
    assert rho == pytest.approx(0.9)
    t = 0.9 * math.sqrt(3 / (1 - 0.81))
    assert p == pytest.approx(S.t_pvalue(t, 3))
    rho, _ = S.spearman([1, 2, 2, 3], [4, 3, 3, 1])  # ties take average ranks
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([4, 2.5, 2.5, 1])
    assert rho == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert all(math.isnan(v) for v in S.spearman([1, 2], [1, 2]))
    assert all(math.isnan(v) for v in S.spearman([1, 1, 1], [1, 2, 3]))


def test_correlations_pool_and_split_by_method():
    rows = [
        {"shift": s, "method": m, "gain": g, "interest": {"cosine": c}, "model": {"cosine": v}}
        for s, c in ((0, 0.9), (45, 0.5), (90, 0.1))
        for m, g, v in (("a", 1 - s / 90, 1 - s / 90), ("b", 0.5 - s / 90, s / 90))
    ]
    got = {(k, m): (r, n) for k, m, r, _, n in S.correlations(rows)}
    assert got[("interest", "cosine")][1] == 6
    assert got[("model (a)", "cosine")] == (pytest.approx(1.0), 3)
    assert got[("model (b)", "cosine")] == (pytest.approx(-1.0), 3)
