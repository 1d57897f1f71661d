"""phi encoders: MLP, embedding-bag == dense (values, grads), id embedding, attention pooling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import encoders as enc

N_ITEMS = 11


def _bag():
    items = jnp.asarray([[1, 4, 4, 7, 0], [2, 3, 9, 0, 0], [10, 0, 0, 0, 0]], jnp.int32)
    weights = jnp.asarray(
        [[1.0, 0.5, 2.0, 3.0, 9.0], [4.0, 1.0, 0.5, 9.0, 9.0], [2.0, 9.0, 9.0, 9.0, 9.0]]
    )
    mask = jnp.asarray([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool)
    return items, weights, mask


def _np_dense(items, weights, mask):
    x = np.zeros((items.shape[0], N_ITEMS), np.float64)
    items, weights, mask = np.asarray(items), np.asarray(weights), np.asarray(mask)
    for b in range(items.shape[0]):
        for j in range(items.shape[1]):
            if mask[b, j]:
                x[b, items[b, j]] += weights[b, j]
    return x


def _np_mlp(params, x, final=True):
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        if i < len(params) - 1 or final:
            h = np.maximum(h, 0.0)
    return h


def test_mlp_matches_numpy():
    params = enc.mlp_init(jax.random.key(0), (5, 8, 3))
    assert [p["w"].shape for p in params] == [(5, 8), (8, 3)]
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    for final in (True, False):
        got = enc.mlp_apply(params, x, final_activation=final)
        np.testing.assert_allclose(got, _np_mlp(params, x, final), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        enc.mlp_init(jax.random.key(0), (5,))


def test_bag_to_dense_matches_numpy():
    items, weights, mask = _bag()
    got = enc.bag_to_dense(items, weights, mask, n_items=N_ITEMS)
    np.testing.assert_allclose(got, _np_dense(items, weights, mask))


def test_bag_encoder_equals_dense_values_and_numpy():
    params = enc.bag_encoder_init(jax.random.key(1), n_items=N_ITEMS, dims=(6, 4, 3))
    params["b"] = params["b"] + 0.1  # non-zero bias so ReLU cut-offs are exercised both ways
    items, weights, mask = _bag()
    x = _np_dense(items, weights, mask)
    bag = enc.bag_encoder_apply(params, items, weights, mask)
    dense = enc.dense_encoder_apply(params, jnp.asarray(x, jnp.float32))
    assert bag.shape == (3, 3)
    np.testing.assert_allclose(bag, dense, rtol=1e-5, atol=1e-6)
    h = np.maximum(x @ np.asarray(params["emb"], np.float64) + np.asarray(params["b"]), 0.0)
    np.testing.assert_allclose(bag, _np_mlp(params["mlp"], h), rtol=1e-5, atol=1e-6)


def test_bag_encoder_equals_dense_gradients():
    params = enc.bag_encoder_init(jax.random.key(2), n_items=N_ITEMS, dims=(6, 4))
    items, weights, mask = _bag()
    x = jnp.asarray(_np_dense(items, weights, mask), jnp.float32)
    target = jnp.linspace(-1.0, 1.0, 3 * 4).reshape(3, 4)

    def loss_bag(p, w):
        return jnp.sum((enc.bag_encoder_apply(p, items, w, mask) - target) ** 2)

    def loss_dense(p, x):
        return jnp.sum((enc.dense_encoder_apply(p, x) - target) ** 2)

    gp_bag, gw = jax.jit(jax.grad(loss_bag, argnums=(0, 1)))(params, weights)
    gp_dense, gx = jax.jit(jax.grad(loss_dense, argnums=(0, 1)))(params, x)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), gp_bag, gp_dense
    )
    assert float(jnp.abs(gp_bag["emb"]).sum()) > 0
    # d/dw_l = dL/dx[item_l] for real entries, 0 for padding
    ref_gw = np.where(np.asarray(mask), np.take_along_axis(np.asarray(gx), np.asarray(items), 1), 0)
    np.testing.assert_allclose(gw, ref_gw, rtol=1e-5, atol=1e-6)
    # rows of items nobody touched get no gradient
    untouched = np.setdiff1d(np.arange(N_ITEMS), np.asarray(items)[np.asarray(mask)])
    assert np.all(np.asarray(gp_bag["emb"])[untouched] == 0)


def test_bag_encoder_ignores_padding_ids():
    params = enc.bag_encoder_init(jax.random.key(3), n_items=N_ITEMS, dims=(4,))
    items, weights, mask = _bag()
    junk = jnp.where(mask, items, jnp.int32(-5))
    junk2 = jnp.where(mask, items, jnp.int32(10_000))
    a = enc.bag_encoder_apply(params, items, weights, mask)
    np.testing.assert_array_equal(a, enc.bag_encoder_apply(params, junk, weights, mask))
    np.testing.assert_array_equal(a, enc.bag_encoder_apply(params, junk2, weights, mask))


def test_id_encoder():
    params = enc.id_encoder_init(jax.random.key(4), n_users=5, dim=3)
    user = jnp.asarray([4, 0, 4], jnp.int32)
    got = enc.id_encoder_apply(params, user)
    np.testing.assert_array_equal(got, np.asarray(params["emb"])[[4, 0, 4]])


def test_attention_pool_masks_and_weights():
    params = enc.attention_pool_init(jax.random.key(5), n_items=N_ITEMS, dim=4)
    items, _, mask = _bag()
    out = jax.jit(enc.attention_pool_apply)(params, items, mask)
    assert out.shape == (3, 4)
    # numpy reference
    e = np.asarray(params["emb"], np.float64)[np.asarray(items)]
    s = np.tanh(e @ np.asarray(params["w"]) + np.asarray(params["c"])) @ np.asarray(params["v"])
    ref = []
    for b in range(3):
        m = np.asarray(mask[b])
        a = np.exp(s[b][m] - s[b][m].max())
        a /= a.sum()
        ref.append(a @ e[b][m])
    np.testing.assert_allclose(out, np.stack(ref), rtol=1e-5, atol=1e-6)
    # a single item: the output is that item's embedding
    np.testing.assert_allclose(out[2], np.asarray(params["emb"])[10], rtol=1e-6)
    # changing a masked item does not change the output
    items2 = items.at[0, 4].set(3).at[1, 3].set(8)
    np.testing.assert_array_equal(out, enc.attention_pool_apply(params, items2, mask))


@pytest.mark.slow
def test_attention_pool_fully_masked_row_is_zero_with_finite_grads():
    params = enc.attention_pool_init(jax.random.key(6), n_items=N_ITEMS, dim=4)
    items, _, mask = _bag()
    mask = mask.at[1].set(False)
    out = enc.attention_pool_apply(params, items, mask)
    np.testing.assert_array_equal(out[1], np.zeros(4, np.float32))
    g = jax.grad(lambda p: jnp.sum(enc.attention_pool_apply(p, items, mask) ** 2))(params)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))


def test_bag_encoder_first_layer_gradient_matches_numpy():
    # one layer: L = sum(c * relu(x @ W + b)) -> dL/dW = x^T (c * [h > 0]), dL/db = sum_b(...)
    params = enc.bag_encoder_init(jax.random.key(7), n_items=N_ITEMS, dims=(5,))
    items, weights, mask = _bag()
    c = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    g = jax.grad(lambda p: jnp.sum(c * enc.bag_encoder_apply(p, items, weights, mask)))(params)
    x = _np_dense(items, weights, mask)
    pre = x @ np.asarray(params["emb"], np.float64) + np.asarray(params["b"], np.float64)
    delta = c * (pre > 0)
    np.testing.assert_allclose(g["emb"], x.T @ delta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g["b"], delta.sum(0), rtol=1e-5, atol=1e-6)


def _ragged(rng, b=6, L=9, n_items=N_ITEMS):
    """Padded bags with repeats, garbage (NaN, out-of-range) in padded slots, one empty row."""
    items = rng.integers(0, n_items, (b, L)).astype(np.int32)
    weights = rng.uniform(0.5, 2.0, (b, L)).astype(np.float32)
    lens = rng.integers(0, L + 1, b)
    lens[0], lens[1] = L, 0
    mask = np.arange(L)[None] < lens[:, None]
    items[~mask] = 10 * n_items  # out of range, and masked
    weights[~mask] = np.nan  # must not leak
    items[0, 1] = items[0, 0]  # a repeated item adds up
    return items, weights, mask


@pytest.mark.parametrize("slack", [0, 5, 1000])  # capacity = entries + slack (>= b * L: no cond)
def test_packed_bag_matmul_equals_dense_values_and_grads(slack):
    rng = np.random.default_rng(slack)
    items, weights, mask = _ragged(rng)
    table = rng.normal(size=(N_ITEMS, 4)).astype(np.float32)
    x = _np_dense(np.where(mask, items, 0), np.where(mask, weights, 0), mask)
    cap = int(mask.sum()) + slack
    f = jax.jit(lambda t: enc.packed_bag_matmul(t, items, weights, mask, capacity=cap))
    np.testing.assert_allclose(f(table), x @ table, rtol=1e-5, atol=1e-6)
    cot = rng.normal(size=(items.shape[0], 4)).astype(np.float32)
    grad = jax.grad(lambda t: jnp.sum(f(t) * cot))(table)
    np.testing.assert_allclose(grad, x.T @ cot, rtol=1e-5, atol=1e-6)


def test_packed_bag_matmul_overflow_takes_the_dense_product():
    rng = np.random.default_rng(1)
    items, weights, mask = _ragged(rng)
    table = rng.normal(size=(N_ITEMS, 4)).astype(np.float32)
    x = _np_dense(np.where(mask, items, 0), np.where(mask, weights, 0), mask)
    small = int(mask.sum()) - 1  # one entry too many for the packed slots
    out = jax.jit(lambda t, it, w, m: enc.packed_bag_matmul(t, it, w, m, capacity=small))
    np.testing.assert_allclose(out(table, items, weights, mask), x @ table, rtol=1e-5,
                               atol=1e-6)
    # per example under vmap (the cond becomes a select): one batch fits, the other does not
    m2 = np.stack([mask, mask & (np.arange(mask.shape[1]) < 2)])
    x2 = np.stack([x, _np_dense(np.where(m2[1], items, 0), np.where(m2[1], weights, 0), m2[1])])
    vm = jax.vmap(out, in_axes=(None, None, None, 0))(table, items, weights, m2)
    np.testing.assert_allclose(vm, x2 @ table, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_packed_bag_matmul_overflow_nan_skips_the_dense_form_even_under_vmap():
    rng = np.random.default_rng(2)
    items, weights, mask = _ragged(rng)
    table = jnp.asarray(rng.normal(size=(N_ITEMS, 4)), jnp.float32)
    x = _np_dense(np.where(mask, items, 0), np.where(mask, weights, 0), mask)
    cap = int(mask.sum())

    def f(t, m, cap=cap):
        return enc.packed_bag_matmul(t, items, weights, m, capacity=cap, overflow="nan")

    np.testing.assert_allclose(f(table, mask), x @ table, rtol=1e-5, atol=1e-6)
    cot = rng.normal(size=(items.shape[0], 4)).astype(np.float32)
    grad = jax.grad(lambda t: jnp.sum(f(t, mask) * cot))(table)
    np.testing.assert_allclose(grad, x.T @ cot, rtol=1e-5, atol=1e-6)
    assert np.all(np.isnan(f(table, mask, cap - 1)))  # over capacity: loud, not truncated
    m2 = np.stack([mask, mask & (np.arange(mask.shape[1]) < 2)])  # a batched mask
    vm = jax.vmap(f, in_axes=(None, 0))
    jaxpr = str(jax.make_jaxpr(vm)(table, m2))
    assert "dot_general" not in jaxpr and "cond" not in jaxpr  # the dense form never runs
    assert "dot_general" in str(jax.make_jaxpr(jax.vmap(
        lambda t, m: enc.packed_bag_matmul(t, items, weights, m, capacity=cap),
        in_axes=(None, 0)))(table, m2))  # the default keeps the exact dense fallback
    with pytest.raises(ValueError, match="overflow='drop'"):
        enc.packed_bag_matmul(table, items, weights, mask, capacity=cap, overflow="drop")
