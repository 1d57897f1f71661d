"""Collaborative cross networks (CoNet; Hu, Zhang & Yang, CIKM 2018): two feed-forward
networks over [user embedding; item embedding], one per domain, whose hidden layers are joined
by cross-connection units.

With a^0_d = [P_d u; Q_d i] the input of domain d's network (d in {s, t}, each network with
its own embedding tables over the users and items of BOTH domains), layer l of each network
adds the other network's previous layer through one transfer matrix H_l that both directions
share, for the rows `cross` marks (the overlap rows):

    a^{l+1}_s = relu(W^l_s a^l_s + b^l_s + c H_l a^l_t)
    a^{l+1}_t = relu(W^l_t a^l_t + b^l_t + c H_l a^l_s),      c = 1 on cross rows, else 0
    z_d = h_d^T a^L_d + o_d,      r_hat_d = sigmoid(z_d)

and `cross_norm` = sum_l ||H_l||_F. Tables and weights are Xavier-normal, biases zero.

Params:
  {"source": net, "target": net, "cross": [{"w": f32[in_l, out_l]}, ...]} with net =
  {"user": f32[n_users, dim], "item": f32[n_items, dim],
   "layers": [{"w": f32[in_l, out_l], "b": f32[out_l]}, ...], "out": {"w": f32[L, 1], "b"}}.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from transferjax.models.mlp import dense_parts, mlp_init, xavier_normal

NETS = ("source", "target")


def conet_init(
    key: jax.Array, *, n_users: int, n_items: int, dim: int, layers: Sequence[int]
) -> dict:
    """Both networks (tables over all `n_users` / `n_items` rows, hidden widths `layers`,
    input 2 dim) and the transfer matrices H_l (no bias), all Xavier-normal."""
    sizes = (2 * dim, *layers)
    keys = iter(jax.random.split(key, 9))
    out = {}
    for net in NETS:
        out[net] = {
            "user": xavier_normal(next(keys), (n_users, dim)),
            "item": xavier_normal(next(keys), (n_items, dim)),
            "layers": mlp_init(next(keys), sizes, init="xavier"),
            "out": mlp_init(next(keys), (sizes[-1], 1), init="xavier")[0],
        }
    out["cross"] = [{"w": c["w"]} for c in mlp_init(next(keys), sizes, init="xavier")]
    return out


def _inputs(net: dict, user: jax.Array, item: jax.Array) -> tuple:
    return (net["user"][user], net["item"][item])


def _output(net: dict, a: jax.Array) -> jax.Array:
    return (a @ net["out"]["w"] + net["out"]["b"])[..., 0]


def conet_logits(params: dict, user: jax.Array, item: jax.Array, cross: jax.Array) -> tuple:
    """Both networks on the same rows, cross-connected where `cross` (module docstring).

    Args:
      params: `conet_init` params.
      user, item: i32 rows whose shapes broadcast (i32[b] and i32[b]; or i32[c, 1] and
        i32[1, n] for c users against n items).
      cross: bool broadcasting to the same shape: the rows whose layers are cross-connected.

    Returns:
      (z_s, z_t): f32[broadcast shape] logits of the source and the target network.
    """
    s, t = params["source"], params["target"]
    a_s, a_t = _inputs(s, user, item), _inputs(t, user, item)
    c = jnp.asarray(cross)[..., None]
    for ws, wt, h in zip(s["layers"], t["layers"], params["cross"], strict=True):
        pre_s = dense_parts(ws, a_s) + jnp.where(c, dense_parts(h, a_t), 0.0)
        pre_t = dense_parts(wt, a_t) + jnp.where(c, dense_parts(h, a_s), 0.0)
        a_s, a_t = (jax.nn.relu(pre_s),), (jax.nn.relu(pre_t),)
    return _output(s, a_s[0]), _output(t, a_t[0])


def single_logits(params: dict, net: str, user: jax.Array, item: jax.Array) -> jax.Array:
    """f32[broadcast shape] logits of network `net` alone (every row without cross units)."""
    p = params[net]
    a = _inputs(p, user, item)
    for w in p["layers"]:
        a = (jax.nn.relu(dense_parts(w, a)),)
    return _output(p, a[0])


def cross_norm(params: dict) -> jax.Array:
    """sum_l ||H_l||_F (not squared). The square root's gradient is cut where a matrix is all
    zeros (at 0 it has none)."""
    sq = [jnp.sum(h["w"] ** 2) for h in params["cross"]]
    return sum(jnp.where(x > 0, jnp.sqrt(jnp.maximum(x, 1e-30)), 0.0) for x in sq)
