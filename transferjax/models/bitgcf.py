"""BiTGCF's math: per-domain graph layers, the bi-directional transfer of shared nodes, the
layer combination and the per-domain losses (Liu et al., "Cross Domain Recommendation via
Bi-directional Transfer Graph Collaborative Filtering Networks", CIKM 2020).

Each domain d in {s, t} has its own ego (layer-0) tables E_d = (users f32[n_users_d, dim],
items f32[n_items_d, dim]) and its own bipartite graph (normalised edge lists of
`transferjax.models.graph.graph_arrays`, weights w_ui = 1 / sqrt(|N_u| |N_i|)). One layer:

    side = A_d e                       (one `propagate_layer`: users from items, items from users)
    e'   = e + side + e * side         feature propagation (NGCF's messages without its weight
                                       matrices and activation; `*` is elementwise)
    e'   = dropout(e', p)              training only

then the transfer of the nodes both domains share (overlapping users, or items), pair by pair
(s, t) with training-row counts c_s, c_t of the two copies:

    lap  = (c_s e_s + c_t e_t) / (c_s + c_t + 1e-7)              degree-weighted common part
    e_s <- (lambda_s e_s + (1 - lambda_s) e_t + lap) / 2
    e_t <- (lambda_t e_t + (1 - lambda_t) e_s + lap) / 2

Every other row stays as it is. Layer k's output feeds layer k + 1 as is; what the final
representation keeps of it is its row-wise L2 normalisation n^(k) = e^(k) / ||e^(k)||:

    concat: f = [e^(0) | n^(1) | ... | n^(K)]   f32[n, dim (K + 1)]
    mean:   f = (e^(0) + n^(1) + ... + n^(K)) / (K + 1)

and y_ui = <f_u, f_i> in each domain (plus mu + b_u + b_i for the rating variant "mse").

Nothing here forms a users x items matrix: propagation sums over the edges
(`transferjax.models.bipartite`) and the transfer gathers and scatters the shared rows
(`.at[].set`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.models.graph import masked_norm, masked_sq, propagate_layer, safe_sqrt
from transferjax.models.mlp import dropout


def transfer_pairs(pairs: np.ndarray, count_s: np.ndarray, count_t: np.ndarray) -> tuple:
    """The shared nodes as the transfer reads them.

    Args:
      pairs: int[m, 2] one-to-one (source row, target row) pairs of one table (users or items).
      count_s, count_t: int[n_source], int[n_target] training rows of each node in its domain.

    Returns:
      (rows_s i32[m], rows_t i32[m], c_s f32[m], c_t f32[m]).
    """
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    s, t = pairs[:, 0], pairs[:, 1]
    cs = np.asarray(count_s, np.float32)[s]
    ct = np.asarray(count_t, np.float32)[t]
    return s.astype(np.int32), t.astype(np.int32), cs, ct


def graph_layer(eu: jax.Array, ei: jax.Array, edges: dict) -> tuple[jax.Array, jax.Array]:
    """One feature propagation: e' = e + A e + e * (A e), for users and items."""
    su, si = propagate_layer(eu, ei, edges)
    return eu + su + eu * su, ei + si + ei * si


def transfer(
    src: jax.Array, tgt: jax.Array, pairs: tuple, *, lambda_source, lambda_target
) -> tuple[jax.Array, jax.Array]:
    """The bi-directional transfer of one table's shared rows (module docstring).

    Args:
      src: f32[n_s, d], tgt: f32[n_t, d] one table (users or items) of each domain.
      pairs: `transfer_pairs` output.
      lambda_source, lambda_target: f32[] weights of a domain's own copy in its mix.

    Returns:
      (src', tgt') with the shared rows replaced.
    """
    rs, rt, cs, ct = pairs
    s, t = src[rs], tgt[rt]
    cs, ct = cs[:, None].astype(s.dtype), ct[:, None].astype(s.dtype)
    lap = (cs * s + ct * t) / (cs + ct + 1e-7)
    new_s = (lambda_source * s + (1.0 - lambda_source) * t + lap) / 2.0
    new_t = (lambda_target * t + (1.0 - lambda_target) * s + lap) / 2.0
    return src.at[rs].set(new_s), tgt.at[rt].set(new_t)


def _l2_normalize(x: jax.Array) -> jax.Array:
    """x / max(||x||, 1e-12) per row, with finite gradients at a zero row (an isolated node
    whose ego row is held at zero)."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    big = sq > 1e-24
    return x / jnp.where(big, jnp.sqrt(jnp.where(big, sq, 1.0)), 1e-12)


def bitgcf_forward(
    ego: dict,
    graph: dict,
    *,
    n_layers: int,
    connect: str,
    lambda_source,
    lambda_target,
    drop_rate=0.0,
    key: jax.Array | None = None,
) -> dict:
    """The final tables of both domains.

    Args:
      ego: {"source": (users f32[n_su, d], items f32[n_si, d]), "target": (users, items)}, the
        ego tables (rows a domain has no training row for already masked to zero by the caller,
        if wanted).
      graph: {"source": edges, "target": edges, "users": pairs | None, "items": pairs | None}:
        each domain's `graph_arrays` and the `transfer_pairs` of the shared
        users and items (None: that table shares nothing).
      n_layers: K.
      connect: "concat" or "mean".
      lambda_source, lambda_target: the transfer weights (f32[] or floats).
      drop_rate: dropout rate of each layer's output; applied only with `key` (training).

    Returns:
      {"source": (users f32[n_su, D], items f32[n_si, D]), "target": (...)}, D = d (K + 1) for
      "concat", d for "mean".
    """
    if connect not in ("concat", "mean"):
        raise ValueError(f"connect={connect!r}; valid: concat, mean")
    doms = ("source", "target")
    cur = {d: tuple(ego[d]) for d in doms}
    out = {d: ([ego[d][0]], [ego[d][1]]) for d in doms}
    lams = {"lambda_source": lambda_source, "lambda_target": lambda_target}
    for k in range(n_layers):
        for j, d in enumerate(doms):
            eu, ei = graph_layer(*cur[d], graph[d])
            if key is not None:
                ku, ki = jax.random.split(jax.random.fold_in(key, 2 * k + j))
                eu, ei = dropout(eu, drop_rate, ku), dropout(ei, drop_rate, ki)
            cur[d] = (eu, ei)
        (su, si), (tu, ti) = cur["source"], cur["target"]
        if graph.get("users") is not None:
            su, tu = transfer(su, tu, graph["users"], **lams)
        if graph.get("items") is not None:
            si, ti = transfer(si, ti, graph["items"], **lams)
        cur = {"source": (su, si), "target": (tu, ti)}
        for d in doms:
            out[d][0].append(_l2_normalize(cur[d][0]))
            out[d][1].append(_l2_normalize(cur[d][1]))

    def combine(layers):
        if connect == "concat":
            return jnp.concatenate(layers, axis=-1)
        return sum(layers) / len(layers)

    return {d: (combine(out[d][0]), combine(out[d][1])) for d in doms}


def domain_loss(
    final: tuple,
    ego: tuple,
    batch: dict,
    *,
    kind: str,
    reg,
    negatives: jax.Array | None = None,
    biases: dict | None = None,
) -> tuple[jax.Array, dict]:
    """One domain's loss over a batch of its training rows.

    With n unmasked positives (u, i) of `batch` and k negatives j per positive (`negatives`
    i32[b, k], or i32[b] for k = 1; "bce" and "bpr"):

      bce: the mean over the (1 + k) n rows (u, i, 1), (u, j, 0) of the binary cross entropy
           of sigmoid(y): sum [softplus(-y_ui) + sum_j softplus(y_uj)] / ((1 + k) n);
      bpr: the mean over the k n pairs of softplus(-(y_ui - y_uj));
      mse: sum (r_ui - mu - b_u - b_i - y_ui)^2 / n;

    plus reg * (||U||_F + ||I||_F) / rows, the norms (not squared) of the ego rows of those
    rows: U stacks e0_u per row, I the rows' e0_i (and e0_j); rows = (1 + k) n for bce and
    bpr, n for mse, whose norms also take the rows' biases (RecBole's `EmbLoss`).

    Args:
      final: (users f32[n_u, D], items f32[n_i, D]) the domain's final tables.
      ego: (users f32[n_u, d], items f32[n_i, d]) its ego tables.
      batch: user, item i32[b], rating f32[b], mask bool[b].
      kind: "bce", "bpr" or "mse".
      biases: "mse": {"user_bias" f32[n_u], "item_bias" f32[n_i], "mu" f32[]}.

    Returns:
      (scalar loss, {"nll": the loss without its reg term}).
    """
    fu, fi = final
    u, i, mask = batch["user"], batch["item"], batch["mask"]
    m = mask.astype(fu.dtype)
    n = jnp.maximum(jnp.sum(m), 1.0)
    eu = fu[u]
    y = jnp.sum(eu * fi[i], -1)
    if kind == "mse":
        b = biases
        pred = b["mu"] + b["user_bias"][u] + b["item_bias"][i] + y
        nll = jnp.sum(m * (batch["rating"] - pred) ** 2) / n
        norms = (
            masked_norm(ego[0][u], mask)
            + masked_norm(ego[1][i], mask)
            + masked_norm(b["user_bias"][u], mask)
            + masked_norm(b["item_bias"][i], mask)
        )
        return nll + reg * norms / n, {"nll": nll}
    if kind not in ("bce", "bpr"):
        raise ValueError(f"unknown BiTGCF loss {kind!r}; valid: bce, bpr, mse")
    neg = negatives if negatives.ndim == 2 else negatives[:, None]
    k = neg.shape[1]
    y_neg = jnp.einsum("bd,bkd->bk", eu, fi[neg])
    if kind == "bce":
        per_row = jax.nn.softplus(-y) + jnp.sum(jax.nn.softplus(y_neg), -1)
        nll = jnp.sum(m * per_row) / ((1 + k) * n)
    else:
        nll = jnp.sum(m * jnp.sum(jax.nn.softplus(-(y[:, None] - y_neg)), -1)) / (k * n)
    norms = safe_sqrt((1 + k) * masked_sq(ego[0][u], mask)) + safe_sqrt(
        masked_sq(ego[1][i], mask) + masked_sq(ego[1][neg], mask)
    )
    return nll + reg * norms / ((1 + k) * n), {"nll": nll}
