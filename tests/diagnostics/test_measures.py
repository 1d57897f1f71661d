"""Each shift measure against a numpy or closed-form reference on tiny arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.diagnostics import measures as M


def _rng(seed=0):
    return np.random.default_rng(seed)


def _pairwise(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _mmd_u_ref(x, y, k):
    """The unbiased estimator by its definition: sums over i != j, then the cross term."""
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def _median_ref(x, y):
    z = np.concatenate([x, y]).astype(np.float64)
    d = _pairwise(z, z)
    return np.median(d[~np.eye(len(z), dtype=bool)])


def test_linear_mmd_matches_its_definition():
    r = _rng()
    x, y = r.normal(size=(5, 3)).astype(np.float32), r.normal(1.0, 1.0, (7, 3)).astype(np.float32)
    ref = _mmd_u_ref(x.astype(np.float64), y.astype(np.float64), lambda a, b: a @ b)
    np.testing.assert_allclose(float(M.linear_mmd(jnp.asarray(x), jnp.asarray(y))), ref, rtol=1e-4)


@pytest.mark.slow
def test_kernel_mmd_matches_its_definition_with_the_median_bandwidth():
    r = _rng(1)
    x, y = r.normal(size=(6, 2)).astype(np.float32), r.normal(0.5, 1.0, (5, 2)).astype(np.float32)
    h = _median_ref(x, y)
    np.testing.assert_allclose(float(M.median_sq_distance(x, y)), h, rtol=1e-5)
    ref = _mmd_u_ref(
        x.astype(np.float64), y.astype(np.float64), lambda a, b: np.exp(-((a - b) ** 2).sum() / h)
    )
    np.testing.assert_allclose(float(M.kernel_mmd(jnp.asarray(x), jnp.asarray(y))), ref, rtol=1e-4)
    # an explicit bandwidth is used as given
    ref2 = _mmd_u_ref(x, y, lambda a, b: np.exp(-((a - b) ** 2).sum() / 3.0))
    np.testing.assert_allclose(float(M.kernel_mmd(x, y, bandwidth=3.0)), ref2, rtol=1e-4)


@pytest.mark.parametrize("fn", [M.linear_mmd, M.kernel_mmd])
@pytest.mark.slow
def test_unbiased_mmd_of_one_distribution_is_zero_in_expectation(fn):
    """Over many pairs of samples of one distribution the estimates average to ~0 (they are
    unbiased, so single ones are negative about as often as positive); a shifted pair is far
    above that."""
    keys = jax.random.split(jax.random.key(0), 400)

    def one(k, shift):
        kx, ky = jax.random.split(k)
        x = jax.random.normal(kx, (12, 3))
        return fn(x, jax.random.normal(ky, (12, 3)) + shift)

    same = np.asarray(jax.vmap(lambda k: one(k, 0.0))(keys))
    moved = np.asarray(jax.vmap(lambda k: one(k, 1.0))(keys))
    se = same.std() / np.sqrt(len(same))
    assert abs(same.mean()) < 4 * se, (same.mean(), se)
    assert (same < 0).mean() > 0.2
    assert moved.mean() > same.mean() + 20 * se


def test_coral_on_known_covariances():
    """Rows (+-1, +-1) scaled by s have mean 0 and unbiased covariance diag(4 s^2 / 3)."""
    base = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], np.float32)
    s_x, s_y = np.array([1.0, 2.0], np.float32), np.array([2.0, 2.0], np.float32)
    c_x, c_y = np.diag(4 * s_x**2 / 3), np.diag(4 * s_y**2 / 3)
    want = ((c_x - c_y) ** 2).sum() / (4 * 2**2)  # (4/3 - 16/3)^2 / 16 = 1
    np.testing.assert_allclose(want, 1.0, rtol=1e-6)
    got = float(M.coral_distance(jnp.asarray(base * s_x), jnp.asarray(base * s_y)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # and against numpy's covariance on random rows of different counts
    r = _rng(2)
    x, y = r.normal(size=(9, 3)).astype(np.float32), r.normal(size=(6, 3)).astype(np.float32) * 2
    ref = ((np.cov(x.T) - np.cov(y.T)) ** 2).sum() / (4 * 9)
    np.testing.assert_allclose(float(M.coral_distance(x, y)), ref, rtol=1e-4)
    assert float(M.coral_distance(x, x + 5.0)) < 1e-6  # a shift of the mean only: 0


def test_proxy_a_distance_near_0_for_one_distribution_and_2_for_separable_ones():
    r = _rng(3)
    x, y = (jnp.asarray(r.normal(size=(400, 4)), jnp.float32) for _ in range(2))
    key = jax.random.key(0)
    same = float(M.proxy_a_distance(x, y, key=key))
    assert 0.0 <= same < 0.3, same
    far = y + jnp.asarray([6.0, 0, 0, 0], jnp.float32)
    sep = float(M.proxy_a_distance(x, far, key=key))
    assert sep > 1.9, sep
    assert float(M.proxy_a_distance(x, far, key=key)) == sep  # a fixed key, a fixed value


def test_paired_cosine_against_numpy():
    r = _rng(4)
    x, y = r.normal(size=(8, 5)).astype(np.float32), r.normal(size=(8, 5)).astype(np.float32)
    ref = np.mean((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)))
    np.testing.assert_allclose(float(M.paired_cosine(x, y)), ref, rtol=1e-5)
    np.testing.assert_allclose(float(M.paired_cosine(x, 3 * x)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(M.paired_cosine(x, -x)), -1.0, rtol=1e-6)
    z = x.copy()
    z[0] = 0.0  # a zero vector counts 0
    np.testing.assert_allclose(float(M.paired_cosine(z, x)), 7 / 8, rtol=1e-6)


@pytest.mark.slow
def test_shift_measures_gives_every_measure_and_cosine_only_with_pairs():
    r = _rng(5)
    x, y = (jnp.asarray(r.normal(size=(10, 3)), jnp.float32) for _ in range(2))
    key = jax.random.key(1)
    got = M.shift_measures(x, y, x[:4], y[:4], key=key)
    assert set(got) == set(M.MEASURES) == set(M.ESTIMATORS)
    np.testing.assert_allclose(float(got["kernel_mmd"]), float(M.kernel_mmd(x, y)), rtol=1e-5)
    np.testing.assert_allclose(
        float(got["cosine"]), float(M.paired_cosine(x[:4], y[:4])), rtol=1e-5
    )
    assert "cosine" not in M.shift_measures(x, y, None, None, key=key)


def test_measures_reject_bad_shapes():
    x = jnp.zeros((5, 3))
    with pytest.raises(ValueError, match="must be"):
        M.linear_mmd(x, jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match=">= 2 rows"):
        M.kernel_mmd(x, jnp.zeros((1, 3)))
    with pytest.raises(ValueError, match=">= 4 rows"):
        M.proxy_a_distance(x, jnp.zeros((3, 3)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="equal"):
        M.paired_cosine(x, jnp.zeros((4, 3)))
