"""Products with the weighted adjacency of a user-item bipartite graph, as edge lists.

A graph of e edges (u_k, i_k) with one or more weight vectors w (one weight per edge) defines
A_w f32[n_users, n_items], A_w[u, i] = sum of w_k over the edges k = (u, i), and two products:

    to_users(g, "w", x) = A_w x      x f32[n_items, d] -> f32[n_users, d]
    to_items(g, "w", y) = A_w^T y    y f32[n_users, d] -> f32[n_items, d]

each the gradient of the other (the weights are constants: no gradient reaches them). No
users x items matrix is formed: a product gathers the rows of x its edges read, weighs them
and sums them into their output rows (a scatter-add over edges sorted by output row).

`bipartite(user, item, ...)` keeps the edges twice, sorted by user and sorted by item (each a
stable sort of the given order, so every output row sums its edges in the given order, exactly
as one `jax.ops.segment_sum` over the given order does: the two give the same bits). On a CPU
the sum runs over chunks of CHUNK edges (`lax.fori_loop`), so the gathered rows of a chunk stay
in cache instead of an f32[e, d] array going through memory; on the ML-1M graph (835,789 edges)
that makes one forward and backward product pair 2-3 times faster
(`python -m benchmarks.graph_products`). Other backends sum all edges at once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CHUNK", "bipartite", "to_items", "to_users"]

CHUNK = 1024  # edges per step of the CPU sum: `python -m benchmarks.graph_products`
_T = "t_"  # key prefix of the item-sorted copy


def bipartite(user, item, **weights) -> dict:
    """The graph's edges in both orders, as host arrays.

    Args:
      user, item: int[e] the edges' ends, in the order whose per-row summation the products
        keep (module docstring).
      weights: name=f32[e] per weight vector, in the same order.

    Returns:
      {"u", "i": i32[e] sorted by user, name: f32[e] likewise, "t_u", "t_i", "t_" + name: the
      same sorted by item}: a flat dict, so `{k: jnp.asarray(a) for ...}` moves it to a device.
    """
    u, i = np.asarray(user, np.int32).reshape(-1), np.asarray(item, np.int32).reshape(-1)
    if u.shape != i.shape:
        raise ValueError(f"bipartite: {u.shape[0]} user ends but {i.shape[0]} item ends")
    ws = {name: np.asarray(w, np.float32).reshape(-1) for name, w in weights.items()}
    for name, w in ws.items():
        if w.shape != u.shape:
            raise ValueError(
                f"bipartite: weight {name!r} has {w.shape[0]} values for {len(u)} edges"
            )
    out = {}
    for prefix, key in (("", u), (_T, i)):
        order = np.argsort(key, kind="stable")
        out[prefix + "u"], out[prefix + "i"] = u[order], i[order]
        out.update({prefix + name: w[order] for name, w in ws.items()})
    return out


def _sorted_sum(x: jax.Array, rows: jax.Array, cols: jax.Array, w: jax.Array, n_rows: int):
    """out f32[n_rows, d], out[r] = sum over k with rows[k] = r of w[k] x[cols[k]] (rows sorted
    ascending; each row's terms added in edge order)."""
    x = jnp.asarray(x)
    e = rows.shape[0]
    w = w.astype(x.dtype)
    if jax.default_backend() != "cpu" or e <= CHUNK:
        return jax.ops.segment_sum(
            w[:, None] * x[cols], rows, num_segments=n_rows, indices_are_sorted=True
        )
    pad = -e % CHUNK  # padded edges point past the output and are dropped
    rows = jnp.pad(rows, (0, pad), constant_values=n_rows).reshape(-1, CHUNK)
    cols = jnp.pad(cols, (0, pad)).reshape(-1, CHUNK)
    w = jnp.pad(w, (0, pad)).reshape(-1, CHUNK)

    def step(k, acc):
        terms = w[k][:, None] * x[cols[k]]
        return acc.at[rows[k]].add(terms, mode="drop", indices_are_sorted=True)

    init = jnp.zeros((n_rows, x.shape[1]), x.dtype)
    return jax.lax.fori_loop(0, rows.shape[0], step, init)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 3, 4))
def _product(g: dict, w: str, x: jax.Array, n_out: int, to_user: bool) -> jax.Array:
    if to_user:
        return _sorted_sum(x, g["u"], g["i"], g[w], n_out)
    return _sorted_sum(x, g[_T + "i"], g[_T + "u"], g[_T + w], n_out)


def _product_fwd(g, w, x, n_out, to_user):
    return _product(g, w, x, n_out, to_user), (g, x.shape[0])


def _product_bwd(w, n_out, to_user, res, ct):
    g, n_in = res
    return None, _product(g, w, ct, n_in, not to_user)  # None: no gradient for the graph


_product.defvjp(_product_fwd, _product_bwd)


def to_users(g: dict, w: str, x: jax.Array, n_users: int) -> jax.Array:
    """A_w x: f32[n_items, d] -> f32[n_users, d] (module docstring); `g` a `bipartite` dict
    of device arrays, `w` the name of its weight vector."""
    return _product(g, w, x, n_users, True)


def to_items(g: dict, w: str, y: jax.Array, n_items: int) -> jax.Array:
    """A_w^T y: f32[n_users, d] -> f32[n_items, d] (module docstring)."""
    return _product(g, w, y, n_items, False)
