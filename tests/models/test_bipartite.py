"""The bipartite graph products: A_w x and A_w^T y against dense numpy, gradients as the other
product, the same bits as one segment_sum over the given edge order (the chunked CPU form
included), vmap, and the edge lists' checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import bipartite as B

RNG = np.random.default_rng(0)
N_U, N_I, D = 7, 5, 3
# repeated edges (0, 1) and (3, 2), user 6 and item 4 without edges, unsorted order
USER = np.array([3, 0, 2, 0, 1, 3, 5, 0, 2, 3, 1])
ITEM = np.array([2, 1, 0, 1, 3, 2, 0, 3, 1, 0, 1])
W = RNG.random(len(USER)).astype(np.float32)


def _graph(user=USER, item=ITEM, **weights):
    return {k: jnp.asarray(a) for k, a in B.bipartite(user, item, **weights).items()}


def _dense(user=USER, item=ITEM, w=W, n_u=N_U, n_i=N_I):
    a = np.zeros((n_u, n_i), np.float64)
    np.add.at(a, (user, item), w.astype(np.float64))
    return a


@pytest.mark.parametrize("chunk", [1024, 4, 3])  # one sum; chunks that split the edges
def test_products_equal_the_dense_adjacency(monkeypatch, chunk):
    monkeypatch.setattr(B, "CHUNK", chunk)
    g = _graph(w=W, v=2 * W)
    x = RNG.normal(size=(N_I, D)).astype(np.float32)
    y = RNG.normal(size=(N_U, D)).astype(np.float32)
    a = _dense()
    np.testing.assert_allclose(jax.jit(lambda x: B.to_users(g, "w", x, N_U))(x), a @ x, 1e-5)
    np.testing.assert_allclose(jax.jit(lambda y: B.to_items(g, "w", y, N_I))(y), a.T @ y, 1e-5)
    np.testing.assert_allclose(B.to_users(g, "v", x, N_U), 2 * a @ x, 1e-5)
    assert not np.any(B.to_users(g, "w", x, N_U)[6]) and not np.any(B.to_items(g, "w", y, N_I)[4])


@pytest.mark.parametrize("chunk", [1024, 4])
def test_the_bits_of_one_segment_sum_over_the_given_order(monkeypatch, chunk):
    """Each output row adds its edges in the given order, forward and backward."""
    monkeypatch.setattr(B, "CHUNK", chunk)
    u, i = RNG.integers(0, 40, 3000), RNG.integers(0, 30, 3000)
    w = RNG.random(3000).astype(np.float32)
    g = _graph(u, i, w=w)
    x = jnp.asarray(RNG.normal(size=(30, 8)), jnp.float32)
    y = jnp.asarray(RNG.normal(size=(40, 8)), jnp.float32)
    wj, uj, ij = jnp.asarray(w)[:, None], jnp.asarray(u), jnp.asarray(i)

    def ours(x, y):
        return jnp.sum(B.to_users(g, "w", x, 40) ** 2) + jnp.sum(jnp.sin(B.to_items(g, "w", y, 30)))

    def plain(x, y):
        a = jax.ops.segment_sum(wj * x[ij], uj, num_segments=40)
        return jnp.sum(a**2) + jnp.sum(
            jnp.sin(jax.ops.segment_sum(wj * y[uj], ij, num_segments=30))
        )

    got = jax.jit(jax.value_and_grad(ours, argnums=(0, 1)))(x, y)
    want = jax.jit(jax.value_and_grad(plain, argnums=(0, 1)))(x, y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_gradients_are_the_transposed_products(monkeypatch):
    monkeypatch.setattr(B, "CHUNK", 4)
    g = _graph(w=W)
    a = _dense()
    x = RNG.normal(size=(N_I, D)).astype(np.float32)
    y = RNG.normal(size=(N_U, D)).astype(np.float32)
    cu = RNG.normal(size=(N_U, D)).astype(np.float32)
    ci = RNG.normal(size=(N_I, D)).astype(np.float32)
    gx = jax.grad(lambda x: jnp.sum(cu * B.to_users(g, "w", x, N_U)))(x)
    gy = jax.grad(lambda y: jnp.sum(ci * B.to_items(g, "w", y, N_I)))(y)
    np.testing.assert_allclose(gx, a.T @ cu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gy, a @ ci, rtol=1e-5, atol=1e-6)
    # second order through the custom rule: the product is linear, so grad of grad is zero
    hx = jax.grad(
        lambda x: jnp.sum(jax.grad(lambda z: jnp.sum(B.to_users(g, "w", z, N_U) ** 2))(x))
    )
    np.testing.assert_allclose(hx(x), 2 * a.T @ a @ np.ones((N_I, D)), rtol=1e-5, atol=1e-5)


def test_vmapped_over_trials(monkeypatch):
    monkeypatch.setattr(B, "CHUNK", 4)
    g = _graph(w=W)
    # its own generator: the module's RNG state depends on which tests ran before (xdist)
    xs = np.random.default_rng(7).normal(size=(3, N_I, D)).astype(np.float32)
    out = jax.vmap(lambda x: B.to_users(g, "w", x, N_U))(xs)
    want = np.einsum("ui,tid->tud", _dense(), xs)  # float64: sums near 0 need an atol
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_edge_lists_keep_both_orders_and_refuse_mismatched_lengths():
    g = B.bipartite(USER, ITEM, w=W)
    assert list(g["u"]) == sorted(USER) and list(g["t_i"]) == sorted(ITEM)
    assert sorted(zip(g["u"], g["i"], g["w"])) == sorted(zip(g["t_u"], g["t_i"], g["t_w"]))
    with pytest.raises(ValueError, match="11 user ends but 10 item ends"):
        B.bipartite(USER, ITEM[:10])
    with pytest.raises(ValueError, match="weight 'w' has 3 values for 11 edges"):
        B.bipartite(USER, ITEM, w=W[:3])
