"""The phi encoder against a numpy reference: the interest vector, each first-layer form (values
and gradients equal the dense product), the cost rule, the MLP's linear last layer, the
"attention" and "id" kinds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from transferjax.models import phi as P

N_ITEMS = 11


def _ragged(rng, b=6, L=9, n_items=N_ITEMS):
    """Padded bags with repeats, garbage (NaN, out-of-range ids) in padded slots, an empty row."""
    items = rng.integers(0, n_items, (b, L)).astype(np.int32)
    rating = rng.uniform(1.0, 5.0, (b, L)).astype(np.float32)
    lens = rng.integers(1, L + 1, b)
    lens[0], lens[1] = L, 0
    mask = np.arange(L)[None] < lens[:, None]
    items[~mask] = 10 * n_items
    rating[~mask] = np.nan  # must not leak
    items[0, 1] = items[0, 0]  # a repeated item adds up
    return items, rating, mask


def _np_interest(rating, mask, *, mu, explicit):
    n = mask.sum(1, keepdims=True)
    w = np.where(mask, 1.0, 0.0) / (n + P.SHRINK)
    return np.where(mask, (np.nan_to_num(rating) - mu) * w if explicit else w, 0.0)


def _np_dense(items, weights, mask, n_items=N_ITEMS):
    x = np.zeros((items.shape[0], n_items))
    for r, c in zip(*np.nonzero(mask), strict=True):
        x[r, items[r, c]] += weights[r, c]
    return x


def _np_mlp(layers, h):
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        h = np.maximum(h, 0.0) if i < len(layers) - 1 else h
    return h


@pytest.mark.parametrize("explicit", [True, False])
def test_interest_is_the_shrunk_mean(explicit):
    items, rating, mask = _ragged(np.random.default_rng(0))
    got = P.interest(
        jnp.asarray(np.nan_to_num(rating)), jnp.asarray(mask), mu=3.2, explicit=explicit
    )
    want = _np_interest(rating, mask, mu=3.2, explicit=explicit)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(got)[1], 0.0)  # an empty bag


# every form of the first layer: (layer, capacity given the entries, overflow)
FORMS = [
    ("dense", None, "dense"),
    ("packed", 0, "dense"),
    ("packed", 5, "dense"),
    ("packed", 1000, "dense"),
    ("packed", -1, "dense"),
    ("packed", 0, "nan"),
]


@pytest.mark.parametrize("layer, slack, overflow", FORMS)
def test_each_first_layer_form_equals_the_dense_product(layer, slack, overflow):
    """Values `x @ T` and gradients `x^T g` (w.r.t. the table) and `g T^T` (w.r.t. the
    weights, at real entries) of each form against numpy, including a packed batch one entry
    over its capacity (the exact dense fallback)."""
    rng = np.random.default_rng(1)
    items, rating, mask = _ragged(rng)
    w = _np_interest(rating, mask, mu=3.0, explicit=True).astype(np.float32)
    table = rng.normal(size=(N_ITEMS, 4)).astype(np.float32)
    g = rng.normal(size=(items.shape[0], 4)).astype(np.float32)
    x = _np_dense(items, w, mask)
    cap = 0 if slack is None else int(mask.sum()) + slack

    def f(t, wt):
        return P.first_layer(
            t,
            jnp.asarray(items),
            wt,
            jnp.asarray(mask),
            layer=layer,
            capacity=cap,
            overflow=overflow,
        )

    np.testing.assert_allclose(jax.jit(f)(table, w), x @ table, rtol=1e-5, atol=1e-6)
    gt, gw = jax.jit(jax.grad(lambda t, wt: jnp.sum(f(t, wt) * g), argnums=(0, 1)))(table, w)
    np.testing.assert_allclose(gt, x.T @ g, rtol=1e-5, atol=1e-6)
    want_gw = np.where(mask, (g @ table.T)[np.arange(6)[:, None], np.clip(items, 0, 10)], 0.0)
    np.testing.assert_allclose(np.where(mask, gw, 0.0), want_gw, rtol=1e-5, atol=1e-6)


def test_packed_over_capacity_is_nan_without_the_dense_form_under_vmap():
    rng = np.random.default_rng(2)
    items, rating, mask = _ragged(rng)
    w = jnp.asarray(_np_interest(rating, mask, mu=0.0, explicit=False), jnp.float32)
    table = jnp.asarray(rng.normal(size=(N_ITEMS, 4)), jnp.float32)
    cap = int(mask.sum())

    def f(m, cap=cap, overflow="nan"):
        return P.packed_matmul(table, items, w, m, capacity=cap, overflow=overflow)

    assert np.all(np.isnan(f(mask, cap - 1)))  # over capacity: loud, not truncated
    m2 = np.stack([mask, mask & (np.arange(mask.shape[1]) < 2)])  # a batched mask
    assert "dot_general" not in str(jax.make_jaxpr(jax.vmap(f))(m2))
    dense_too = jax.make_jaxpr(jax.vmap(lambda m: f(m, overflow="dense")))(m2)
    assert "dot_general" in str(dense_too)  # the default keeps the exact dense fallback
    with pytest.raises(ValueError, match="overflow='drop'"):
        f(mask, overflow="drop")
    with pytest.raises(ValueError, match="valid: dense, packed"):
        P.first_layer(table, items, w, mask, layer="ell")


def test_the_cost_rule_picks_packed_for_short_bags_only():
    assert P.choose_layer(batch=256, capacity=12_535, n_items=12_319) == "packed"  # long tail
    assert P.choose_layer(batch=256, capacity=237_353, n_items=3_706) == "dense"  # long bags
    n = 256 * 1000
    assert P.choose_layer(batch=256, capacity=n // P.PACKED_COST, n_items=1000) == "packed"
    assert P.choose_layer(batch=256, capacity=n // P.PACKED_COST + 1, n_items=1000) == "dense"
    assert P.choose_layer(batch=256, capacity=None, n_items=10**9) == "dense"


@pytest.mark.parametrize("dims", [(6, 4, 3), (5,)])
@pytest.mark.parametrize("capacity", [None, lambda b: 60])  # dense / packed (60 >= entries)
@pytest.mark.slow
def test_bag_encoder_is_an_mlp_with_a_linear_last_layer(dims, capacity):
    rng = np.random.default_rng(3)
    items, rating, mask = _ragged(rng)
    init, apply = P.encoder(
        kind="bag", n_items=N_ITEMS, n_users=4, dims=dims, mu=3.0, explicit=True, capacity=capacity
    )
    params = init(jax.random.key(0))
    params["b"] = params["b"] + 0.1  # ReLU cut-offs exercised both ways
    assert params["emb"].shape == (N_ITEMS, dims[0]) and len(params["mlp"]) == len(dims) - 1
    x = _np_dense(items, _np_interest(rating, mask, mu=3.0, explicit=True), mask)
    h = x @ np.asarray(params["emb"], np.float64) + np.asarray(params["b"], np.float64)
    want = _np_mlp(params["mlp"], np.maximum(h, 0.0)) if params["mlp"] else h
    rating = np.nan_to_num(rating)
    for distinct in (False, True):
        got = apply(params, items, rating, mask, distinct=distinct)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.any(want < 0)  # the last layer is linear: z is signed

    def loss(p, fn):
        return jnp.sum(fn(p, items, rating, mask, distinct=True) ** 2)

    dense = P.encoder(kind="bag", n_items=N_ITEMS, n_users=4, dims=dims, mu=3.0, explicit=True)[1]
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        jax.grad(loss)(params, apply),
        jax.grad(loss)(params, dense),
    )


@pytest.mark.slow
def test_attention_kind_pools_the_real_entries():
    rng = np.random.default_rng(4)
    items, _, mask = _ragged(rng)
    init, apply = P.encoder(kind="attention", n_items=N_ITEMS, n_users=4, dims=(4,))
    params = init(jax.random.key(5))
    out = jax.jit(apply)(params, items, jnp.zeros(items.shape), mask)
    pool = params["pool"]
    e = np.asarray(pool["emb"], np.float64)[np.clip(items, 0, N_ITEMS - 1)]
    s = np.tanh(e @ np.asarray(pool["w"]) + np.asarray(pool["c"])) @ np.asarray(pool["v"])
    for r in range(items.shape[0]):
        m = mask[r]
        a = np.exp(s[r][m] - s[r][m].max()) if m.any() else np.zeros(0)
        want = (a / a.sum()) @ e[r][m] if m.any() else np.zeros(4)
        np.testing.assert_allclose(out[r], want, rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda p: jnp.sum(apply(p, items, jnp.zeros(items.shape), mask) ** 2))(params)
    assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(g))  # the empty row too


def test_id_kind_embeds_the_user_then_the_mlp():
    init, apply = P.encoder(kind="id", n_items=N_ITEMS, n_users=5, dims=(3, 2))
    params = init(jax.random.key(6))
    users = jnp.asarray([4, 0, -1])
    z = apply(
        params, jnp.zeros((3, 2), jnp.int32), jnp.zeros((3, 2)), jnp.ones((3, 2), bool), users
    )
    h = np.asarray(params["id"]["emb"], np.float64)[[4, 0, 0]]
    np.testing.assert_allclose(z, _np_mlp(params["mlp"], np.maximum(h, 0)), rtol=1e-5, atol=1e-6)


def test_bad_kind_and_sizes_raise():
    with pytest.raises(ValueError, match="valid: bag, attention, id"):
        P.encoder(kind="ell", n_items=3, n_users=3, dims=(2,))
    with pytest.raises(ValueError, match="positive dims"):
        P.encoder(kind="bag", n_items=3, n_users=3, dims=())
