"""The validators against numpy references on tiny arrays, and their invariants: DEV with
w == 1 is the mean loss, IM lies in [0, log c] and is 0 for one shared distribution, SND of
identical rows is log(n - 1)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.diagnostics import validators as V


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _h(p):
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)


def test_dev_risk_matches_numpy_and_equals_the_mean_loss_for_unit_weights():
    rng = np.random.default_rng(0)
    loss, w = rng.random(7), rng.random(7) * 2
    wl = w * loss
    eta = -np.cov(wl, w, ddof=1)[0, 1] / np.var(w, ddof=1)
    want = wl.mean() + eta * w.mean() - eta
    got = V.dev_risk(jnp.asarray(loss, jnp.float32), jnp.asarray(w, jnp.float32))
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    ones = V.dev_risk(jnp.asarray(loss, jnp.float32), jnp.ones(7, jnp.float32))
    np.testing.assert_allclose(float(ones), loss.mean(), rtol=1e-6)


def test_density_ratios_are_about_one_for_one_distribution_and_favour_the_target():
    rng = np.random.default_rng(1)
    s = jnp.asarray(rng.normal(size=(200, 2)), jnp.float32)
    t = jnp.asarray(rng.normal(size=(100, 2)), jnp.float32)
    w = np.asarray(V.density_ratios(s, t, s))
    assert w.shape == (200,) and (w > 0).all() and abs(w.mean() - 1.0) < 0.15
    shifted = t + 2.0
    at = jnp.asarray([[2.0, 2.0], [-2.0, -2.0]], jnp.float32)
    w2 = np.asarray(V.density_ratios(s, shifted, at))
    assert w2[0] > 10 > 0.1 > w2[1]


def test_entropy_and_im_match_numpy_and_their_bounds():
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(5, 6)) * 2
    p = _softmax(scores / 0.5)
    got_h = V.prediction_entropy(jnp.asarray(scores, jnp.float32), temperature=0.5)
    got_im = V.information_maximization(jnp.asarray(scores, jnp.float32), temperature=0.5)
    np.testing.assert_allclose(float(got_h), _h(p).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(got_im), _h(p.mean(0)) - _h(p).mean(), rtol=1e-4)
    assert 0 <= float(got_im) <= math.log(6)
    same = jnp.asarray(np.tile(scores[:1], (5, 1)), jnp.float32)
    assert abs(float(V.information_maximization(same))) < 1e-5
    one_hot = jnp.asarray(np.eye(6)[:5] * 100.0, jnp.float32)  # confident, all different
    np.testing.assert_allclose(float(V.information_maximization(one_hot)), math.log(5), rtol=1e-4)
    flat = jnp.zeros((3, 6), jnp.float32)
    np.testing.assert_allclose(float(V.prediction_entropy(flat)), math.log(6), rtol=1e-6)


def test_snd_matches_numpy_and_identical_rows_give_log_n_minus_one():
    rng = np.random.default_rng(3)
    f = rng.random((6, 4))
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    s = fn @ fn.T / 0.05
    np.fill_diagonal(s, -np.inf)
    want = _h(_softmax(s)).mean()
    got = V.soft_neighborhood_density(jnp.asarray(f, jnp.float32), temperature=0.05)
    np.testing.assert_allclose(float(got), want, rtol=1e-4)
    same = jnp.ones((5, 3), jnp.float32)
    np.testing.assert_allclose(float(V.soft_neighborhood_density(same)), math.log(4), rtol=1e-5)


def test_sampled_ndcg_loss_matches_numpy_with_pessimistic_ties():
    pos = np.array([1.0, 0.0, 0.5], np.float32)
    neg = np.array([[0.0, 0.5], [1.0, 2.0], [0.5, 0.1]], np.float32)
    r = np.array([0, 2, 1])
    want = 1 - 1 / np.log2(2 + r)
    np.testing.assert_allclose(np.asarray(V.sampled_ndcg_loss(pos, neg)), want, rtol=1e-6)


@pytest.mark.parametrize(
    ("metric", "lower"),
    [
        ("unsup/source_risk", True),
        ("unsup/dev", True),
        ("unsup/entropy", True),
        ("unsup/im", False),
        ("unsup/snd", False),
        ("rmse", None),
    ],
)
def test_directions(metric, lower):
    from transferjax.train.result import lower_is_better, select_best

    assert V.lower_is_better(metric) is lower
    if lower is not None:
        hist = [{metric: 1.0}, {metric: 0.5}, {metric: 2.0}]
        assert lower_is_better(metric) is lower
        assert select_best(hist, metric) == (1 if lower else 2)
