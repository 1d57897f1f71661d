"""CDRIB's encoders, information-bottleneck terms and loss (Cao et al., "Cross-domain
Recommendation to Cold-Start Users via Variational Information Bottleneck", ICDE 2022), as the
official code computes them (github.com/cjx96/CDRIB at bd98945: `model/VBGE.py`, `GCN.py`,
`CDRIB.py`, `trainer.py`, defaults of `train_rec.py`).

Encoders. Each domain X has one variational bipartite graph encoder over its row-normalised
UV / VU graphs (the single-domain layers of `transferjax.models.vbge`; GCN = leaky_relu(A x W +
b)): L - 1 plain layers then a last layer giving (mu, ls) for users and items, dropout on the
user and item rows before every layer. Unlike DisenCDR's, CDRIB's `VBGE` keeps every layer:

    z = mu + eps * sigma(ls)  (training),  mu (evaluation);   sigma(ls) = exp(0.1 + 0.9
        softplus(min(ls, 0.4)))                               (`LastLayer.reparameters`)
    U^X = [u_1 | ... | u_{L-1} | z_u]   f32[n_users, d L],   V^X likewise   (`VBGE.forward`)

In-domain bottleneck (the compression terms), per domain, rows averaged, dimensions summed:

    KL^X = beta KL(q(z_u) || p) + KL(q(z_v) || p),  p = N(0, sigma(1)) = N(0, sigma(0.4))

Cross-domain bottleneck. An overlapping user u (linked in both domains) is represented in
domain X by the OTHER domain's encoder (`CDRIB.forward`'s concat): users of X are

    R^X_u = U^Y_{u'} for a linked user u ~ u',   U^X_u otherwise,

so X's interactions of a linked user are reconstructed from its Y representation (the
cross-domain terms) and the others' from their own (in-domain terms). Ranking: y = <R^X_u,
V^X_i>, BCE-with-logits of a positive (1) and a negative (0) per training row, each the mean
over the batch's rows of the domain. The contrastive critic (`CDRIB.dis`, an MLP 2 d L -> d ->
100 -> 1 on [a | b]) scores k linked pairs against shuffled ones:

    pos = D(U^S_u, U^T_u'),  neg_1 = D(U^S_u, U^T_r),  neg_2 = D(U^S_r', U^T_u')
    critic = hinge(pos, neg_1) + hinge(pos, neg_2),  hinge = mean relu(margin - sig(pos) +
        sig(neg))                                      (`bce`: BCE(pos, 1) + BCE(neg_i, 0))

with u ~ u' the first k of a permutation of the linked pairs, r (r') the first k of a
permutation of the target (source) users, k = min(user_batch_size, #linked). The loss is

    L = sum_X [BCE(y+, 1) + BCE(y-, 0)] + KL^S + KL^T + critic          (`reconstruct_graph`)

Matches the official code, line by line: the GCN / Linear layers, their parameters and torch's
initialisations (N(0, 1) embeddings, U(+-1/sqrt(fan)) otherwise); dropout before every encoder
layer; the clamp at 0.4 inside sigma (its gradient is 1 up to and at the bound, as torch's
`clamp_max`); the prior passed as logstd 1; the sample with std sigma (not exp(sigma) as in
DisenCDR); KLs `.mean(dim=0).sum()` over every row of the tables, users without training rows
in the domain included (no masks, unlike `transferjax.models.disencdr`'s); beta on the user
KL only; the concatenation of every layer; the user swap of linked users; the critic's three
permutations (over all users of a domain, the user itself included), its MLP and its hinge /
BCE forms; the four BCE terms and the unit weights of the sum.
`benchmarks.reproduce.cdrib_equal` checks one training step against the official code in
float64.

Differs:
- users are linked by the data's overlap pairs (`link`), not by "id below `shared_user`"; the
  official `shared_user` = (the smallest test user of the two domains) + 1 also swaps one
  cold user (an off-by-one), ours links exactly the pairs with training rows in both domains.
  In evaluation the official code swaps every id below the test files' max + 1 (all shared
  users, warm or cold); ours every pair whose source side has training rows (`swap` with the
  evaluation partners of `transferjax.methods.cdrib`).
- when the linked pairs are fewer than `user_batch_size`, k is their number for all three
  draws (the official hinge would fail to broadcast).
- a batch without rows of a domain adds 0 for its BCE terms (the official mean would be NaN);
  padded rows are masked, not repeated (`bce_terms`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from transferjax.models.disencdr import DOMS, bce_terms, kl_normal, log_sigma
from transferjax.models.mlp import mlp_apply
from transferjax.models.vbge import encoder_init, specific_encoder

CLAMP = 0.4  # torch.clamp_max(logstd, 0.4) inside sigma
HIDDEN = 100  # the critic's second hidden width (`nn.Linear(feature_dim, 100)`)


def clamp_logstd(ls: jax.Array) -> jax.Array:
    """min(ls, 0.4) with torch's `clamp_max` gradient (1 where ls <= 0.4)."""
    return jnp.where(ls > CLAMP, CLAMP, ls)


def kl_prior(mu: jax.Array, ls: jax.Array) -> jax.Array:
    """sum_d mean_rows KL(N(mu, sigma(ls)) || N(0, sigma(1))) of f32[n, d] (`_kld_gauss`)."""
    return kl_normal(mu, clamp_logstd(ls), jnp.zeros_like(mu), jnp.full_like(ls, CLAMP))


def sample(mu: jax.Array, ls: jax.Array, eps: jax.Array | None) -> jax.Array:
    """mu + eps * sigma(ls) (`reparameters` in training); mu when eps is None."""
    if eps is None:
        return mu
    return mu + eps * jnp.exp(log_sigma(clamp_logstd(ls)))


def encode(p, u, v, g, *, alpha, beta, drop_rate=0.0, key=None, eps=None):
    """One domain's `VBGE.forward` and its `kld_loss`.

    Args:
      p: `encoder_init(kind="single")` params; u f32[n_users, d], v f32[n_items, d] ego rows.
      g: `row_normalized_edges`; key: dropout (None: none); eps: {"user": f32[n_users, d],
        "item": f32[n_items, d]} the training noise (None: the means).

    Returns:
      (users f32[n_users, d L], items f32[n_items, d L], beta KL_user + KL_item).
    """
    outs = specific_encoder(p, u, v, g, alpha=alpha, drop_rate=drop_rate, key=key, all_layers=True)
    (um, ul), (vm, vl) = outs[-1]
    zu = sample(um, ul, None if eps is None else eps["user"])
    zv = sample(vm, vl, None if eps is None else eps["item"])
    users = jnp.concatenate([o[0] for o in outs[:-1]] + [zu], -1)
    items = jnp.concatenate([o[1] for o in outs[:-1]] + [zv], -1)
    return users, items, beta * kl_prior(um, ul) + kl_prior(vm, vl)


def swap(own: jax.Array, other: jax.Array, partner: jax.Array) -> jax.Array:
    """f32[n, D]: other[partner[r]] for rows with a partner (>= 0), own[r] otherwise."""
    return jnp.where((partner >= 0)[:, None], other[jnp.maximum(partner, 0)], own)


def cdrib_draws(key, *, sizes: dict, dim: int, n_linked: int, k: int) -> dict:
    """The random numbers of one training forward.

    Returns:
      {"eps": {domain: {"user": f32[n_users, dim], "item": f32[n_items, dim]}}, "drop":
      {domain: key}, "pos": i32[k] linked pairs, "neg_t": i32[k] target users, "neg_s": i32[k]
      source users (each the head of a permutation, `torch.randperm(n)[:k]`)}.
    """
    ks = jax.random.split(key, 9)

    def head(key, n):  # no pairs: an empty draw (the critic is then 0)
        return jax.random.permutation(key, n)[:k] if n else jnp.zeros((0,), jnp.int32)

    eps = {
        d: {
            "user": jax.random.normal(ks[2 * j], (sizes[d][0], dim)),
            "item": jax.random.normal(ks[2 * j + 1], (sizes[d][1], dim)),
        }
        for j, d in enumerate(DOMS)
    }
    return {
        "eps": eps,
        "drop": {"source": ks[4], "target": ks[5]},
        "pos": head(ks[6], n_linked),
        "neg_t": head(ks[7], sizes["target"][0]),
        "neg_s": head(ks[8], sizes["source"][0]),
    }


def cdrib_forward(p, graphs, *, alpha, beta, drop_rate=0.0, draws=None):
    """Both domains' own encodings ({domain: (users f32[n_users, d L], items f32[n_items,
    d L])}) and the sum of their KL terms; training (dropout and noise) with `draws`."""
    out, kl = {}, 0.0
    for d in DOMS:
        e = p["emb"]
        users, items, kl_d = encode(
            p[d],
            e[f"{d}_user"],
            e[f"{d}_item"],
            graphs[d],
            alpha=alpha,
            beta=beta,
            drop_rate=drop_rate,
            key=None if draws is None else draws["drop"][d],
            eps=None if draws is None else draws["eps"][d],
        )
        out[d], kl = (users, items), kl + kl_d
    return out, kl


def discriminate(p: list, a: jax.Array, b: jax.Array) -> jax.Array:
    """f32[k] logits of the critic on pairs (a f32[k, D], b f32[k, D]) (`CDRIB.dis`)."""
    return mlp_apply(p, jnp.concatenate([a, b], -1), final_activation=False)[:, 0]


def critic_loss(p, su, tu, pairs, draws, *, margin, kind: str = "hinge") -> jax.Array:
    """The contrastive critic of the linked pairs i32[n_linked, 2] (module docstring)."""
    if pairs.shape[0] == 0:
        return jnp.zeros((), su.dtype)
    s_pos, t_pos = su[pairs[draws["pos"], 0]], tu[pairs[draws["pos"], 1]]
    pos = discriminate(p, s_pos, t_pos)
    neg_1 = discriminate(p, s_pos, tu[draws["neg_t"]])
    neg_2 = discriminate(p, su[draws["neg_s"]], t_pos)
    if kind == "bce":
        return jnp.mean(jax.nn.softplus(-pos)) + sum(
            jnp.mean(jax.nn.softplus(n)) for n in (neg_1, neg_2)
        )

    def hinge(n):
        return jnp.mean(jax.nn.relu(margin - jax.nn.sigmoid(pos) + jax.nn.sigmoid(n)))

    return hinge(neg_1) + hinge(neg_2)


def cdrib_tables(enc: dict, link: dict) -> dict:
    """{domain: (users, items)} with each linked user's representation taken from the other
    domain. link: {"source": i32[n_source_users] target partner or -1, "target": i32[n_target
    _users] source partner or -1}."""
    (su, si), (tu, ti) = enc["source"], enc["target"]
    return {
        "source": (swap(su, tu, link["source"]), si),
        "target": (swap(tu, su, link["target"]), ti),
    }


def cdrib_loss(
    p, graphs, link, batch, draws, *, alpha, beta, margin, drop_rate=0.0, critic="hinge"
):
    """`CrossTrainer.reconstruct_graph`'s loss: (L, aux).

    Args:
      p: `cdrib_init` params; graphs: {domain: `row_normalized_edges`}.
      link: `cdrib_tables`'s, plus "pairs": i32[n_linked, 2] (source, target) linked users.
      batch: {domain: (user i32[b], pos i32[b], neg i32[b], mask bool[b])}.
      draws: `cdrib_draws`.
    """
    enc, kl = cdrib_forward(p, graphs, alpha=alpha, beta=beta, drop_rate=drop_rate, draws=draws)
    tables = cdrib_tables(enc, link)
    aux = {f"{d}_bce": bce_terms(*tables[d], *batch[d]) for d in DOMS}
    su, tu = enc["source"][0], enc["target"][0]
    aux["critic"] = critic_loss(p["disc"], su, tu, link["pairs"], draws, margin=margin, kind=critic)
    aux["kl"] = kl
    return aux["source_bce"] + aux["target_bce"] + kl + aux["critic"], aux


def _torch_linear(key, fan_in: int, fan_out: int) -> dict:
    """nn.Linear's init: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); W stored [in, out]."""
    kw, kb = jax.random.split(key)
    bound = 1 / math.sqrt(fan_in)
    return {
        "w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
        "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
    }


def cdrib_init(key, *, sizes: dict, dim: int, n_layers: int) -> dict:
    """{"emb": {"source_user", "source_item", "target_user", "target_item"}, "source", "target":
    `encoder_init` (single), "disc": the critic's three layers}; sizes {domain: (n_users,
    n_items)}."""
    k_emb, k_s, k_t, k_d = jax.random.split(key, 4)
    names = [(f"{d}_{t}", sizes[d][t == "item"]) for d in DOMS for t in ("user", "item")]
    emb = {
        n: jax.random.normal(k, (rows, dim), jnp.float32)
        for (n, rows), k in zip(names, jax.random.split(k_emb, len(names)), strict=True)
    }
    widths = (2 * dim * n_layers, dim, HIDDEN, 1)
    disc = [
        _torch_linear(k, i, o)
        for k, i, o in zip(jax.random.split(k_d, 3), widths[:-1], widths[1:], strict=True)
    ]
    return {
        "emb": emb,
        "source": encoder_init(k_s, dim=dim, n_layers=n_layers, kind="single"),
        "target": encoder_init(k_t, dim=dim, n_layers=n_layers, kind="single"),
        "disc": disc,
    }
