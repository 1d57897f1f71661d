"""Gradient reversal: identity forward, -lam * g backward, zero grad for lam; schedules."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import grl


def _loss(x, lam, c):
    return jnp.sum(c * grl.grad_reverse(x, lam) ** 2)


X = jnp.asarray([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], jnp.float32)
C = jnp.asarray([[0.5, 1.0, 2.0], [-1.0, 3.0, 0.1]], jnp.float32)


def test_forward_is_identity():
    np.testing.assert_array_equal(grl.grad_reverse(X, 0.7), X)
    np.testing.assert_array_equal(jax.jit(grl.grad_reverse)(X, 0.7), X)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_backward_is_minus_lam_times_g(lam):
    gx, glam = jax.grad(_loss, argnums=(0, 1))(X, jnp.float32(lam), C)
    np.testing.assert_allclose(gx, -lam * 2.0 * C * X, rtol=1e-6)
    assert glam.shape == () and float(glam) == 0.0


def test_under_jit_and_vmap_over_lam():
    lams = jnp.asarray([0.0, 0.5, 1.0, -2.0], jnp.float32)
    g = jax.jit(jax.vmap(jax.grad(_loss, argnums=(0, 1)), in_axes=(None, 0, None)))
    gx, glam = g(X, lams, C)
    ref = -np.asarray(lams)[:, None, None] * 2.0 * np.asarray(C * X)[None]
    np.testing.assert_allclose(gx, ref, rtol=1e-6)
    np.testing.assert_array_equal(glam, np.zeros(4, np.float32))


def test_reversal_composes_with_upstream_params():
    # d/dw of loss(grl(w * x)) = -lam * d/dw loss(w * x)
    w = jnp.float32(1.5)
    plain = jax.grad(lambda w: jnp.sum(C * (w * X) ** 2))(w)
    rev = jax.grad(lambda w: jnp.sum(C * grl.grad_reverse(w * X, 0.4) ** 2))(w)
    np.testing.assert_allclose(rev, -0.4 * plain, rtol=1e-6)


def test_constant_schedule():
    s = grl.constant(0.3)
    for step in (0, 10, 10_000):
        assert float(s(jnp.int32(step))) == pytest.approx(0.3)


def test_ganin_schedule_values():
    s = jax.jit(grl.ganin(lam_max=2.0, gamma=10.0, total_steps=100))
    for step in (0, 10, 50, 100, 250):
        p = min(step / 100, 1.0)
        ref = 2.0 * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)
        assert float(s(jnp.int32(step))) == pytest.approx(ref, rel=1e-5, abs=1e-7)
    assert float(s(jnp.int32(0))) == 0.0
    vals = jax.vmap(s)(jnp.arange(0, 120, dtype=jnp.int32))
    assert np.all(np.diff(np.asarray(vals)) >= 0)
    with pytest.raises(ValueError):
        grl.ganin(total_steps=0)


def test_warmup_schedule_values():
    s = jax.jit(grl.warmup(lam=0.8, warmup_steps=10, delay_steps=5))
    got = [float(s(jnp.int32(t))) for t in (0, 5, 6, 10, 15, 100)]
    np.testing.assert_allclose(got, [0.0, 0.0, 0.08, 0.4, 0.8, 0.8], rtol=1e-6)
    step_fn = grl.warmup(lam=1.0, warmup_steps=0, delay_steps=3)
    assert [float(step_fn(jnp.int32(t))) for t in (0, 3, 4)] == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        grl.warmup(lam=1.0, warmup_steps=-1)
