"""Target-only biased MF (`mf`) and the per-domain MF stage that mapping methods pre-train.

A cold user has no target history, so its factors and bias are replaced by zeros: the
prediction is mu + b_i (the learned item baseline), never a random embedding.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Literal

import jax.numpy as jnp

from transferjax.config import ConfigError, section
from transferjax.methods.api import (
    Built,
    Scorer,
    Stage,
    all_items_pay,
    hyper_init,
    make_optimizer,
    own_or_fallback,
)
from transferjax.methods.registry import register
from transferjax.models.mf import mf_init, mf_loss, mf_score, mf_score_all
from transferjax.models.mf_sparse import mf_sparse_step
from transferjax.models.pointwise import positive_index
from transferjax.models.sparse import make_sparse_optimizer


@section("mf")
@dataclasses.dataclass(frozen=True, kw_only=True)
class MFConfig:
    """Matrix factorisation (per domain): r_ui = mu + b_u + b_i + <p_u, q_i>.

    loss: "mse" for explicit ratings, "bpr" for implicit feedback (one sampled negative), "bce"
      pointwise cross-entropy with one sampled negative (label 0) per positive.
    reg: L2 weight on the factors and biases of each example's rows.
    epochs / lr: pre-training of the per-domain MF used by mapping methods (EMCDR).
    sparse: row-sparse updates of the embedding tables (`transferjax.models.sparse`): each step
      touches only the batch's rows, with lazily updated moments; adam becomes lazy Adam,
      adagrad row-wise Adagrad (other optimizers are refused). Applies to every MF stage
      (mf, EMCDR/PTUPCDR pre-training) and to CMF.
    negatives: the sampled negative of "bpr" and "bce": "uniform" over the domain's items (it
      may be one of the user's training items: the classic BPR sampler) or "unseen": drawn
      again (up to 8 draws) while it is one of them, as RecBole's samplers draw
      (`transferjax.models.mf.sample_negatives`). Applies to the MF stages: mf, CMF, and
      EMCDR's and PTUPCDR's pre-training (PTUPCDR's meta stage draws uniformly).
    """

    dim: int = 32
    reg: float = 1e-3
    loss: Literal["auto", "mse", "bpr", "bce"] = "auto"
    init_std: float = 0.1
    epochs: int = 20
    lr: float = 1e-2
    batch_size: int = 1024
    sparse: bool = False
    negatives: Literal["uniform", "unseen"] = "uniform"


def mf_loss_kind(cfg, inter) -> str:
    if cfg.mf.loss != "auto":
        return cfg.mf.loss
    return "bpr" if inter.implicit else "mse"


def mf_positives(cfg, rows: dict) -> dict:
    """The `Built.data` entry `mf.negatives=unseen` needs: {"mf_positives": {part: the
    `positive_index` of the part's training rows}}, from rows[part] = (user, item, n_users)
    in the rows its MF params index; none with uniform negatives."""
    if cfg.mf.negatives == "uniform":
        return {}
    return {
        "mf_positives": {
            part: {k: jnp.asarray(v) for k, v in positive_index(*r).items()}
            for part, r in rows.items()
        }
    }


def _index_rows(inter) -> tuple:
    return inter.user, inter.item, inter.n_users


def check_negatives(cfg, *kinds: str) -> None:
    """A ConfigError when `mf.negatives=unseen` and none of the losses `kinds` samples one."""
    if cfg.mf.negatives == "unseen" and all(k == "mse" for k in kinds):
        raise ConfigError(
            "mf.negatives=unseen: the MF loss here is mse (explicit ratings), which samples no "
            "negatives; set mf.loss=bpr or bce, or leave mf.negatives=uniform"
        )


def domain_mf(
    cfg,
    inter,
    *,
    name: str,
    part: str,
    epochs: int,
    lr: float,
    batch_size: int,
    select: bool,
    optimizer: str = "adam",
) -> tuple[Callable, Stage]:
    """`init(key) -> MF params` of one domain and the stage that trains them (`part`) on `inter`.

    The stage's loss reads the traced `view["hyper"]["mf.reg"]` (`MF_TRACED`): the caller's
    `Built.hyper` holds `hyper_init(cfg, MF_TRACED)`."""
    kind = mf_loss_kind(cfg, inter)
    mu = float(inter.rating.mean()) if kind == "mse" else 0.0
    init = functools.partial(
        mf_init,
        n_users=inter.n_users,
        n_items=inter.n_items,
        dim=cfg.mf.dim,
        init_std=cfg.mf.init_std,
        mu=mu,
    )

    unseen = cfg.mf.negatives == "unseen"  # the caller's data holds `mf_positives`
    check_negatives(cfg, kind)

    def loss(p, batch, k):
        view = {**p[part], "positives": p["mf_positives"][part]} if unseen else p[part]
        return mf_loss(view, batch, kind=kind, reg=p["hyper"]["mf.reg"], key=k)

    opt, step = make_optimizer(optimizer, lr=lr, weight_decay=cfg.trainer.weight_decay), None
    if cfg.mf.sparse:  # row-sparse updates: only the batch's rows (transferjax.models.sparse)
        opt = make_sparse_optimizer(optimizer, lr=lr)
        step = mf_sparse_step(
            kind=kind, reg="mf.reg", optimizer=opt, positives=part if unseen else None
        )
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
    return init, stage


def bridge_pretraining(
    cfg, split, method: str, *, pairs=None, what: str = "warm overlapping users"
) -> tuple:
    """((init, stage) of the source MF, (init, stage) of the target MF): the unselected
    pre-training stages (`mf.epochs`, `mf.lr`, `mf.batch_size`) of the methods that learn a
    bridge between the two domains' factors (EMCDR, PTUPCDR) on `pairs` (default: the warm
    overlapping users), which `method` needs: none is a ValueError naming `what`."""
    if len(split.warm_pairs if pairs is None else pairs) == 0:
        raise ValueError(f"{method} needs {what}; the split has none")
    kw = dict(epochs=cfg.mf.epochs, lr=cfg.mf.lr, batch_size=cfg.mf.batch_size, select=False)
    return (
        domain_mf(cfg, split.source_train, name="source_mf", part="source", **kw),
        domain_mf(cfg, split.target_train, name="target_mf", part="target", **kw),
    )


def bridge_positives(cfg, split) -> dict:
    """`mf_positives` of both pre-trained domains (`bridge_pretraining`'s parts)."""
    parts = {"source": split.source_train, "target": split.target_train}
    return mf_positives(cfg, {k: _index_rows(d) for k, d in parts.items()})


def known_users(inter) -> jnp.ndarray:
    """bool[n_users]: users with at least one interaction in `inter`."""
    return jnp.asarray(inter.user_counts() > 0)


MF_TRACED = ("mf.reg",)


def target_user_repr(p, src, tgt) -> tuple:
    """(vec f32[c, d], bias f32[c]): each user's own target factors, zeros for a user without
    target training rows (`p["known_target"]`), who is scored by the item baseline."""
    t = p["target"]
    own = (t["user"][tgt], t["user_bias"][tgt])
    zero = (jnp.zeros_like(own[0]), jnp.zeros_like(own[1]))
    return own_or_fallback(p["known_target"], own, zero, tgt)


@register("mf", traced=MF_TRACED)
def build_mf(cfg, split) -> Built:
    """Target-only MF; cold users get mu + b_i."""
    tr = split.target_train
    init, stage = domain_mf(
        cfg,
        tr,
        name="target_mf",
        part="target",
        epochs=cfg.trainer.epochs,
        lr=cfg.trainer.lr,
        batch_size=cfg.trainer.batch_size,
        select=True,
        optimizer=cfg.trainer.optimizer,
    )

    return Built(
        init=lambda key: {"target": init(key)},
        stages=(stage,),
        scorer=mf_scorer(target_user_repr),
        data={"known_target": known_users(tr), **mf_positives(cfg, {"target": _index_rows(tr)})},
        hyper=hyper_init(cfg, MF_TRACED),
    )


def mf_scorer(
    user_repr: Callable, *, items_key: str = "target", items: Callable | None = None
) -> Scorer:
    """A `Scorer` for MF-style methods.

    Args:
      user_repr: `(params, src, tgt) -> (vec f32[c, d], bias f32[c])` target-space user factors.
      items_key: params key of the target MF params (item factors, item biases, mu).
      items: `params -> target MF params` with the item rows scored (default: `params[items_key]`
        as trained; EMCDR over items replaces the overlap items' rows by mapped ones).
    """
    table = (lambda p: p[items_key]) if items is None else items

    def score_items(params, src, tgt, cand):
        vec, bias = user_repr(params, src, tgt)
        t = table(params)
        if all_items_pay(cand, t["item"].shape[0]):
            # Many candidates per user (sampled ranking): one matmul against all items in place
            # of gathering a [c, m, d] block of item factors (`all_items_pay`).
            return jnp.take_along_axis(mf_score_all(vec, bias, t), cand, axis=1)
        return mf_score(vec, bias, t, cand)

    def score_all(params, src, tgt):
        vec, bias = user_repr(params, src, tgt)
        return mf_score_all(vec, bias, table(params))

    return Scorer(score_items=score_items, score_all=score_all)
