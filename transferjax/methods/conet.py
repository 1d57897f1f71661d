"""CoNet (Hu, Zhang & Yang, "CoNet: Collaborative Cross Networks for Cross-Domain
Recommendation", CIKM 2018), as RecBole-CDR implements it (`CoNet`, RUCAIBox/RecBole-CDR at
d339918): the method `conet`.

    transferjax run experiments/cdrib_video_game.py --set method=conet --set eval.ranking=both

The model (`transferjax.models.crossnet`). Each domain d has the paper's base network, a
feed-forward network over the concatenated embeddings a^0_d = [P_d u; Q_d i] (the input of
Eq. 1), and the hidden layers of the two are joined by the paper's cross connections units
(Eqs. 2-4: the term H_l a^l is the cross mapping from the other network): one transfer matrix
H_l per layer, shared by both directions (as the paper's footnote in its Sec. 2.4 does),

    a^{l+1}_s = relu(W^l_s a^l_s + b^l_s + H_l a^l_t)      (Eq. 3b)
    a^{l+1}_t = relu(W^l_t a^l_t + b^l_t + H_l a^l_s)      (Eq. 3a)
    r_hat_d = sigmoid(h_d^T a^L_d + o_d)                   (output layer of Eq. 1, Sec. 2.2)

and training minimises the paper's joint loss of both domains, here with RecBole-CDR's
cross-matrix regulariser:

    L = L_s + L_t + reg * sum_l ||H_l||_F,    L_d: BCE of r_hat_d on positives and sampled
                                              negatives (Eq. 5; `transferjax.methods.pointwise`)

Equation numbers are those of the April 2018 arXiv text of 1804.06769 (v1/v2, the version
arxiv-vanity renders; its target T is the app domain, so Eq. 3a is the target network). The
CIKM camera-ready (arXiv v3) numbers them differently (the authors' code README cites its lasso
penalty as Eq. 9, Eq. 8 in the April text): check the version before following a number.
Where ours has no counterpart in the paper:
- biases: the paper leaves them out of Eq. 3 (for brevity, it says) and out of its output
  layer; b^l_d and o_d follow RecBole-CDR;
- user tables: the paper shares one user table P between the two networks (Sec. 2.4);
  RecBole-CDR, and so ours, gives each network its own P_d;
- the joint loss: the paper's Eq. 7 weighs the domains alpha * L_t + (1 - alpha) * L_s; the
  unweighted sum above is RecBole-CDR's (twice Eq. 7 at alpha = 1/2);
- the Frobenius-norm term on H_l is RecBole-CDR's own: the paper's only penalty on H_l is the
  entrywise L1 (lasso) of its sparse variant (Eq. 8 of the April text), not implemented here.

What matches RecBole-CDR's `CoNet` (with `CoNet.yaml` and its `overall.yaml`):
- embedding size 64 and hidden layers [64, 32, 16, 8] (`conet.dim`, `conet.layers`); relu;
  one linear output unit with a sigmoid; Xavier-normal tables and weights, zero biases;
- each network has its own user and item tables over the users and items of BOTH domains
  (RecBole's `total_num_users` / `total_num_items` rows, our joint rows: `DualLayout`); a
  domain-d example (u, i) passes through both networks on the same rows and is scored by
  network d's output;
- the cross units act on the overlap rows only: on examples whose user is an overlapping
  user (shared users) or whose item is an overlapping item (shared items, ML-1M -> ML-100k);
  `conet.share="auto"` picks users when the data has overlapping users, as RecBole-CDR's
  `mode` (it refuses data with both; we share one side, users first);
- BCE against 1 / 0 labels of each positive and one uniform negative of the domain's items
  that is not one of the user's training items (`conet.n_neg`), both domains every step,
  B positives each (`trainer.batch_size` = RecBole's `train_batch_size` / (1 + n_neg));
- the regulariser is the sum of the Frobenius norms (not squared) with weight 1: RecBole's
  code adds `torch.norm(H_l)` unweighted (its yaml's `reg_weight: 1e-2` is read but never
  used), so `conet.reg` defaults to 1.0;
- Adam at lr 1e-3 with no weight decay is `trainer.*` (set by the experiment).

Where ours differs, and why:
- scoring: RecBole-CDR's `predict` / `full_sort_predict` run the target network ALONE, without
  the cross units it was trained with (for overlap rows the trained layers expect H_l a^l_s);
  ours scores overlap rows with the cross-connected forward, as trained and as in the paper
  (`conet.score_cross=true`); `conet.score_cross=false` reproduces RecBole-CDR's scores;
- RecBole-CDR zero-fills the rows of the other domain's users and items before its Xavier
  init, which overwrites them, so every row of each table is a trained free row; ours
  initialises all rows alike (the same model);
- the source batch is drawn with replacement each step instead of RecBole's cycling pass;
- BCE is computed from logits (`log_sigmoid`), BCELoss clamps each log at -100 instead;
- loss "mse" is our rating variant (not in the paper nor RecBole-CDR): r_hat = mu_d + z_d
  with squared error and no negatives; "auto" takes it when the run selects on rmse / mae.
  CoNet is a ranking model; the variant keeps its networks and cross units and changes only
  the output and the loss, so rating tables can compare its transfer with the other methods'
  (a refusal would leave it out of every rating protocol); "auto" never picks it for a
  ranking selection, and the run records the resolved loss in its config.

Cold users. Under the cold-start protocols a cold target user is an overlapping user with a
source profile and no target training row. Its joint user row is the one its source examples
train, in both networks (its source examples are overlap rows: they reach the target network's
row through the cross units), so its target score is the cross-connected target output on that
row (with `score_cross=false`, the target network alone on it). A user whose row no training
row of either domain reaches is scored by the item baseline (`methods.pointwise`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from transferjax.config import COUNT, section, setting
from transferjax.methods.pointwise import (
    PointwiseModel,
    build_pointwise,
    dual_layout,
)
from transferjax.methods.registry import register
from transferjax.models.crossnet import conet_init, conet_logits, cross_norm, single_logits


@section("conet")
@dataclasses.dataclass(frozen=True, kw_only=True)
class CoNetConfig:
    """CoNet (module docstring), RecBole-CDR's defaults.

        transferjax run experiments/ml_overlap_recbole.py --set method=conet

    dim: embedding size; layers: widths of the cross-connected hidden layers; reg: weight of
    sum_l ||H_l||_F (traced: sweeps share one program); loss: "bce", "mse" (our rating
    variant) or "auto" (by the selection metric); n_neg: sampled negatives per positive;
    share: "users", "items" or "auto"; score_cross: score overlap rows with the cross units
    (false: the target network alone, as RecBole-CDR's predict).
    """

    dim: int = 64
    layers: tuple[int, ...] = setting((64, 32, 16, 8), allowed=COUNT)
    reg: float = 1.0
    loss: Literal["auto", "bce", "mse"] = "auto"
    n_neg: int = 1
    share: Literal["auto", "users", "items"] = "auto"
    score_cross: bool = True


CONET_TRACED = ("conet.reg",)


@register("conet", traced=CONET_TRACED)
def build_conet(cfg, split):
    """CoNet (Hu et al., CIKM 2018): two domain networks joined by cross-connection units."""
    c = cfg.conet
    layout = dual_layout(split, c.share, setting="conet.share")
    cross_on = layout.overlap

    def logits(p, domain, user, item, key):
        z_s, z_t = conet_logits(p, user, item, cross_on(user, item))
        return z_s if domain == "source" else z_t

    def score(p, user, item):
        if c.score_cross:
            return conet_logits(p, user, item, cross_on(user, item))[1]
        return single_logits(p, "target", user, item)

    def extra(p, hyper):
        norm = cross_norm(p)
        return hyper["conet.reg"] * norm, {"cross_norm": norm}

    model = PointwiseModel(
        part="conet",
        init=lambda key: conet_init(
            key, n_users=layout.n_users, n_items=layout.n_items, dim=c.dim, layers=c.layers
        ),
        logits=logits,
        score=score,
        weights=lambda hyper: (1.0, 1.0),
        extra=extra,
        width=max(c.layers),
    )
    return build_pointwise(
        cfg, split, model, layout=layout, loss=c.loss, n_neg=c.n_neg, traced=CONET_TRACED
    )
