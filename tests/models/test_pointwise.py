"""Pointwise training pieces: the CSR membership test and the negative sampler against numpy,
the pointwise batch layout, BCE against numpy, and the split first dense layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models.mlp import dense_parts, xavier_normal
from transferjax.models.pointwise import (
    bce_with_logits,
    contains,
    pointwise_loss,
    positive_index,
    sample_unseen,
    with_negatives,
)

RNG = np.random.default_rng(0)
USER = RNG.integers(0, 7, 60)
ITEM = RNG.integers(0, 11, 60)


def test_positive_index_and_contains_match_numpy():
    index = positive_index(USER, ITEM, 8)  # user 7 has no row
    seen = {(u, i) for u, i in zip(USER, ITEM)}
    assert index["indptr"][-1] == len(seen) and index["indptr"][7] == index["indptr"][8]
    uu, ii = np.meshgrid(np.arange(8), np.arange(11), indexing="ij")
    got = contains({k: jnp.asarray(v) for k, v in index.items()}, jnp.asarray(uu), jnp.asarray(ii))
    want = np.array([[(u, i) in seen for i in range(11)] for u in range(8)])
    np.testing.assert_array_equal(got, want)
    empty = positive_index(np.zeros(0, int), np.zeros(0, int), 3)
    assert not np.any(contains(empty, jnp.arange(3), jnp.arange(3)))


def test_sample_unseen_avoids_positives_and_covers_the_rest():
    index = {k: jnp.asarray(v) for k, v in positive_index(USER, ITEM, 8).items()}
    users = jnp.asarray(np.repeat(np.arange(8), 200))
    neg = np.asarray(sample_unseen(jax.random.key(1), index, users, n_items=11, n=3, tries=64))
    assert neg.shape == (1600, 3) and neg.min() >= 0 and neg.max() < 11
    seen = {(u, i) for u, i in zip(USER, ITEM)}
    for u in range(8):
        drawn = set(neg[np.asarray(users) == u].ravel())
        unseen = {i for i in range(11) if (u, i) not in seen}
        assert drawn == unseen, u  # never a positive, every other item reached


def test_with_negatives_layout():
    batch = {
        "user": jnp.array([3, 5]),
        "item": jnp.array([0, 1]),
        "rating": jnp.array([4.0, 2.0]),
        "mask": jnp.array([True, False]),
    }
    rows = with_negatives(batch, jnp.array([[7, 8], [9, 6]]))
    np.testing.assert_array_equal(rows["user"], [3, 5, 3, 5, 3, 5])
    np.testing.assert_array_equal(rows["item"], [0, 1, 7, 9, 8, 6])  # draw by draw
    np.testing.assert_array_equal(rows["label"], [1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(rows["mask"], [True, False] * 3)
    assert "rating" not in rows


def test_bce_matches_numpy_and_is_stable():
    z = np.array([-3.0, 0.5, 2.0, 40.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    m = np.array([True, True, True, False])
    p = 1 / (1 + np.exp(-z[:3]))
    want = -np.mean(y[:3] * np.log(p) + (1 - y[:3]) * np.log(1 - p))
    np.testing.assert_allclose(bce_with_logits(jnp.asarray(z), y, m), want, rtol=1e-6)
    assert np.isfinite(float(bce_with_logits(jnp.asarray([200.0]), jnp.zeros(1), jnp.ones(1))))


def test_pointwise_loss_mse_and_unknown_kind():
    batch = {
        "user": jnp.array([0, 1, 2]),
        "item": jnp.array([2, 0, 1]),
        "rating": jnp.array([4.0, 2.0, 9.0]),
        "mask": jnp.array([True, True, False]),
    }

    def logits(u, i, k):
        return u.astype(jnp.float32) + 0.5 * i.astype(jnp.float32)

    got = pointwise_loss(logits, batch, kind="mse", key=jax.random.key(0), mu=3.0)
    np.testing.assert_allclose(got, ((4 - 4.0) ** 2 + (2 - 4.0) ** 2) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="bce, mse"):
        pointwise_loss(logits, batch, kind="bpr", key=jax.random.key(0))


def test_dense_parts_equals_the_dense_layer_on_the_concatenation():
    k = jax.random.split(jax.random.key(0), 4)
    layer = {"w": xavier_normal(k[0], (7, 5)), "b": jnp.arange(5.0)}
    u = jax.random.normal(k[1], (3, 1, 4))
    i = jax.random.normal(k[2], (1, 6, 3))
    got = dense_parts(layer, (u, i))
    cat = jnp.concatenate([jnp.broadcast_to(u, (3, 6, 4)), jnp.broadcast_to(i, (3, 6, 3))], -1)
    np.testing.assert_allclose(got, cat @ layer["w"] + layer["b"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="7"):
        dense_parts(layer, (u,))
    w = xavier_normal(k[3], (400, 300))
    np.testing.assert_allclose(np.std(np.asarray(w)), np.sqrt(2 / 700), rtol=0.03)
