"""UniCDR's embeddings, aggregators and loss (Cao et al., "Towards Universal Cross-Domain
Recommendation", WSDM 2023) for its dual-domain scenario with overlapping users (`--task
dual-user-intra`), as the official code computes them (github.com/cjx96/UniCDR at b216bc0:
`UniCDR/model/UniCDR.py`, `model/trainer.py`, `utils/data.py`, defaults of `train_rec.py`).

Parameters, per domain X: specific user and item tables E_u^X, E_v^X (N(0, 1) rows); one
domain-shared (universal) user table E_u^S over the joint users (an overlapping user has one
row); an aggregator per domain and one shared aggregator; a bilinear critic per domain.

Interaction-level masking (the paper's masking of a user's interactions; `DomainTask.
__getitem__`). A training row (u, v+) of domain X draws, uniformly without replacement,

    C^X_u: k = min(maxlen, int(|N^X_u| (1 - mask_rate))) of u's training items in X
    C^Y_u: min(maxlen, int(|N^Y_u| (1 - mask_rate))) of its training items in the other domain

C^X_u may hold v+ itself: the official `cur_context.remove(self.item[index])` (utils/data.py
line 180) compares the item id with the list's [item, score] pairs, raises ValueError, which
its bare `except` swallows, so the positive is never left out (`drop` of `sample_context`
does what the line means to; the method's `drop_positive`, off by default).

(`sample_context`: Floyd's k-subset, exactly uniform; the aggregators are order-free). In
training the shared aggregator's own-domain block is all padding (the official "domain
mask"); in evaluation (`test_mode`) nothing is masked and, for this task, that block holds
min(50, |N^X_u|) of the user's items in X as well: the shared half then reads both domains
(the official code's train / evaluation asymmetry, kept).

Aggregator (`BehaviorAggregator`), for an id vector e and a set of item rows h_1..h_n:

    agg(e, h) = lambda_a e + (1 - lambda_a) W_agg pool(e, h)
    mean:            pool = sum_j h_j / (n + 1e-12)
    user_attention:  a_j = <tanh(W_att h_j + b_att), e>,  pool = sum_j s_j h_j,
                     s_j = exp(a_j) / (sum_j exp(a_j) + (width - n) + 1e-12)

where width is the padded length of the official sequence (maxlen for C^X, 2 maxlen for the
two domain blocks of the shared aggregator, 50 / 100 at evaluation): its `masked_softmax`
sets padded logits to 0, so each pad adds exp(0) = 1 to the denominator; the weights s get
dropout. The user of domain X is (the paper's Eq. 13, equal weights)

    p^X_u = drop(agg_X(E_u^X[u], E_v^X[C^X_u]))           domain-specific
    q^X_u = drop(agg_S(E_u^S[u], E_v^Y[C^Y_u]))           domain-shared (universal)
    z^X_u = p^X_u + q^X_u,   y_uv = <z^X_u, drop(E_v^X[v])>

Loss of domain X on a batch of rows, with n_neg negatives per row (`reconstruct_graph`):

    L^X = lambda_loss [BCE(y_uv+, 1) + BCE(y_uv-, 0)] + (1 - lambda_loss) critic^X
    critic^X = BCE(D_X(p_u, q_u), 1) + BCE(D_X(p_{pi(u)}, q_u), 0),  D_X(a, b) = a^T W b + c

with pi a rotation of the batch by r ~ U{1, .., b - 1} (`random_label`), each BCE a mean (the
negatives' over b n_neg scores); the step's loss is L^S + L^T (one batch of each domain).

The paper's text was not available here: the only equation number cited (Eq. 13) is the
official code's own comment (`forward_user`); the rest is named after the official code.

Matches the official code: the parameters and torch's inits (N(0, 1) embeddings;
U(+-1/sqrt(d)) for W_agg (no bias), W_att, b_att and the bilinear W, c); the padding
arithmetic of both aggregators (the mean over real items, the attention's exp(0) per pad,
exp without max subtraction); dropout after each aggregator, on the attention weights and on
the item rows (positive and negatives separately); the critic's rotation; the loss weights.
`benchmarks.reproduce.unicdr_equal` checks one step against the official code in float64.

Differs:
- the official code finds padded slots by `sum(embedding) == 0` (padding row 0 is all zero);
  ours by an explicit mask (they differ only for a real item whose row sums to exactly 0).
- the mean divides by n + 1e-12 in the model's float type; the official count is float32
  (`mask.float()`), where + 1e-12 rounds away (differences of ~1e-12 relative in float64).
- item ids start at 0 here; the official tables have an extra all-zero padding row 0.
- a batch with fewer than 2 valid rows of a domain pairs a row with itself in the critic
  (torch's `randint(1, 1)` would fail); padded rows of the last batch are masked.
- the paper's item-similarity aggregator (EASE scores, a dense item x item inverse) is not
  implemented; its multi-domain and item-overlap scenarios neither.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from transferjax.models.mlp import dropout

DOMS = ("source", "target")
OTHER = {"source": "target", "target": "source"}
AGGREGATORS = ("mean", "user_attention")


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def agg_init(key, dim: int, kind: str) -> dict:
    """{"w_agg": f32[d, d]} (+ "w_att" f32[d, d], "b_att" f32[d] for user_attention), stored
    [in, out]; torch's nn.Linear init."""
    ks = jax.random.split(key, 3)
    bound = 1 / math.sqrt(dim)
    p = {"w_agg": _uniform(ks[0], (dim, dim), bound)}
    if kind == "user_attention":
        p["w_att"] = _uniform(ks[1], (dim, dim), bound)
        p["b_att"] = _uniform(ks[2], (dim,), bound)
    return p


def unicdr_init(key, *, sizes: dict, n_joint: int, dim: int, aggregator: str) -> dict:
    """{"user": {domain: f32[n_users, d]}, "item": {domain: f32[n_items, d]}, "shared_user":
    f32[n_joint, d], "agg": {"source", "target", "shared": `agg_init`}, "dis": {domain: {"w":
    f32[d, d], "b": f32[]}}}; sizes {domain: (n_users, n_items)}."""
    if aggregator not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {aggregator!r}; valid: {', '.join(AGGREGATORS)}")
    ks = iter(jax.random.split(key, 12))
    bound = 1 / math.sqrt(dim)
    return {
        "user": {d: jax.random.normal(next(ks), (sizes[d][0], dim)) for d in DOMS},
        "item": {d: jax.random.normal(next(ks), (sizes[d][1], dim)) for d in DOMS},
        "shared_user": jax.random.normal(next(ks), (n_joint, dim)),
        "agg": {a: agg_init(next(ks), dim, aggregator) for a in (*DOMS, "shared")},
        "dis": {
            d: {"w": _uniform(next(ks), (dim, dim), bound), "b": _uniform(next(ks), (), bound)}
            for d in DOMS
        },
    }


def floyd_subset(key, n, k, width: int) -> jax.Array:
    """i32[width]: a uniform k-subset of range(n) in the first k slots (Floyd's algorithm),
    -1 after; k <= width (scalars n, k may be traced)."""
    keys = jax.random.split(key, width)

    def body(s, out):
        j = n - k + s
        t = jnp.floor(jax.random.uniform(keys[s]) * (j + 1).astype(jnp.float32))
        t = jnp.minimum(t.astype(jnp.int32), j)
        pick = jnp.where(jnp.any(out == t), j, t)
        return out.at[s].set(jnp.where(s < k, pick, -1))

    return jax.lax.fori_loop(0, width, body, jnp.full((width,), -1, jnp.int32))


def sample_context(keys, index: dict, user, k, *, width: int, drop=None):
    """(items i32[b, width], mask bool[b, width]): k[r] of user[r]'s training items (`index`,
    `positive_index`), uniform without replacement, one key per row; user -1 or k 0: none.
    `drop` i32[b]: an item to leave out of the row (the training positive)."""
    u = jnp.maximum(user, 0)
    lo, n = index["indptr"][u], index["indptr"][u + 1] - index["indptr"][u]
    k = jnp.where(user >= 0, jnp.minimum(k, n), 0)
    pos = jax.vmap(lambda kk, nn, kr: floyd_subset(kk, nn, kr, width))(keys, n, k)
    last = max(int(index["items"].shape[0]) - 1, 0)
    items = index["items"][jnp.clip(lo[:, None] + pos, 0, last)]
    mask = pos >= 0
    if drop is not None:
        mask &= items != drop[:, None]
    return jnp.where(mask, items, 0), mask


def aggregate(p, e, h, mask, *, kind: str, lambda_a, width: int, drop_rate=0.0, key=None):
    """`BehaviorAggregator.forward`: f32[b, d] from the id vectors e f32[b, d] and the item
    rows h f32[b, L, d] where mask bool[b, L]; width: the official padded length."""
    m = mask.astype(h.dtype)
    h = h * m[..., None]
    if kind == "mean":
        pooled = jnp.sum(h, 1) / (jnp.sum(m, 1, keepdims=True) + 1e-12)
    elif kind == "user_attention":
        keys = jnp.tanh(h @ p["w_att"] + p["b_att"])
        a = jnp.einsum("bld,bd->bl", keys, e)
        ex = jnp.where(mask, jnp.exp(jnp.where(mask, a, 0.0)), 0.0)
        pads = width - jnp.sum(m, 1, keepdims=True)
        s = dropout(ex / (jnp.sum(ex, 1, keepdims=True) + pads + 1e-12), drop_rate, key)
        pooled = jnp.einsum("bl,bld->bd", s, h)
    else:
        raise ValueError(f"unknown aggregator {kind!r}; valid: {', '.join(AGGREGATORS)}")
    return lambda_a * e + (1 - lambda_a) * (pooled @ p["w_agg"])


def user_sides(p, d: str, rows: dict, *, kind, lambda_a, widths, drop_rate=0.0, key=None):
    """(specific p_u f32[b, d], shared q_u f32[b, d]) of domain d's users (module docstring).

    rows: "user" i32[b], "joint" i32[b] their shared rows, "ctx" and "glob": (items, mask) of
    C^X_u (domain d's items) and C^Y_u (the other domain's); optional "glob_own": (items,
    mask) of domain d's items that the shared aggregator also reads (the official evaluation's
    own-domain block); widths: (of ctx, of the shared aggregator's padded sequence)."""
    ks = [None] * 4 if key is None else list(jax.random.split(key, 4))
    items, mask = rows["ctx"]
    spec = aggregate(
        p["agg"][d], p["user"][d][rows["user"]], p["item"][d][items], mask, kind=kind,
        lambda_a=lambda_a, width=widths[0], drop_rate=drop_rate, key=ks[0],
    )  # fmt: skip
    items, mask = rows["glob"]
    h = p["item"][OTHER[d]][items]
    if "glob_own" in rows:
        own, own_mask = rows["glob_own"]
        h = jnp.concatenate([p["item"][d][own], h], 1)
        mask = jnp.concatenate([own_mask, mask], 1)
    share = aggregate(
        p["agg"]["shared"], p["shared_user"][rows["joint"]], h, mask, kind=kind,
        lambda_a=lambda_a, width=widths[1], drop_rate=drop_rate, key=ks[1],
    )  # fmt: skip
    return dropout(spec, drop_rate, ks[2]), dropout(share, drop_rate, ks[3])


def bilinear(p, a, b) -> jax.Array:
    """f32[b]: a^T W b + c (torch's nn.Bilinear(d, d, 1))."""
    return jnp.einsum("bi,ij,bj->b", a, p["w"], b) + p["b"]


def _mean(x, m):
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def critic_loss(p, spec, share, mask, shift) -> jax.Array:
    """BCE(D(p_u, q_u), 1) + BCE(D(p_pi(u), q_u), 0) over the valid rows (a prefix of the
    batch), pi(r) = (r + shift) % n_valid."""
    m = mask.astype(spec.dtype)
    n = jnp.maximum(jnp.sum(mask.astype(jnp.int32)), 1)
    label = (jnp.arange(spec.shape[0]) + shift) % n
    pos = bilinear(p, spec, share)
    neg = bilinear(p, spec[label], share)
    return _mean(jax.nn.softplus(-pos), m) + _mean(jax.nn.softplus(neg), m)


def draw_shift(key, mask) -> jax.Array:
    """i32[]: r ~ U{1, .., n - 1} for n valid rows (0 when n < 2)."""
    n = jnp.sum(mask.astype(jnp.int32))
    r = 1 + jnp.floor(jax.random.uniform(key) * (n - 1).astype(jnp.float32)).astype(jnp.int32)
    return jnp.where(n > 1, jnp.minimum(r, n - 1), 0)


def domain_loss(p, d, rows, *, kind, lambda_a, lambda_loss, widths, drop_rate=0.0, key=None):
    """L^X of one domain's rows (`user_sides`' rows plus "pos" i32[b], "neg" i32[b, n_neg],
    "mask" bool[b], "shift" i32[]): (L^X, {"bce", "critic"})."""
    k_user, k_pos, k_neg = [None] * 3 if key is None else jax.random.split(key, 3)
    spec, share = user_sides(
        p, d, rows, kind=kind, lambda_a=lambda_a, widths=widths, drop_rate=drop_rate, key=k_user
    )
    z = spec + share
    items = p["item"][d]
    y_pos = jnp.sum(z * dropout(items[rows["pos"]], drop_rate, k_pos), -1)
    y_neg = jnp.einsum("bd,bnd->bn", z, dropout(items[rows["neg"]], drop_rate, k_neg))
    m = rows["mask"].astype(z.dtype)
    bce = _mean(jax.nn.softplus(-y_pos), m) + _mean(
        jax.nn.softplus(y_neg), m[:, None] * jnp.ones_like(y_neg)
    )
    critic = critic_loss(p["dis"][d], spec, share, rows["mask"], rows["shift"])
    return lambda_loss * bce + (1 - lambda_loss) * critic, {"bce": bce, "critic": critic}


def unicdr_loss(p, batch, *, kind, lambda_a, lambda_loss, maxlen: int, drop_rate=0.0, key=None):
    """The step's loss L^S + L^T and its parts; batch {domain: `domain_loss` rows}; key:
    dropout (None: none)."""
    keys = [None, None] if key is None else jax.random.split(key, 2)
    total, aux = 0.0, {}
    for d, k in zip(DOMS, keys, strict=True):
        loss_d, parts = domain_loss(
            p, d, batch[d], kind=kind, lambda_a=lambda_a, lambda_loss=lambda_loss,
            widths=(maxlen, 2 * maxlen), drop_rate=drop_rate, key=k,
        )  # fmt: skip
        total = total + loss_d
        aux.update({f"{d}_{n}": v for n, v in parts.items()})
    return total, aux
