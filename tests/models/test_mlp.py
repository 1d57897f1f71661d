"""MLP stacks against numpy, with and without a final activation; stacked (lead) params."""

import jax
import numpy as np
import pytest

from transferjax.models import mlp


def _np_mlp(params, x, final=True):
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        if i < len(params) - 1 or final:
            h = np.maximum(h, 0.0)
    return h


def test_mlp_matches_numpy():
    params = mlp.mlp_init(jax.random.key(0), (5, 8, 3))
    assert [p["w"].shape for p in params] == [(5, 8), (8, 3)]
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    for final in (True, False):
        got = mlp.mlp_apply(params, x, final_activation=final)
        np.testing.assert_allclose(got, _np_mlp(params, x, final), rtol=1e-5, atol=1e-6)
    stacked = mlp.mlp_init(jax.random.key(1), (5, 3), lead=(2,))
    assert stacked[0]["w"].shape == (2, 5, 3) and stacked[0]["b"].shape == (2, 3)
    with pytest.raises(ValueError):
        mlp.mlp_init(jax.random.key(0), (5,))


def test_dropout_is_inverted_bernoulli_dropout():
    """Each entry is zeroed with probability rate or scaled by 1 / (1 - rate) (the mean is
    kept), by the mask jax.random.bernoulli draws; the identity without a key; the rate may
    be traced."""
    x = np.random.default_rng(0).normal(size=(400, 250)).astype(np.float32)
    key = jax.random.key(3)
    got = np.asarray(jax.jit(mlp.dropout)(x, 0.3, key))
    keep = np.asarray(jax.random.bernoulli(key, 0.7, x.shape))
    np.testing.assert_allclose(got, np.where(keep, x / np.float32(0.7), 0.0), rtol=1e-6)
    assert abs((got == 0).mean() - 0.3) < 0.01  # 100,000 draws: std 0.0014
    assert mlp.dropout(x, 0.3, None) is x
    np.testing.assert_array_equal(mlp.dropout(x, 0.0, key), x)
