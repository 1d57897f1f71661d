"""MMD (unbiased and linear), median bandwidths, CORAL, InfoNCE against numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.align import distances as al

BW = (0.5, 2.0, 8.0)


def _k(a, b, bws=BW):
    d = np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return sum(np.exp(-d / h) for h in bws)


def _mmd_u_np(x, y, bws=BW):
    n, m = len(x), len(y)
    kxx = sum(_k(x[i], x[j], bws) for i in range(n) for j in range(n) if i != j)
    kyy = sum(_k(y[i], y[j], bws) for i in range(m) for j in range(m) if i != j)
    kxy = sum(_k(x[i], y[j], bws) for i in range(n) for j in range(m))
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)


def _mmd_l_np(x, y, bws=BW):
    tot = 0.0
    for i in range(0, len(x), 2):
        tot += (
            _k(x[i], x[i + 1], bws)
            + _k(y[i], y[i + 1], bws)
            - _k(x[i], y[i + 1], bws)
            - _k(x[i + 1], y[i], bws)
        )
    return tot / (len(x) // 2)


def _sample(seed, n, d, shift=0.0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32) + np.float32(shift)


def test_unbiased_equals_double_loop():
    x, y = _sample(0, 7, 3), _sample(1, 5, 3, 0.7)
    got = jax.jit(lambda x, y: al.mmd2_unbiased(x, y, bandwidths=BW))(x, y)
    np.testing.assert_allclose(got, _mmd_u_np(x, y), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_unbiased_masks_equal_dropping_rows():
    x, y = _sample(2, 8, 3), _sample(3, 6, 3, 0.5)
    mx = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)
    my = np.array([1, 0, 1, 1, 1, 0], bool)
    got = al.mmd2_unbiased(x, y, bandwidths=BW, mask_x=jnp.asarray(mx), mask_y=jnp.asarray(my))
    np.testing.assert_allclose(got, _mmd_u_np(x[mx], y[my]), rtol=1e-5, atol=1e-6)
    # padded rows may hold anything
    x2 = x.copy()
    x2[~mx] = 1e3
    got2 = al.mmd2_unbiased(x2, y, bandwidths=BW, mask_x=jnp.asarray(mx), mask_y=jnp.asarray(my))
    np.testing.assert_allclose(got2, got, rtol=1e-6)


def test_linear_equals_brute_force():
    x, y = _sample(4, 8, 4), _sample(5, 8, 4, 0.3)
    got = al.mmd2_linear(x, y, bandwidths=BW)
    np.testing.assert_allclose(got, _mmd_l_np(x, y), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        al.mmd2_linear(x[:7], y[:7], bandwidths=BW)
    with pytest.raises(ValueError):
        al.mmd2_linear(x, y[:6], bandwidths=BW)


@pytest.mark.slow
def test_mmd_near_zero_same_distribution_and_monotone_in_shift():
    x = _sample(6, 200, 4)
    y = _sample(7, 200, 4)
    bws = al.median_bandwidths(x, y)
    same = float(al.mmd2_unbiased(x, y, bandwidths=bws))
    assert abs(same) < 0.02
    vals = [
        float(al.mmd2_unbiased(x, _sample(7, 200, 4, s), bandwidths=bws))
        for s in (0.0, 0.25, 0.5, 1.0, 2.0)
    ]
    assert np.all(np.diff(vals) > 0), vals
    assert vals[-1] > 50 * abs(same)
    # the linear estimator has higher variance: use more samples
    xl = _sample(16, 1000, 4)
    lin = [
        float(al.mmd2_linear(xl, _sample(17, 1000, 4, s), bandwidths=bws))
        for s in (0.0, 0.5, 1.0, 2.0)
    ]
    assert abs(lin[0]) < 0.1 * lin[-1] and np.all(np.diff(lin) > 0), lin


def test_median_bandwidths():
    x, y = _sample(8, 5, 3), _sample(9, 4, 3, 1.0)
    z = np.concatenate([x, y]).astype(np.float64)
    d = [np.sum((z[i] - z[j]) ** 2) for i in range(9) for j in range(i + 1, 9)]
    med = np.median(d)
    got = al.median_bandwidths(jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(got, med * np.array([0.25, 0.5, 1, 2, 4]), rtol=1e-5)
    # masked rows are left out of the median
    mx = np.array([1, 1, 0, 1, 1], bool)
    zm = np.concatenate([x[mx], y]).astype(np.float64)
    k = len(zm)
    dm = [np.sum((zm[i] - zm[j]) ** 2) for i in range(k) for j in range(i + 1, k)]
    got_m = al.median_bandwidths(x, y, factors=(1.0,), mask_x=jnp.asarray(mx))
    np.testing.assert_allclose(got_m, [np.median(dm)], rtol=1e-5)
    # no gradient flows through the bandwidths
    g = jax.grad(lambda x: jnp.sum(al.median_bandwidths(x, jnp.asarray(y))))(jnp.asarray(x))
    np.testing.assert_array_equal(g, np.zeros_like(x))


def _coral_np(xs, xt):
    d = xs.shape[1]
    cs = np.cov(xs.astype(np.float64), rowvar=False, ddof=1)
    ct = np.cov(xt.astype(np.float64), rowvar=False, ddof=1)
    return np.sum((cs - ct) ** 2) / (4 * d * d)


def test_coral_equals_numpy_incl_masks():
    xs, xt = _sample(10, 9, 4) * 2.0, _sample(11, 6, 4, 0.5)
    np.testing.assert_allclose(al.coral(xs, xt), _coral_np(xs, xt), rtol=1e-5)
    ms = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1], bool)
    mt = np.array([1, 1, 0, 1, 1, 1], bool)
    got = al.coral(xs, xt, mask_s=jnp.asarray(ms), mask_t=jnp.asarray(mt))
    np.testing.assert_allclose(got, _coral_np(xs[ms], xt[mt]), rtol=1e-5)
    assert float(al.coral(xs, xs)) == 0.0


def _info_nce_np(a, b, t, symmetric):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = (a.astype(np.float64) @ b.T.astype(np.float64)) / t

    def one(s):
        return np.mean([np.log(np.sum(np.exp(s[i]))) - s[i, i] for i in range(len(s))])

    return 0.5 * (one(s) + one(s.T)) if symmetric else one(s)


@pytest.mark.parametrize("symmetric", [True, False])
def test_info_nce_equals_numpy(symmetric):
    za, zb = _sample(12, 6, 5), _sample(13, 6, 5)
    got = al.info_nce(za, zb, temperature=0.3, symmetric=symmetric)
    np.testing.assert_allclose(got, _info_nce_np(za, zb, 0.3, symmetric), rtol=1e-5)


@pytest.mark.slow
def test_info_nce_mask_drops_rows_from_positives_and_negatives():
    za, zb = _sample(14, 7, 5), _sample(15, 7, 5)
    m = np.array([1, 0, 1, 1, 0, 1, 1], bool)
    got = al.info_nce(za, zb, temperature=0.2, mask=jnp.asarray(m))
    np.testing.assert_allclose(got, _info_nce_np(za[m], zb[m], 0.2, True), rtol=1e-5)
    g = jax.grad(lambda a: al.info_nce(a, zb, mask=jnp.asarray(m)))(jnp.asarray(za))
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~m] == 0)
    # aligned pairs give a lower loss than random pairs
    assert float(al.info_nce(za, za * 2.0)) < float(al.info_nce(za, zb))
    # no valid rows: zero, finite gradient
    none = jnp.zeros(7, bool)
    assert float(al.info_nce(za, zb, mask=none)) == 0.0
