"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation", SIGIR 2020): the target-only graph baseline `lightgcn`.

    transferjax run experiments/ml_overlap_recbole.py --set method=lightgcn

The graph is the bipartite graph of the target training interactions (every training row is
an edge, whatever its rating, as RecBole does). With ego (layer-0) embeddings e^(0), K =
`lightgcn.n_layers` layers of light graph convolution (no transform, no nonlinearity):

    e_u^(k+1) = sum_{i in N_u} 1 / sqrt(|N_u| |N_i|) e_i^(k),
    e_i^(k+1) = sum_{u in N_i} 1 / sqrt(|N_i| |N_u|) e_u^(k)                      (Eq. 3)

    e_u = sum_{k=0..K} alpha_k e_u^(k),   alpha_k = 1 / (K + 1)                  (Eq. 4)

    y_ui = e_u^T e_i                                                             (Eq. 5)

    L = sum_{(u,i,j)} -ln sigmoid(y_ui - y_uj) + lambda ||E^(0)||^2              (Eq. 15)

Conventions here:
- loss "bpr" (the paper's): one negative j per training row, `lightgcn.negatives` "uniform"
  over the items, as target `mf`'s BPR (`transferjax.models.mf.sample_negatives`), or
  "unseen", none of the user's training items (`transferjax.models.pointwise.sample_unseen`,
  as RecBole's sampler). The L2 term (`lightgcn.reg_form`) is lambda = `lightgcn.reg` times
  "squared": the squared norms of the batch's ego rows e0_u, e0_i, e0_j, averaged over the
  batch like the BPR term (the batch form of Eq. 15, as in the authors' code), or "norms":
  RecBole's `EmbLoss`, the Frobenius norms (not squared) of the batch's three ego row
  matrices over the batch size (`transferjax.models.graph.lightgcn_bpr_loss`).
- loss "mse" (not in the paper, for rating protocols): r_hat = mu + b_u + b_i + e_u^T e_i,
  squared error plus lambda (|e0_u|^2 + |e0_i|^2 + b_u^2 + b_i^2).
- loss "auto" (the default) follows what the run selects on (`eval.select`, or its "auto"
  choice): "mse" for rmse / mae (explicit ratings without ranking), "bpr" for every ranking
  metric, also on explicit data such as `ml_overlap_recbole` (LightGCN is a ranking model;
  RecBole's is implicit-only).
- Every step propagates the whole graph (as LightGCN does), then gathers the batch's rows.
  The graph enters as `Built.data` (edge lists, un-batched, never checkpointed); propagation
  sums over the edges (`transferjax.models.bipartite`), never a dense matrix.
- Ego embeddings (`lightgcn.init`) are N(0, init_std^2) or Xavier-uniform (the paper's and
  RecBole's init); learning rate, epochs, batch size and optimizer are the trainer's
  (`trainer.*`), as target-only `mf`.
- RecBole's LightGCN is `init=xavier_uniform`, `negatives=unseen`, `reg_form=norms` (its
  yaml: dim 64, n_layers 2, reg 1e-5); one training step of each is checked equal by
  `benchmarks/reproduce/lightgcn_equal.py`.
- Scoring propagates once per evaluation (`Scorer.prepare`), not once per evaluation chunk.

Cold users (no target training row) are isolated nodes: their propagated embedding is their
untrained ego row scaled by 1/(K+1), so it is never used. As `mf`, a cold user gets zero
factors and bias: with "mse" the score is mu + b_i; with "bpr" (no biases, Eq. 5) zero factors
leave no item information, so the item baseline is the training popularity (interaction count
of the item), the `popularity` method's scores.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax.numpy as jnp

from transferjax.config import COUNT0, section, setting
from transferjax.methods.api import (
    Built,
    Scorer,
    embedding_scorer,
    hyper_init,
    rating_rows,
    selected_stage,
    selects_ratings,
)
from transferjax.methods.mf import known_users
from transferjax.methods.registry import register
from transferjax.models.graph import (
    graph_arrays,
    lightgcn_bpr_loss,
    lightgcn_init,
    lightgcn_mse_loss,
    propagate,
)
from transferjax.models.pointwise import positive_index, sample_unseen


@section("lightgcn")
@dataclasses.dataclass(frozen=True, kw_only=True)
class LightGCNConfig:
    """LightGCN (module docstring).

    dim: embedding size; n_layers: K propagation layers (0 is BPR-MF without biases);
    reg: lambda of Eq. 15 (traced: sweeps share one program); loss: "bpr" (paper), "mse"
    (rating variant with biases) or "auto" (`lightgcn_loss_kind`); init: "normal" (std
    `init_std`) or "xavier_uniform" ego embeddings; negatives: "uniform" or "unseen" (not a
    training item of the user) BPR negatives; reg_form: "squared" (Eq. 15's batch form) or
    "norms" (RecBole's EmbLoss), for "bpr".
    """

    dim: int = 64
    n_layers: int = setting(3, allowed=COUNT0)
    reg: float = 1e-4
    loss: Literal["auto", "bpr", "mse"] = "auto"
    init: Literal["normal", "xavier_uniform"] = "normal"
    init_std: float = 0.1
    negatives: Literal["uniform", "unseen"] = "uniform"
    reg_form: Literal["squared", "norms"] = "squared"


LIGHTGCN_TRACED = ("lightgcn.reg",)


def lightgcn_loss_kind(cfg, split) -> str:
    """`lightgcn.loss`, with "auto" resolved by the selection metric: "mse" when the run selects
    on rmse / mae (`selects_ratings`), "bpr" otherwise."""
    if cfg.lightgcn.loss != "auto":
        return cfg.lightgcn.loss
    return "mse" if selects_ratings(cfg, split) else "bpr"


PART = "lightgcn"


def lightgcn_tables(v, n_layers: int):
    """(users f32[n_users, d], items f32[n_items, d]): the final embeddings (Eq. 4)."""
    p = v[PART]
    return propagate(p["user"], p["item"], v["graph"], n_layers)


def lightgcn_scorer(n_layers: int, biases: bool) -> Scorer:
    """Scores mu + b_u + b_i + e_u.e_i (no biases nor mu for "bpr") for known users and the
    item baseline for cold ones: mu + b_i with `biases`, else `v["item_pop"]`. The final tables
    are propagated once per evaluation (`prepare`), or per call without it."""

    def prepare(v):
        return {"lightgcn_final": lightgcn_tables(v, n_layers)}

    def sides(v, tgt):
        fu, fi = v["lightgcn_final"] if "lightgcn_final" in v else lightgcn_tables(v, n_layers)
        p = v[PART]
        if biases:
            ub, ib, base = p["mu"] + p["user_bias"][tgt], p["item_bias"], p["mu"] + p["item_bias"]
        else:
            ub, ib, base = jnp.zeros(tgt.shape, fu.dtype), jnp.zeros(fi.shape[:1]), v["item_pop"]
        return fu[tgt], ub, fi, ib, base, v["known_target"][tgt]

    return embedding_scorer(sides, prepare=prepare)


@register("lightgcn", traced=LIGHTGCN_TRACED)
def build_lightgcn(cfg, split) -> Built:
    """LightGCN (He et al., SIGIR 2020) on the target graph; cold users get the item baseline."""
    c = cfg.lightgcn
    tr = split.target_train
    n_layers, mse = int(c.n_layers), lightgcn_loss_kind(cfg, split) == "mse"
    graph = graph_arrays(tr.user, tr.item, tr.n_users, tr.n_items)
    unseen, n_items = c.negatives == "unseen" and not mse, tr.n_items

    def init(key):
        p = lightgcn_init(
            key,
            n_users=tr.n_users,
            n_items=tr.n_items,
            dim=c.dim,
            init_std=c.init_std,
            biases=mse,
            init=c.init,
        )
        if mse:
            p["mu"] = jnp.asarray(float(tr.rating.mean()) if len(tr) else 0.0, jnp.float32)
        return {PART: p}

    def loss(v, batch, key):
        reg = v["hyper"]["lightgcn.reg"]
        if mse:
            return lightgcn_mse_loss(v[PART], v["graph"], batch, n_layers=n_layers, reg=reg)
        neg = None
        if unseen:
            neg = sample_unseen(key, v["lightgcn_positives"], batch["user"], n_items=n_items, n=1)
            neg = neg[:, 0]
        return lightgcn_bpr_loss(
            v[PART],
            v["graph"],
            batch,
            n_layers=n_layers,
            reg=reg,
            key=key,
            negatives=neg,
            reg_form=c.reg_form,
        )

    stage = selected_stage(cfg, name="lightgcn", part=PART, loss=loss, examples=rating_rows(tr))
    data = {
        "graph": graph,
        "known_target": known_users(tr),
        "item_pop": jnp.asarray(tr.item_counts(), jnp.float32),  # cold users' baseline (bpr)
    }
    if unseen:
        index = positive_index(tr.user, tr.item, tr.n_users)
        data["lightgcn_positives"] = {k: jnp.asarray(a) for k, a in index.items()}
    return Built(
        init=init,
        stages=(stage,),
        scorer=lightgcn_scorer(n_layers, mse),
        data=data,
        hyper=hyper_init(cfg, LIGHTGCN_TRACED),
    )
