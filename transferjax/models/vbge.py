"""DisenCDR's (and CDRIB's) variational bipartite graph encoders (VBGE) over sparse edge lists,
as the official code computes them (github.com/cjx96/DisenCDR at 4e6d60b: `model/GCN.py`,
`model/singleVBGE.py`, `model/crossVBGE.py`); the formulas are in `transferjax.models.disencdr`.
CDRIB's `model/VBGE.py` (github.com/cjx96/CDRIB at bd98945) has the same single-domain layers
and keeps every layer's output (`specific_encoder(..., all_layers=True)`,
`transferjax.models.cdrib`).

Each domain's graph is two row-normalised matrices, UV (users x items, 1 / deg_u per training
row) and VU (items x users, 1 / deg_i), kept as one edge list with two weights
(`row_normalized_edges`); a product is a sum over the edges (`transferjax.models.bipartite`),
never a users x items matrix.

The official GCN multiplies first, A (x W). Here W goes on the side with fewer rows: (A x) W
when the product maps to fewer rows than x has (items -> users on item-heavy data), the same
layer by associativity (`gcn`); and a Linear over [a | b] is a W_a + b W_b, without the
concatenated copy. On Sport -> Phone (4,998 users, 22,101 / 14,618 items) that takes a third
of the multiply FLOPs out of a DisenCDR step.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.models import bipartite as B
from transferjax.models.mlp import dropout


def row_normalized_edges(user, item, n_users: int, n_items: int) -> dict:
    """A `bipartite` dict (host arrays) with one edge per training row (repeats kept, as the
    official coo matrices sum them) and the weights wu = 1 / rows of the user, wi = 1 / rows
    of the item."""
    u, i = np.asarray(user, np.int64), np.asarray(item, np.int64)
    cu = np.bincount(u, minlength=n_users).astype(np.float64)
    ci = np.bincount(i, minlength=n_items).astype(np.float64)
    return B.bipartite(u, i, wu=1.0 / cu[u], wi=1.0 / ci[i])


def to_users(x: jax.Array, g: dict, n_users: int) -> jax.Array:
    """UV x: f32[n_items, d] -> f32[n_users, d], each user the mean of its rows' items."""
    return B.to_users(g, "wu", x, n_users)


def to_items(x: jax.Array, g: dict, n_items: int) -> jax.Array:
    """VU x: f32[n_users, d] -> f32[n_items, d], each item the mean of its rows' users."""
    return B.to_items(g, "wi", x, n_items)


def gcn(p: dict, x: jax.Array, prop, alpha: float, n_out: int | None = None, ax=None) -> jax.Array:
    """leaky_relu(A (x W) + b, alpha) with A applied by `prop`, computed as (A x) W when the
    output has fewer rows than x (`n_out`; the same product by associativity, with W applied
    to the smaller side: on Sport -> Phone the items -> users products cost a quarter of the
    multiply). `ax`, when given, is A x already propagated (the last layer's two GCNs share it).
    """
    if ax is not None:
        return jax.nn.leaky_relu(ax @ p["w"] + p["b"], alpha)
    if n_out is not None and n_out < x.shape[0]:
        return jax.nn.leaky_relu(prop(x) @ p["w"] + p["b"], alpha)
    return jax.nn.leaky_relu(prop(x @ p["w"]) + p["b"], alpha)


def linear(p: dict, a: jax.Array, b: jax.Array) -> jax.Array:
    """[a | b] W + b, as a W[:d] + b W[d:] (no concatenated copy)."""
    d = a.shape[-1]
    return a @ p["w"][:d] + b @ p["w"][d:] + p["b"]


def _props(g: dict, n_users: int, n_items: int):
    return (lambda x: to_users(x, g, n_users)), (lambda x: to_items(x, g, n_items))


def _pair(p: dict, names: tuple, h, prop, n_out: int, x, alpha):
    """((mu, ls)) of a last layer: Lin_m([GCN_m(h), x]), Lin_s([GCN_s(h), x]), the two GCNs
    sharing one propagation of h when they propagate first (`gcn`)."""
    (gm, lm), (gs, ls) = names
    ah = prop(h) if n_out < h.shape[0] else None
    return (
        linear(p[lm], gcn(p[gm], h, prop, alpha, n_out, ah), x),
        linear(p[ls], gcn(p[gs], h, prop, alpha, n_out, ah), x),
    )


def user_half(p: dict, u, g, n_users, n_items, alpha, last: bool, side: str = ""):
    """The user half of a layer (`forward_user_share`): relu(Lin([GCN3(GCN1(u)), u])), or the
    last layer's (mu, ls). `side` prefixes the union names in the cross encoder ("source_")
    and picks its GCNs (gc1/gc3 for the source, gc2/gc4 for the target)."""
    up, ip = _props(g, n_users, n_items)
    first, second = ("gc2", "gc4") if side == "target_" else ("gc1", "gc3")
    h = gcn(p[first], u, ip, alpha, n_items)
    if not last:
        return jax.nn.relu(linear(p[f"{side}user_union"], gcn(p[second], h, up, alpha, n_users), u))
    names = tuple((f"{second}_{s}", f"{side}user_union_{s}") for s in ("mean", "logstd"))
    return _pair(p, names, h, up, n_users, u, alpha)


def item_half(p: dict, v, g, n_users, n_items, alpha, last: bool):
    """The item half of a `singleVBGE` layer (through UV then VU)."""
    up, ip = _props(g, n_users, n_items)
    h = gcn(p["gc2"], v, up, alpha, n_users)
    if not last:
        return jax.nn.relu(linear(p["item_union"], gcn(p["gc4"], h, ip, alpha, n_items), v))
    names = tuple((f"gc4_{s}", f"item_union_{s}") for s in ("mean", "logstd"))
    return _pair(p, names, h, ip, n_items, v, alpha)


def _layers(p: dict) -> list:
    return [p[f"layer_{k}"] for k in range(len(p) - 1)] + [p["last"]]


def specific_encoder(p, u, v, g, *, alpha, drop_rate=0.0, key=None, all_layers=False):
    """`singleVBGE.forward`: ((mu_u, ls_u) f32[n_users, d], (mu_v, ls_v) f32[n_items, d]),
    dropout on u and v before every layer (with key). With `all_layers`, the list of every
    layer's (u, v) outputs, the last layer's ((mu_u, ls_u), (mu_v, ls_v)) at the end (CDRIB's
    `VBGE` concatenates them)."""
    n_users, n_items = u.shape[0], v.shape[0]
    layers, outs = _layers(p), []
    for k, lp in enumerate(layers):
        ku, kv = (None, None) if key is None else jax.random.split(jax.random.fold_in(key, k))
        u, v = dropout(u, drop_rate, ku), dropout(v, drop_rate, kv)
        last = k == len(layers) - 1
        u, v = (
            user_half(lp, u, g, n_users, n_items, alpha, last),
            item_half(lp, v, g, n_users, n_items, alpha, last),
        )
        outs.append((u, v))
    return outs if all_layers else (u, v)


def share_encoder(p, u, g, n_items: int, *, alpha, drop_rate=0.0, key=None):
    """`singleVBGE.forward_user_share`: (mu_u, ls_u), dropout before the plain layers only."""
    layers = _layers(p)
    for k, lp in enumerate(layers[:-1]):
        u = dropout(u, drop_rate, None if key is None else jax.random.fold_in(key, k))
        u = user_half(lp, u, g, u.shape[0], n_items, alpha, False)
    return user_half(layers[-1], u, g, u.shape[0], n_items, alpha, True)


def mix(joint: dict, a_s: jax.Array, a_t: jax.Array) -> jax.Array:
    """f32[n_joint, d]: ws a_s[src] + wt a_t[tgt] per joint row (`joint` as `cross_encoder`)."""
    s = a_s[jnp.maximum(joint["src"], 0)] * joint["ws"][:, None]
    return s + a_t[jnp.maximum(joint["tgt"], 0)] * joint["wt"][:, None]


def cross_encoder(p, su, tu, gs, gt, joint, n_items: tuple, *, alpha, drop_rate=0.0, key=None):
    """`crossVBGE.forward`: (mu, ls) f32[n_joint, d] of the domain-shared user posterior.

    Args:
      su, tu: f32[n_source_users, d], f32[n_target_users, d] share embeddings.
      gs, gt: each domain's `row_normalized_edges`.
      joint: {"src", "tgt": i32[n_joint] each joint row's user in a domain (-1: none), "ws",
        "wt": f32[n_joint] the weights of the two sides (rate, 1 - rate; 1 and 0 for a row with
        one side), "of_src": i32[n_source_users], "of_tgt": i32[n_target_users] joint rows}.
      n_items: (source items, target items).
    """
    layers = _layers(p)
    ns, nt = su.shape[0], tu.shape[0]
    for k, lp in enumerate(layers[:-1]):
        if key is not None:
            ks, kt = jax.random.split(jax.random.fold_in(key, k))
            su, tu = dropout(su, drop_rate, ks), dropout(tu, drop_rate, kt)
        s = user_half(lp, su, gs, ns, n_items[0], alpha, False, "source_")
        t = user_half(lp, tu, gt, nt, n_items[1], alpha, False, "target_")
        m = mix(joint, s, t)
        su, tu = m[joint["of_src"]], m[joint["of_tgt"]]
    sm, sl = user_half(layers[-1], su, gs, ns, n_items[0], alpha, True, "source_")
    tm, tl = user_half(layers[-1], tu, gt, nt, n_items[1], alpha, True, "target_")
    return mix(joint, sm, tm), mix(joint, sl, tl)


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def _gcn_init(key, dim):  # GraphConvolution: U(-1/sqrt(out), 1/sqrt(out)) for W and b
    kw, kb = jax.random.split(key)
    return {
        "w": _uniform(kw, (dim, dim), 1 / math.sqrt(dim)),
        "b": _uniform(kb, (dim,), 1 / math.sqrt(dim)),
    }


def _linear_init(key, dim):  # nn.Linear(2 dim, dim): U(-1/sqrt(2 dim), 1/sqrt(2 dim))
    kw, kb = jax.random.split(key)
    bound = 1 / math.sqrt(2 * dim)
    return {"w": _uniform(kw, (2 * dim, dim), bound), "b": _uniform(kb, (dim,), bound)}


PLAIN = {
    "single": (("gc1", "gc2", "gc3", "gc4"), ("user_union", "item_union")),
    "cross": (("gc1", "gc2", "gc3", "gc4"), ("source_user_union", "target_user_union")),
}
LAST_GCN = ("gc1", "gc2", "gc3_mean", "gc3_logstd", "gc4_mean", "gc4_logstd")
LAST = {
    "single": ("user_union_mean", "user_union_logstd", "item_union_mean", "item_union_logstd"),
    "cross": tuple(f"{d}_user_union_{s}" for d in ("source", "target") for s in ("mean", "logstd")),
}


def encoder_init(key, *, dim: int, n_layers: int, kind: str) -> dict:
    """{"layer_0", ..., "last": {module: {"w", "b"}}} of a "single" or "cross" VBGE."""
    out = {}
    for k, kk in enumerate(jax.random.split(key, n_layers)):
        last = k == n_layers - 1
        gcns, lins = (LAST_GCN, LAST[kind]) if last else PLAIN[kind]
        keys = iter(jax.random.split(kk, len(gcns) + len(lins)))
        lp = {n: _gcn_init(next(keys), dim) for n in gcns}
        lp.update({n: _linear_init(next(keys), dim) for n in lins})
        out["last" if last else f"layer_{k}"] = lp
    return out
