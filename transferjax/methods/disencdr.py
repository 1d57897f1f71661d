"""DisenCDR (Cao et al., "DisenCDR: Learning Disentangled Representations for Cross-Domain
Recommendation", SIGIR 2022), as its official code trains it: `disencdr`.

    transferjax run experiments/disencdr_sport_phone.py --set method=disencdr
    transferjax run experiments/disencdr_sport_phone.py --set method=disencdr \
        --set trainer.batch_size=1024 --set trainer.epochs=50          # the official budget

Each user has a domain-specific representation per domain and one domain-shared
representation; each is a Gaussian posterior from a variational bipartite graph encoder over
the domains' user-item graphs (`transferjax.models.vbge`, `transferjax.models.disencdr`):

    z_u^X ~ q(.|X) = specific_X(E_u^X, E_v^X)           user and item tables of domain X
    z_u^S ~ q(.|X, Y) = cross(E_u^{XS}, E_u^{YS})        shared, mixed rate : 1 - rate
    user of X: z_u^X + z_u^S;  items of X: the specific encoder's item samples
    y_uv = <user, item>                                  (evaluation: the posterior means)

    L = sum_X [BCE(y_uv+, 1) + BCE(y_uv-, 0)]                       ranking (both domains)
      + sum_X KL(q(z^X_u) || p) + KL(q(z^X_v) || p)                specific encoders' terms
      + (1 - beta) KL(q(z^S) || p)                                  shared prior term
      + beta [KL(q(z^S) || q_X(z)) + KL(q(z^S) || q_Y(z))]          the cross-domain terms,
        q_X the per-domain "share" encoder of X over the specific ego users E_u^X

The paper's text (and so its equation numbers) was not available here; the terms above are
named after the official code (github.com/cjx96/DisenCDR, commit
4e6d60bad4d5185c99ab60423b48f87f88aa03a3): `DisenCDR.forward` (kld_loss) and
`CrossTrainer.reconstruct_graph` (the loss), the encoders in `singleVBGE.py` / `crossVBGE.py`.

Training (one stage, both domains): the examples are every source and every target training
row, shuffled together (the official `DataLoader.preprocess`); a row of domain X brings its
user's positive in X and, for the other domain, a positive drawn uniformly from the user's
training items there (`find_pos`); each domain gets one negative per row, uniform over its
items, re-drawn up to `neg_tries` = 5 times while a training item of the user (`find_neg`).
Each step runs the whole graphs through the five encoders (with dropout and samples), gathers
the batch's rows, and takes one optimizer step on L. For the first `warmup_epochs` epochs (the
official `epoch < 10`: 9 epochs) the shared representation and its KL terms are left out
(`wramup`), the specific encoders' KL terms kept; as in the official forward, the warm-up's
step does not run the share and cross encoders at all (`lax.cond` on the step counter).

Matches the official code: the row-normalised UV / VU graphs (repeats summed); GCN = leaky_relu
(A x W + b) with slope `leaky`; the plain and last layers, the user-only share path and the
cross encoder's per-layer mix, each with its own parameters; dropout placement (before every
layer of the specific encoders, before the plain layers only of the share and cross encoders);
sigma(ls) = exp(0.1 + 0.9 softplus(ls)) and the prior N(0, sigma(1)); the sample
mu + eps exp(sigma(ls)) (`sampling="official"`; "kl" samples with sigma(ls) itself);
KLs summed over dimensions, averaged over rows; the loss's weights (1, 1 - beta, beta); four
mean BCE-with-logits terms; the user = shared + specific sum; N(0, 1) embeddings, torch's
uniform init of GraphConvolution and Linear; defaults dim 128, 2 layers, dropout 0.3,
leaky 0.1, beta 0.9; Adam, lr 1e-3, no weight decay (the official `get_optimizer` is called
without its l2); the warm-up.

`python -m benchmarks.reproduce.disencdr_equal` checks this: one training step's loss and
every parameter's gradient equal the official code's to float64 rounding (about 1e-15), with
1, 2 and 3 layers, in and after the warm-up (dropout 0 and the noise zeroed on both sides).

Differs, and why:
- rate: the official `DataLoader.rate` overwrites its result in a loop and keeps the LAST
  user's share of source rows, n_s / (n_s + n_t), one constant for everyone; on Sport <-> Phone
  that is 0.5 both ways (user 4997: as many rows in each domain), our default `rate`.
  `rate_per_user` uses each user's own share (what the loop seems meant to compute).
- users are linked by the data's overlap pairs through a joint user space, not by equal ids;
  a user with training rows in one domain only takes the shared side of that domain alone
  (the official data have none). Ego rows without training rows in their domain (a cold
  user, an item only held out) are held at zero and left out of the KL means; the official
  tables hold only rows with training data, so on its data the two agree.
- selection: ours evaluates every epoch on the valid item carved from train (protocol
  `released_loo`) and keeps the best; the official script evaluates every 10 epochs on the
  test file and prints the best, i.e. selects on test. Its lr decay never fires within its
  50 epochs (it needs more than 10 evaluations) and is not implemented.
- a negative whose 5 draws are all training items of the user: `find_neg` keeps the last
  draw, `sample_unseen` the first (either is a positive; rare with sparse data);
- evaluation follows the run's protocol (`released_loo`: 999 sampled negatives among the
  target's training items, fixed by protocol.seed); the official script draws its 999 per
  user among the items the user did not train on, with Python's `random` at each start;
- its training data is padded to whole batches by repeating the first rows; ours masks the
  last batch's padding. Its unused modules (`share_mean`, `share_sigma`, the per-domain share
  encoders' item halves) have no counterpart, nor gradients there.

Cold users (`transferjax.methods.api`): a target user without target training rows but with
a source profile is scored with the shared representation from its source side plus the
target-specific encoder's output of a zero ego row; one with neither gets training
popularity. The tables are propagated once per evaluation (`Scorer.prepare`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.config import COUNT, COUNT0, PROBABILITY, Range, section, setting
from transferjax.methods.api import (
    Built,
    Scorer,
    embedding_scorer,
    hyper_init,
    selected_stage,
)
from transferjax.methods.registry import register
from transferjax.models import draws
from transferjax.models.disencdr import DOMS, bce_terms, disencdr_forward, disencdr_init
from transferjax.models.pointwise import positive_index, sample_unseen
from transferjax.models.vbge import row_normalized_edges


@section("disencdr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DisenCDRConfig:
    """DisenCDR (module docstring); defaults are the official `train_rec.py`'s.

    dim: embedding and hidden size; n_layers: encoder layers (the official `GNN`); dropout:
    on the encoders' inputs while training; leaky: the GCNs' LeakyReLU slope; beta: weight of
    the cross-domain KLs (1 - beta: the shared prior KL); rate: weight of the source side in
    the shared encoder's mix (rate_per_user: each user's share of source rows instead);
    warmup_epochs: epochs without the shared part; sampling: "official" (std exp(sigma)) or
    "kl" (std sigma); neg_tries: draws per negative. beta and dropout are traced.
    """

    dim: int = 128
    n_layers: int = setting(2, allowed=COUNT)
    dropout: float = setting(0.3, allowed=Range(lo=0, hi=1, hi_open=True))
    leaky: float = setting(0.1, allowed=Range(lo=0, hi=1))
    beta: float = setting(0.9, allowed=PROBABILITY)
    rate: float = setting(0.5, allowed=PROBABILITY)
    rate_per_user: bool = False
    warmup_epochs: int = setting(9, allowed=COUNT0)
    sampling: Literal["official", "kl"] = "official"
    neg_tries: int = setting(5, allowed=COUNT)


DISENCDR_TRACED = ("disencdr.beta", "disencdr.dropout")
PART = "disencdr"


def joint_users(split, *, rate: float, per_user: bool) -> dict:
    """The joint user space: one row per overlap pair, then the other source users, then the
    other target users (`transferjax.models.vbge.cross_encoder`'s `joint`, as numpy), plus
    "known" f32[n_joint]: rows with training rows in some domain."""
    ns, nt = split.source_train.n_users, split.target_train.n_users
    cs, ct = split.source_train.user_counts(), split.target_train.user_counts()
    pairs = np.asarray(split.data.overlap, np.int64).reshape(-1, 2)
    s_only = np.setdiff1d(np.arange(ns), pairs[:, 0])
    t_only = np.setdiff1d(np.arange(nt), pairs[:, 1])
    src = np.concatenate([pairs[:, 0], s_only, np.full(len(t_only), -1)])
    tgt = np.concatenate([pairs[:, 1], np.full(len(s_only), -1), t_only])
    n_s = np.where(src >= 0, cs[np.maximum(src, 0)], 0).astype(np.float64)
    n_t = np.where(tgt >= 0, ct[np.maximum(tgt, 0)], 0).astype(np.float64)
    has_s, has_t = n_s > 0, n_t > 0
    r = n_s / np.maximum(n_s + n_t, 1.0) if per_user else np.full(len(src), rate)
    ws = np.where(has_s & has_t, r, has_s.astype(np.float64))
    wt = np.where(has_s & has_t, 1.0 - r, has_t.astype(np.float64))
    of_src, of_tgt = np.zeros(ns, np.int32), np.zeros(nt, np.int32)
    rows = np.arange(len(src), dtype=np.int32)
    of_src[src[src >= 0]], of_tgt[tgt[tgt >= 0]] = rows[src >= 0], rows[tgt >= 0]
    return {
        "src": src.astype(np.int32),
        "tgt": tgt.astype(np.int32),
        "ws": ws.astype(np.float32),
        "wt": wt.astype(np.float32),
        "of_src": of_src,
        "of_tgt": of_tgt,
        "known": (has_s | has_t).astype(np.float32),
    }


def _forward(v: dict, c, *, shared_on=1.0, key=None):
    h = v["hyper"]
    return disencdr_forward(
        v[PART],
        v["disencdr_graph"],
        v["disencdr_joint"],
        v["disencdr_known"],
        alpha=c.leaky,
        drop_rate=h["disencdr.dropout"],
        beta=h["disencdr.beta"],
        shared_on=shared_on,
        sampling=c.sampling,
        key=key,
    )


def disencdr_scorer(c) -> Scorer:
    """<user, item> from the target tables of the evaluation forward (posterior means) for the
    target users the model represents, training popularity for the others."""

    def prepare(v):
        return {"disencdr_final": _forward(v, c)[0]["target"]}

    def sides(v, tgt):
        fu, fi = v["disencdr_final"] if "disencdr_final" in v else _forward(v, c)[0]["target"]
        zu = jnp.zeros(tgt.shape, fu.dtype)
        return fu[tgt], zu, fi, jnp.zeros(fi.shape[:1]), v["item_pop"], v["disencdr_scored"][tgt]

    return embedding_scorer(sides, prepare=prepare)


def draw_positive(key, index: dict, user: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(item i32[b], ok bool[b]): a uniform training item of each user (`find_pos`); ok is
    False for a user without training items in the domain (or user -1)."""
    u = jnp.maximum(user, 0)
    lo, hi = index["indptr"][u], index["indptr"][u + 1]
    n = (hi - lo).astype(jnp.float32)
    r = lo + jnp.floor(draws.uniform(key, u.shape) * n).astype(jnp.int32)
    last = max(int(index["items"].shape[0]) - 1, 0)
    return index["items"][jnp.clip(r, 0, last)], (user >= 0) & (hi > lo)


def _examples(split, joint) -> dict:
    """Every source then every target training row, each with its user in both domains."""
    s, t = split.source_train, split.target_train
    to_t = np.where(joint["tgt"] >= 0, joint["tgt"], -1)[joint["of_src"]]
    to_s = np.where(joint["src"] >= 0, joint["src"], -1)[joint["of_tgt"]]
    none_s, none_t = np.full(len(t), -1, np.int32), np.full(len(s), -1, np.int32)
    cat = np.concatenate
    return {
        "source_user": cat([s.user, to_s[t.user]]).astype(np.int32),
        "source_item": cat([s.item, none_s]).astype(np.int32),
        "target_user": cat([to_t[s.user], t.user]).astype(np.int32),
        "target_item": cat([none_t, t.item]).astype(np.int32),
    }


def device_arrays(d: dict) -> dict:
    """{k: the array as a device array} of a dict of host arrays."""
    return {k: jnp.asarray(a) for k, a in d.items()}


def graph_inputs(inter: dict) -> tuple[dict, dict]:
    """The variational graph methods' inputs from each domain's training interactions
    ({domain: Interactions}): ({domain: row-normalised edge lists}, {domain: positive index for
    negative sampling}), as device arrays."""
    graph = {
        d: device_arrays(row_normalized_edges(x.user, x.item, x.n_users, x.n_items))
        for d, x in inter.items()
    }
    positives = {
        d: device_arrays(positive_index(x.user, x.item, x.n_users)) for d, x in inter.items()
    }
    return graph, positives


@register("disencdr", traced=DISENCDR_TRACED)
def build_disencdr(cfg, split) -> Built:
    """DisenCDR: domain-shared and domain-specific variational graph encoders with their KL
    regularisers, BCE ranking in both domains (Cao et al., SIGIR 2022; official code)."""
    c = cfg.disencdr
    inter = {"source": split.source_train, "target": split.target_train}
    sizes = {d: (x.n_users, x.n_items) for d, x in inter.items()}
    joint = joint_users(split, rate=c.rate, per_user=c.rate_per_user)
    known = {
        d: {
            "user": jnp.asarray(x.user_counts() > 0, jnp.float32),
            "item": jnp.asarray(x.item_counts() > 0, jnp.float32),
        }
        for d, x in inter.items()
    }
    known["joint"] = jnp.asarray(joint.pop("known"))
    examples = _examples(split, joint)
    steps = math.ceil(len(examples["source_user"]) / cfg.trainer.batch_size)
    warm_steps = int(c.warmup_epochs) * steps
    n_items = {d: x.n_items for d, x in inter.items()}
    tries = int(c.neg_tries)

    def init(key):
        return {PART: disencdr_init(key, sizes=sizes, dim=c.dim, n_layers=int(c.n_layers))}

    def loss(v, batch, key):
        k_fwd, *ks = jax.random.split(key, 5)
        tables, kl = jax.lax.cond(  # the warm-up's program leaves the shared encoders out
            v["step"] >= warm_steps,
            lambda: _forward(v, c, shared_on=1.0, key=k_fwd),
            lambda: _forward(v, c, shared_on=0.0, key=k_fwd),
        )
        rec, aux = 0.0, {}
        for j, d in enumerate(DOMS):
            index = v["disencdr_positives"][d]
            user, item = batch[f"{d}_user"], batch[f"{d}_item"]
            drawn, ok = draw_positive(ks[2 * j], index, user)
            pos = jnp.where(item >= 0, item, drawn)
            u = jnp.maximum(user, 0)
            neg = sample_unseen(ks[2 * j + 1], index, u, n_items=n_items[d], n=1, tries=tries)
            term = bce_terms(*tables[d], u, pos, neg[:, 0], batch["mask"] & ok)
            rec, aux[f"{d}_bce"] = rec + term, term
        aux.update({k: kl[k] for k in ("kl_specific", "kl_share", "kl_cross")})
        return rec + kl["kl"], aux

    stage = selected_stage(cfg, name="disencdr", part=PART, loss=loss, examples=examples)
    tr = split.target_train
    scored = (tr.user_counts() > 0) | (joint["ws"][joint["of_tgt"]] > 0)
    graph, positives = graph_inputs(inter)
    data = {
        "disencdr_graph": graph,
        "disencdr_joint": device_arrays(joint),
        "disencdr_known": known,
        "disencdr_positives": positives,
        "disencdr_scored": jnp.asarray(scored),
        "item_pop": jnp.asarray(tr.item_counts(), jnp.float32),
    }
    return Built(
        init=init,
        stages=(stage,),
        scorer=disencdr_scorer(c),
        data=data,
        hyper=hyper_init(cfg, DISENCDR_TRACED),
    )
