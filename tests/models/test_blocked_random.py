"""Draws in blocks of rows: the documented stream, its statistics, one call when small."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import blocked_random as R


def test_blocks_are_the_split_keys_draws_stacked_and_cut(monkeypatch):
    monkeypatch.setattr(R, "BLOCK", 4)
    key = jax.random.key(3)
    out = np.asarray(R.normal(key, (10, 2)))
    ks = jax.random.split(key, 3)
    ref = np.concatenate([np.asarray(jax.random.normal(k, (4, 2))) for k in ks])[:10]
    np.testing.assert_array_equal(out, ref)
    small = np.asarray(R.normal(key, (4, 2)))  # fits one block: the plain call
    np.testing.assert_array_equal(small, np.asarray(jax.random.normal(key, (4, 2))))
    mask = np.asarray(R.bernoulli(key, 0.5, (9,)))
    ref = np.concatenate([np.asarray(jax.random.bernoulli(k, 0.5, (4,))) for k in ks])[:9]
    np.testing.assert_array_equal(mask, ref)


def test_vmap_and_loop_forms_give_the_same_values(monkeypatch):
    monkeypatch.setattr(R, "BLOCK", 8)
    key = jax.random.key(0)
    loop = np.asarray(jax.jit(lambda k: R.normal(k, (30, 3)))(key))
    monkeypatch.setattr(R.jax, "default_backend", lambda: "gpu")  # the vmap form
    batched = np.asarray(jax.jit(lambda k: R.normal(k, (30, 3)))(key))
    np.testing.assert_array_equal(loop, batched)


@pytest.mark.parametrize("p", [0.3, 0.7])
def test_statistics_over_many_blocks(p):
    key = jax.random.key(1)
    z = np.asarray(R.normal(key, (5000, 64), jnp.float32))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(np.corrcoef(z[:-512].ravel(), z[512:].ravel())[0, 1]) < 0.01  # blocks differ
    m = np.asarray(R.bernoulli(key, p, (5000, 64)))
    assert abs(m.mean() - p) < 0.005
