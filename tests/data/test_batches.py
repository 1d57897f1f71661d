"""Tests for transferjax.data.batches: epoch batches, padded histories, the embedding-bag."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.data.batches import (
    epoch_batches,
    gather_bag,
    interest_bags,
    padded_history,
    to_dense_interest,
)
from transferjax.data.types import DataError, Interactions


@pytest.mark.parametrize("n,batch", [(10, 4), (12, 4), (3, 8)])
def test_epoch_batches_cover_each_index_once(n, batch):
    idx, mask = epoch_batches(jax.random.key(0), n, batch)
    steps = -(-n // batch)
    assert idx.shape == mask.shape == (steps, batch)
    assert idx.dtype == jnp.int32 and mask.dtype == jnp.bool_
    idx, mask = np.asarray(idx), np.asarray(mask)
    np.testing.assert_array_equal(np.sort(idx[mask]), np.arange(n))
    assert mask.sum() == n and (idx[~mask] == 0).all()
    assert mask.ravel()[:n].all()  # padding only at the end


def test_epoch_batches_seeded_and_traced_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(key):
        return epoch_batches(key, 37, 8)

    a, _ = run(jax.random.key(1))
    b, _ = run(jax.random.key(1))
    c, _ = run(jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _inter(timestamps=True):
    # user 0: items 3,1,4,5 rated 2,5,5,1; user 1: none; user 2: items 0,2 rated 4,3.
    user = np.array([0, 0, 0, 0, 2, 2])
    item = np.array([3, 1, 4, 5, 0, 2])
    rating = np.array([2, 5, 5, 1, 4, 3], np.float32)
    ts = np.array([10, 20, 30, 40, 5, 6]) if timestamps else None
    return Interactions(user, item, rating, 3, 6, timestamp=ts)


def test_padded_history_orders_and_truncates():
    inter = _inter()
    h = padded_history(inter, max_len=3, order="rating")
    # Rating ties (items 1 and 4, both 5) go to the most recent first.
    np.testing.assert_array_equal(h.items, [[4, 1, 3], [0, 0, 0], [0, 2, 0]])
    np.testing.assert_array_equal(h.weights, [[5, 5, 2], [0, 0, 0], [4, 3, 0]])
    np.testing.assert_array_equal(h.mask, [[1, 1, 1], [0, 0, 0], [1, 1, 0]])
    np.testing.assert_array_equal(h.length, [3, 0, 2])
    assert h.items.dtype == np.int32 and h.weights.dtype == np.float32
    recent = padded_history(inter, max_len=2, order="recent")
    np.testing.assert_array_equal(recent.items, [[5, 4], [0, 0], [2, 0]])
    pos = padded_history(inter, max_len=5, order="rating", min_rating=4)
    np.testing.assert_array_equal(pos.length, [2, 0, 1])
    assert (pos.weights[pos.mask] >= 4).all()


def test_padded_history_random_is_seeded_permutation():
    inter = _inter()
    a = padded_history(inter, max_len=4, order="random", seed=0)
    b = padded_history(inter, max_len=4, order="random", seed=0)
    np.testing.assert_array_equal(a.items, b.items)
    assert sorted(a.items[0].tolist()) == [1, 3, 4, 5]
    orders = {
        tuple(padded_history(inter, max_len=4, order="random", seed=s).items[0]) for s in range(8)
    }
    assert len(orders) > 1
    with pytest.raises(DataError, match="timestamps"):
        padded_history(_inter(timestamps=False), max_len=2, order="recent")
    with pytest.raises(ValueError, match="order"):
        padded_history(inter, max_len=2, order="oldest")


def test_interest_bags_dense_and_normalisation():
    inter = _inter()
    dense_ref = np.zeros((3, 6), np.float32)
    dense_ref[inter.user, inter.item] = inter.rating
    bags = interest_bags(inter)
    assert bags.items.shape == (3, 4)
    np.testing.assert_array_equal(to_dense_interest(bags, 6), dense_ref)
    l1 = to_dense_interest(interest_bags(inter, normalize="l1"), 6)
    np.testing.assert_allclose(l1.sum(1), [1, 0, 1], rtol=1e-6)
    sq = to_dense_interest(interest_bags(inter, normalize="sqrt"), 6)
    np.testing.assert_allclose(sq, dense_ref / np.sqrt([[4], [1], [2]]), rtol=1e-6)
    top2 = interest_bags(inter, max_len=2)
    np.testing.assert_array_equal(np.sort(top2.items[0]), [1, 4])


def _random_history(rng, n_users, n_items, max_len):
    n = n_users * 3
    user = rng.integers(0, n_users, n)
    item = rng.integers(0, n_items, n)
    keep = np.unique(user * n_items + item, return_index=True)[1]  # no duplicate pairs
    inter = Interactions(user[keep], item[keep], rng.uniform(1, 5, len(keep)), n_users, n_items)
    return padded_history(inter, max_len=max_len, order="random", seed=1)


def test_gather_bag_equals_dense_matmul_values_and_grads():
    rng = np.random.default_rng(0)
    h = _random_history(rng, n_users=7, n_items=11, max_len=4)
    assert not h.mask.all() and h.mask.any()  # padding and truncation both exercised
    table = rng.standard_normal((11, 5)).astype(np.float32)
    cot = rng.standard_normal((7, 5)).astype(np.float32)
    dense = to_dense_interest(h, 11)

    out = jax.jit(gather_bag)(jnp.asarray(table), h.items, h.weights, h.mask)
    np.testing.assert_allclose(out, dense @ table, rtol=1e-5, atol=1e-5)

    def loss(t):
        return jnp.sum(gather_bag(t, h.items, h.weights, h.mask) * cot)

    grad = jax.jit(jax.grad(loss))(jnp.asarray(table))
    np.testing.assert_allclose(grad, dense.T @ cot, rtol=1e-5, atol=1e-5)
    # Rows of items no user touches get exactly zero gradient.
    untouched = ~np.isin(np.arange(11), h.items[h.mask])
    assert (np.asarray(grad)[untouched] == 0).all()


def test_history_is_a_pytree_usable_in_jit():
    h = _random_history(np.random.default_rng(1), n_users=4, n_items=6, max_len=3)
    table = jnp.ones((6, 2), jnp.float32)
    out = jax.jit(lambda hist: gather_bag(table, hist.items, hist.weights, hist.mask))(h)
    np.testing.assert_allclose(out[:, 0], (h.weights * h.mask).sum(1), rtol=1e-6)
