"""Baselines that every table lists beside the transfer methods.

- `popularity`: ranks target items by training interaction count; as a rating predictor it
  returns the global mean rating.
- `item_mean`: predicts an item's mean training rating, shrunk towards the global mean
  ((sum_r + k * mu) / (n_i + k), k = 5); ranks items by that value.
- `mf`: target-only biased MF. A cold user has no target history, so its factors and bias are
  replaced by zeros: the prediction is mu + b_i (the learned item baseline), never a random
  embedding.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from transferjax.models.mf import mf_init, mf_loss
from transferjax.train.trainer import Stage, make_optimizer
from transferjax.transfer.registry import (
    Built,
    Scorer,
    hyper_init,
    mf_scorer,
    own_or_fallback,
    register,
)

SHRINK = 5.0


def _item_table_scorer(predict=None) -> Scorer:
    """Scores that depend on the item only: a lookup in params["table"] f32[n_items]."""

    def score_items(params, src, tgt, items):
        return params["table"][items]

    def score_all(params, src, tgt):
        return jnp.broadcast_to(params["table"][None], (tgt.shape[0], params["table"].shape[0]))

    return Scorer(score_items=score_items, score_all=score_all, predict=predict)


@register("popularity")
def build_popularity(cfg, split, *, key) -> Built:
    """Item popularity (training count) for ranking; global mean for ratings."""
    tr = split.target_train
    counts = tr.item_counts().astype(np.float32)
    mu = jnp.asarray(tr.rating.mean(), jnp.float32)

    def predict(params, src, tgt, items):
        return jnp.broadcast_to(params["mu"], items.shape)

    return Built(
        params={"table": jnp.asarray(counts), "mu": mu},
        stages=(),
        scorer=_item_table_scorer(predict),
    )


def item_means(tr, *, shrink: float = SHRINK) -> np.ndarray:
    """f32[n_items] (sum of ratings + shrink * mu) / (count + shrink)."""
    mu = float(tr.rating.mean())
    sums = np.bincount(tr.item, weights=tr.rating, minlength=tr.n_items)
    counts = np.bincount(tr.item, minlength=tr.n_items)
    return ((sums + shrink * mu) / (counts + shrink)).astype(np.float32)


@register("item_mean")
def build_item_mean(cfg, split, *, key) -> Built:
    """Item mean rating shrunk to the global mean."""
    table = item_means(split.target_train)
    return Built(params={"table": jnp.asarray(table)}, stages=(), scorer=_item_table_scorer())


def mf_loss_kind(cfg, inter) -> str:
    if cfg.mf.loss != "auto":
        return cfg.mf.loss
    return "bpr" if inter.implicit else "mse"


def domain_mf(
    cfg,
    inter,
    *,
    key,
    name: str,
    part: str,
    epochs: int,
    lr: float,
    batch_size: int,
    select: bool,
    optimizer: str = "adam",
) -> tuple[dict, Stage]:
    """Initial MF params for one domain and the stage that trains them on `inter`.

    The stage's losses read the traced `params["hyper"]["mf.reg"]` (`MF_TRACED`): the caller's
    params dict holds `"hyper": hyper_init(cfg, MF_TRACED)` beside `part`."""
    kind = mf_loss_kind(cfg, inter)
    mu = float(inter.rating.mean()) if kind == "mse" else 0.0
    params = mf_init(
        key,
        n_users=inter.n_users,
        n_items=inter.n_items,
        dim=cfg.mf.dim,
        init_std=cfg.mf.init_std,
        mu=mu,
    )

    def loss(p, batch, k):
        return mf_loss(p[part], batch, kind=kind, reg=p["hyper"]["mf.reg"], key=k)

    opt, step = make_optimizer(optimizer, lr=lr, weight_decay=cfg.trainer.weight_decay), None
    if cfg.mf.sparse:  # row-sparse updates: only the batch's rows (transferjax.train.sparse)
        from transferjax.train.sparse import make_sparse_optimizer
        from transferjax.train.sparse_mf import mf_sparse_step

        opt = make_sparse_optimizer(optimizer, lr=lr)
        step = mf_sparse_step(kind=kind, reg="mf.reg", optimizer=opt)
    stage = Stage(
        name=name,
        part=part,
        loss=loss,
        examples={"user": inter.user, "item": inter.item, "rating": inter.rating},
        epochs=epochs,
        batch_size=batch_size,
        optimizer=opt,
        step=step,
        select=select,
        lr_key="trainer.lr" if select else "mf.lr",
    )
    return params, stage


def known_users(inter) -> jnp.ndarray:
    """bool[n_users]: users with at least one interaction in `inter`."""
    return jnp.asarray(inter.user_counts() > 0)


MF_TRACED = ("mf.reg",)


@register("mf", traced=MF_TRACED)
def build_mf(cfg, split, *, key) -> Built:
    """Target-only MF; cold users get mu + b_i."""
    tr = split.target_train
    params, stage = domain_mf(
        cfg,
        tr,
        key=key,
        name="target_mf",
        part="target",
        epochs=cfg.trainer.epochs,
        lr=cfg.trainer.lr,
        batch_size=cfg.trainer.batch_size,
        select=True,
        optimizer=cfg.trainer.optimizer,
    )
    known = known_users(tr)

    def user_repr(p, src, tgt):
        t = p["target"]
        own = (t["user"][tgt], t["user_bias"][tgt])
        zero = (jnp.zeros_like(own[0]), jnp.zeros_like(own[1]))
        return own_or_fallback(known, own, zero, tgt)

    return Built(params={"target": params, "hyper": hyper_init(cfg, MF_TRACED)}, stages=(stage,),
                 scorer=mf_scorer(user_repr))
