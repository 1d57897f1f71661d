"""DisenCDR's encoders and losses (Cao et al., "DisenCDR: Learning Disentangled Representations
for Cross-Domain Recommendation", SIGIR 2022), as the official code computes them
(github.com/cjx96/DisenCDR at 4e6d60b: `model/GCN.py`, `singleVBGE.py`, `crossVBGE.py`,
`DisenCDR.py`, `trainer.py`).

Graphs. Each domain's interactions give two row-normalised sparse matrices, as the official
`GraphMaker` builds them: UV (users x items, weight 1 / deg_u per training row) and VU (items x
users, 1 / deg_i). They are edge lists (`row_normalized_edges`); a product is a sum over the
edges (`transferjax.models.bipartite`), so no users x items matrix is ever formed.

    GCN(x, A)   = leaky_relu(A (x W) + b, alpha)                  (`GCN`, `GraphConvolution`)
    Lin([a, b]) = [a | b] W + b                                    (`nn.Linear` on the concat)

A variational bipartite graph encoder (VBGE) of one domain, over ego user rows u and item rows
v, has L - 1 plain layers then a last layer (`singleVBGE`):

    plain:  u' = relu(Lin_u([GCN(GCN(u, VU), UV), u])),  v' = relu(Lin_v([GCN(GCN(v, UV), VU), v]))
    last:   h = GCN(u, VU);  mu_u = Lin_um([GCN_m(h, UV), u]),  ls_u = Lin_ul([GCN_s(h, UV), u])
            (items alike through UV then VU), with dropout on u and v before every layer.

The user-only path (`forward_user_share`, the two per-domain "share" encoders) runs the user half
with dropout before the plain layers only and returns (mu_u, ls_u). The cross-domain encoder
(`crossVBGE`) runs each domain's user half on its own share embeddings and mixes them per user:
m = rate * source + (1 - rate) * target after every plain layer (both domains continue from m)
and for the last layer's (mu, ls).

Gaussians. The official code maps a "logstd" ls to sigma(ls) = exp(0.1 + 0.9 softplus(ls)) in
its KL terms, draws z = mu + eps * exp(sigma(ls)) in training (`reparameters`: the std it
samples with is exp of the KL's sigma; `sampling="official"`) and z = mu in evaluation. Its prior is
N(0, sigma(1)) (`torch.ones_like(logstd)` passed as a logstd). Every KL is summed over the
dimensions and averaged over the rows (`kl_divergence(...).mean(dim=0).sum()`).

Users of the two domains are linked through a joint user space (`joint`): the cross encoder's
mix, its sample and its prior KL live on joint rows; each domain reads them through its user's
joint row. A joint row whose user has training rows in one domain only takes that domain's side
alone (weight 1); in the official data every user has both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from transferjax.models.vbge import cross_encoder, encoder_init, share_encoder, specific_encoder

LOG_STD_FLOOR = 0.1  # sigma(ls) = exp(0.1 + 0.9 softplus(ls))


def log_sigma(ls: jax.Array) -> jax.Array:
    """log sigma(ls) = 0.1 + 0.9 softplus(ls)."""
    return LOG_STD_FLOOR + 0.9 * jax.nn.softplus(ls)


def kl_normal(mu1, ls1, mu2, ls2, mask=None) -> jax.Array:
    """sum_d mean_rows KL(N(mu1, sigma(ls1)) || N(mu2, sigma(ls2))) over f32[n, d] (rows where
    `mask` bool[n], all when None)."""
    l1, l2 = log_sigma(ls1), log_sigma(ls2)
    kl = l2 - l1 + (jnp.exp(2 * l1) + (mu1 - mu2) ** 2) / (2 * jnp.exp(2 * l2)) - 0.5
    if mask is None:
        return jnp.sum(jnp.mean(kl, 0))
    m = mask.astype(kl.dtype)[:, None]
    return jnp.sum(kl * m) / jnp.maximum(jnp.sum(m), 1.0)


def kl_prior(mu, ls, mask=None) -> jax.Array:
    """KL to the official prior N(0, sigma(1))."""
    return kl_normal(mu, ls, jnp.zeros_like(mu), jnp.ones_like(ls), mask)


def sample(mu, ls, key, sampling: str = "official") -> jax.Array:
    """z = mu + eps * s, s = exp(sigma(ls)) ("official") or sigma(ls) ("kl"); mu without key."""
    if key is None:
        return mu
    s = jnp.exp(log_sigma(ls))
    s = jnp.exp(s) if sampling == "official" else s
    return mu + jax.random.normal(key, mu.shape, mu.dtype) * s


def bce_terms(user_tab, item_tab, user, pos, neg, mask) -> jax.Array:
    """BCEWithLogits(y_pos, 1) + BCEWithLogits(y_neg, 0), each the mean over rows where
    `mask` (the official trainer's two criterion terms of one domain)."""
    eu = user_tab[user]
    y_pos, y_neg = jnp.sum(eu * item_tab[pos], -1), jnp.sum(eu * item_tab[neg], -1)
    m = mask.astype(eu.dtype)
    n = jnp.maximum(jnp.sum(m), 1.0)
    return (jnp.sum(m * jax.nn.softplus(-y_pos)) + jnp.sum(m * jax.nn.softplus(y_neg))) / n


DOMS = ("source", "target")
OF = {"source": "of_src", "target": "of_tgt"}


def _is_zero(x) -> bool:
    """x is the Python number 0 (not a traced value)."""
    return isinstance(x, (int, float)) and x == 0


def disencdr_forward(
    p: dict,
    graphs: dict,
    joint: dict,
    known: dict,
    *,
    alpha: float,
    drop_rate=0.0,
    beta=0.9,
    shared_on=1.0,
    sampling: str = "official",
    key=None,
) -> tuple[dict, dict]:
    """Both domains' user and item tables and the KL terms (`DisenCDR.forward` with the
    specific encoders' `kld_loss`; `wramup` when `shared_on` is 0).

    Args:
      p: {"emb": {"source_user", "target_user", "source_item", "target_item",
        "source_user_share", "target_user_share"}, "source_specific", "target_specific",
        "source_share", "target_share", "cross"} (`disencdr_init`).
      graphs: {"source", "target"} `row_normalized_edges`.
      joint: as `cross_encoder`; known: {domain: {"user", "item": f32[n] 1 for rows with
        training rows}, "joint": f32[n_joint]}: other ego rows are held at zero and left out of
        the KL means.
      beta: the weight of the two cross KLs, 1 - beta the shared prior KL's.
      shared_on: f32[], 1 adds the shared representation and its KL terms, 0 (warm-up) not;
        the Python number 0 leaves the share and cross encoders out of the program altogether
        (the same values as a traced 0, without their cost).
      key: training (dropout and samples) when given, evaluation (means) when None.

    Returns:
      ({domain: (users f32[n_users, d], items f32[n_items, d])}, {"kl": the sum of the KL
      terms of the loss, "kl_specific", "kl_share", "kl_cross"}).
    """
    e = p["emb"]
    keys = [None] * 10 if key is None else list(jax.random.split(key, 10))
    enc = dict(alpha=alpha, drop_rate=drop_rate)
    ego, n_items, spec, share, kl_spec = {}, {}, {}, {}, 0.0
    for j, d in enumerate(DOMS):
        ku, ki = known[d]["user"][:, None], known[d]["item"][:, None]
        u, v, us = e[f"{d}_user"] * ku, e[f"{d}_item"] * ki, e[f"{d}_user_share"] * ku
        ego[d], n_items[d] = us, v.shape[0]
        (um, ul), (vm, vl) = specific_encoder(
            p[f"{d}_specific"], u, v, graphs[d], key=keys[j], **enc
        )
        spec[d] = (sample(um, ul, keys[2 + j], sampling), sample(vm, vl, keys[4 + j], sampling))
        mu_mask, mi_mask = known[d]["user"] > 0, known[d]["item"] > 0
        kl_spec = kl_spec + kl_prior(um, ul, mu_mask) + kl_prior(vm, vl, mi_mask)
        if not _is_zero(shared_on):
            share[d] = share_encoder(
                p[f"{d}_share"], u, graphs[d], n_items[d], key=keys[6 + j], **enc
            )
    if _is_zero(shared_on):  # the warm-up: specific tables and their KL terms alone
        zero = jnp.zeros((), kl_spec.dtype)
        kl = {"kl": kl_spec, "kl_specific": kl_spec, "kl_share": zero, "kl_cross": zero}
        return spec, kl
    mu, ls = cross_encoder(
        p["cross"],
        ego["source"],
        ego["target"],
        graphs["source"],
        graphs["target"],
        joint,
        (n_items["source"], n_items["target"]),
        key=keys[8],
        **enc,
    )
    z = sample(mu, ls, keys[9], sampling)
    kl_share = kl_prior(mu, ls, known["joint"] > 0)
    kl_cross = 0.0
    tables = {}
    for d in DOMS:
        rows = joint[OF[d]]
        sm, sl = share[d]
        kl_cross = kl_cross + kl_normal(mu[rows], ls[rows], sm, sl, known[d]["user"] > 0)
        tables[d] = (spec[d][0] + shared_on * z[rows], spec[d][1])
    kl = kl_spec + shared_on * ((1.0 - beta) * kl_share + beta * kl_cross)
    return tables, {"kl": kl, "kl_specific": kl_spec, "kl_share": kl_share, "kl_cross": kl_cross}


def disencdr_init(key, *, sizes: dict, dim: int, n_layers: int) -> dict:
    """Params of `disencdr_forward`: N(0, 1) embeddings (`nn.Embedding`), the encoders'
    GraphConvolution and Linear layers as torch initialises them.

    Args:
      sizes: {"source": (n_users, n_items), "target": (n_users, n_items)}.
    """
    k_emb, k_enc = jax.random.split(key)
    names = [
        (f"{d}_{t}", sizes[d][t == "item"]) for d in DOMS for t in ("user", "item", "user_share")
    ]
    emb = {
        n: jax.random.normal(k, (rows, dim), jnp.float32)
        for (n, rows), k in zip(names, jax.random.split(k_emb, len(names)), strict=True)
    }
    kinds = {f"{d}_{r}": "single" for d in DOMS for r in ("specific", "share")}
    kinds["cross"] = "cross"
    keys = jax.random.split(k_enc, len(kinds))
    out = {
        n: encoder_init(k, dim=dim, n_layers=n_layers, kind=kind)
        for (n, kind), k in zip(kinds.items(), keys, strict=True)
    }
    return {"emb": emb, **out}
