"""LightGCN's propagation over a user-item bipartite graph, as sparse edge lists.

The graph is the symmetric normalised adjacency of the training interactions (He et al.,
SIGIR 2020, Eq. 3 / Eq. 7): one edge per distinct (u, i) pair with weight
1 / sqrt(|N_u| |N_i|), where N_u is the set of items of user u and N_i the set of users of
item i. Propagation is the two products of `transferjax.models.bipartite` per layer, sums over
the edges (O(nnz * dim)); no n_users x n_items matrix is ever formed. The edges enter as
`graph_arrays(...)`, a `bipartite` dict with the weight "w".

Params of the model (`lightgcn_init`): the ego (layer-0) embeddings
  user: f32[n_users, dim], item: f32[n_items, dim],
plus, for the rating variant, user_bias f32[n_users], item_bias f32[n_items] and mu f32[].

Regularisers of a batch's ego rows (`lightgcn_bpr_loss`'s `reg_form`): "squared", the batch
form of the paper's lambda ||E^(0)||^2, the squared norms of the rows averaged over the batch;
"norms", RecBole's `EmbLoss` (its default, `require_pow=False`): the Frobenius norms of the
batch's user, positive and negative row matrices (not squared), summed and divided by the
batch size (`masked_norm`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.models.bipartite import bipartite, to_items, to_users
from transferjax.models.mf import sample_negatives


def normalized_edges(
    user: np.ndarray, item: np.ndarray, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user i32[e], item i32[e], weight f32[e]): the distinct (u, i) pairs of the interactions,
    sorted by user, with weight 1 / sqrt(|N_u| |N_i|) (degrees over the distinct pairs).

    A node without edges (a cold user, an unseen item) has no entry: its propagated layers are
    zero."""
    pairs = np.unique(
        np.asarray(user, np.int64) * int(n_items) + np.asarray(item, np.int64)
    )  # sorted by user, then item
    u, i = (pairs // n_items).astype(np.int32), (pairs % n_items).astype(np.int32)
    du = np.bincount(u, minlength=n_users).astype(np.float64)
    di = np.bincount(i, minlength=n_items).astype(np.float64)
    w = 1.0 / np.sqrt(du[u] * di[i])
    return u, i, w.astype(np.float32)


def graph_arrays(user: np.ndarray, item: np.ndarray, n_users: int, n_items: int) -> dict:
    """The normalised graph of the interactions as device arrays: `bipartite` of
    `normalized_edges`, weight "w"."""
    u, i, w = normalized_edges(user, item, n_users, n_items)
    return {k: jnp.asarray(a) for k, a in bipartite(u, i, w=w).items()}


def propagate_layer(eu: jax.Array, ei: jax.Array, edges: dict) -> tuple[jax.Array, jax.Array]:
    """One layer of Eq. 3: e_u' = sum_{i in N_u} w_ui e_i, e_i' = sum_{u in N_i} w_ui e_u
    (`edges`: `graph_arrays`)."""
    return to_users(edges, "w", ei, eu.shape[0]), to_items(edges, "w", eu, ei.shape[0])


def propagate(
    eu: jax.Array, ei: jax.Array, edges: dict, n_layers: int
) -> tuple[jax.Array, jax.Array]:
    """Final embeddings (Eq. 4): sum_{k=0..K} e^(k) / (K + 1), K = `n_layers` (K = 0: the ego
    embeddings themselves)."""
    su, si, cu, ci = eu, ei, eu, ei
    for _ in range(n_layers):
        cu, ci = propagate_layer(cu, ci, edges)
        su, si = su + cu, si + ci
    scale = 1.0 / (n_layers + 1)
    return su * scale, si * scale


def lightgcn_init(
    key: jax.Array,
    *,
    n_users: int,
    n_items: int,
    dim: int,
    init_std: float,
    biases: bool,
    init: str = "normal",
) -> dict:
    """Ego embeddings: `init` "normal", N(0, init_std^2); "xavier_uniform", U(-a, a) with
    a = sqrt(6 / (rows + dim)) per table (`torch.nn.init.xavier_uniform_` of an embedding
    table, as RecBole's LightGCN; its tables have one padding row more than ours). With
    `biases`, zero user/item biases and mu = 0."""
    ku, ki = jax.random.split(key)

    def table(k, rows):
        if init == "normal":
            return init_std * jax.random.normal(k, (rows, dim), jnp.float32)
        if init == "xavier_uniform":
            a = (6.0 / (rows + dim)) ** 0.5
            return jax.random.uniform(k, (rows, dim), jnp.float32, -a, a)
        raise ValueError(f"unknown LightGCN init {init!r}; valid: normal, xavier_uniform")

    p = {"user": table(ku, n_users), "item": table(ki, n_items)}
    if biases:
        p.update(
            user_bias=jnp.zeros((n_users,), jnp.float32),
            item_bias=jnp.zeros((n_items,), jnp.float32),
            mu=jnp.zeros((), jnp.float32),
        )
    return p


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    m = mask.astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def _sq(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2, -1)


def masked_sq(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Sum of squares of the unmasked rows of x f32[b, ...] (mask bool[b])."""
    m = mask.reshape(mask.shape + (1,) * (x.ndim - 1)).astype(x.dtype)
    return jnp.sum(m * x**2)


def safe_sqrt(sq: jax.Array) -> jax.Array:
    """sqrt, 0 with a zero gradient at 0."""
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)


def masked_norm(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Frobenius norm of the unmasked rows of x f32[b, ...]."""
    return safe_sqrt(masked_sq(x, mask))


def lightgcn_bpr_loss(
    params: dict,
    edges: dict,
    batch: dict,
    *,
    n_layers: int,
    reg,
    key: jax.Array | None = None,
    negatives: jax.Array | None = None,
    reg_form: str = "squared",
) -> tuple[jax.Array, dict]:
    """BPR over the propagated embeddings (Eq. 15), one negative j per positive (u, i):
    `negatives` i32[b], or uniform draws from `key` (`sample_negatives`). Over the n unmasked
    rows of the batch,

      "squared": loss = mean_batch [-log sigmoid(e_u.e_i - e_u.e_j)
                                    + reg (|e0_u|^2 + |e0_i|^2 + |e0_j|^2)]
      "norms":   loss = mean_batch [-log sigmoid(e_u.e_i - e_u.e_j)]
                        + reg (||E0_U||_F + ||E0_I||_F + ||E0_J||_F) / n

    where e = the final embeddings (Eq. 4), e0 the ego embeddings of the batch's rows and
    E0_U, E0_I, E0_J their n-row matrices (module docstring)."""
    u, i, mask = batch["user"], batch["item"], batch["mask"]
    j = sample_negatives(params, key, i) if negatives is None else negatives
    fu, fi = propagate(params["user"], params["item"], edges, n_layers)
    eu = fu[u]
    diff = jnp.sum(eu * fi[i], -1) - jnp.sum(eu * fi[j], -1)
    nll = -jax.nn.log_sigmoid(diff)
    e_u, e_i, e_j = params["user"][u], params["item"][i], params["item"][j]
    if reg_form == "squared":
        loss = _masked_mean(nll + reg * (_sq(e_u) + _sq(e_i) + _sq(e_j)), mask)
    elif reg_form == "norms":
        n = jnp.maximum(jnp.sum(mask.astype(nll.dtype)), 1.0)
        norms = masked_norm(e_u, mask) + masked_norm(e_i, mask) + masked_norm(e_j, mask)
        loss = _masked_mean(nll, mask) + reg * norms / n
    else:
        raise ValueError(f"unknown LightGCN reg_form {reg_form!r}; valid: squared, norms")
    return loss, {"bpr": _masked_mean(nll, mask)}


def lightgcn_mse_loss(
    params: dict, edges: dict, batch: dict, *, n_layers: int, reg
) -> tuple[jax.Array, dict]:
    """Rating variant (not in the paper): r_hat = mu + b_u + b_i + e_u.e_i over the propagated
    embeddings, loss = mean (r - r_hat)^2 + reg (|e0_u|^2 + |e0_i|^2 + b_u^2 + b_i^2)."""
    u, i = batch["user"], batch["item"]
    fu, fi = propagate(params["user"], params["item"], edges, n_layers)
    pred = (
        params["mu"] + params["user_bias"][u] + params["item_bias"][i] + jnp.sum(fu[u] * fi[i], -1)
    )
    err = (batch["rating"] - pred) ** 2
    r = (
        _sq(params["user"][u])
        + _sq(params["item"][i])
        + params["user_bias"][u] ** 2
        + params["item_bias"][i] ** 2
    )
    loss = _masked_mean(err + reg * r, batch["mask"])
    return loss, {"mse": _masked_mean(err, batch["mask"])}
