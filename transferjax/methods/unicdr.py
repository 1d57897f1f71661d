"""UniCDR (Cao et al., "Towards Universal Cross-Domain Recommendation", WSDM 2023), as its
official code trains its dual-domain scenario with overlapping users (`--task
dual-user-intra`): `unicdr`.

    transferjax run experiments/disencdr_sport_phone.py --set method=unicdr \
        --set trainer.batch_size=512 --set trainer.lr=1e-3     # the official batch and rate

Each user has a domain-specific representation per domain (its own embedding aggregated with
a masked sample of its items in that domain) and a domain-shared one (a universal embedding
aggregated with a masked sample of its items in the other domain); their sum scores the
domain's items, and a bilinear critic per domain tells a user's two halves from shuffled
pairs. The formulas and what matches the official code (github.com/cjx96/UniCDR, commit
b216bc01cda46fcc1adf9e3dd988a0dce97a13c0) are in `transferjax.models.unicdr`:

    L = sum_X lambda_loss [BCE(y+, 1) + BCE(y-, 0)] + (1 - lambda_loss) critic^X
        (+ weight_decay / 2 ||theta||^2)

Training (one stage, both domains): each example row holds one source training row and one
target training row (the shorter domain's rows repeated in a fixed shuffled order up to the
longer's count), so a step takes `trainer.batch_size` rows of each domain, as the official
loop takes one batch of `batch_size // 2` rows from each domain's loader and sums the two
losses. Each row draws its two masked contexts (`sample_context`), `num_negative` negatives
uniform over the domain's items with training rows (`item_set`), re-drawn up to `neg_tries`
times while a training item of the user, and the critic's rotation.

Also matches the official code: defaults dim 128 (`latent_dim`), aggregator mean, mask_rate
0.1, maxlen 10, 10 negatives, dropout 0.3, lambda_a 0.5, lambda_loss 0.4; Adam with torch's
coupled weight decay 1e-5 (the gradient of weight_decay / 2 ||theta||^2 over every
parameter, all of which get gradients there), added to the loss here; evaluation contexts of
up to `eval_len` = 50 items per domain (`test_max_len`), without masking; a row's positive
stays in its own-domain context (`drop_positive` off: the official removal is a no-op).

Differs (besides those of `transferjax.models.unicdr`):
- users are linked by the data's overlap pairs through a joint user space (one shared row
  per pair), not by equal ids; a user with rows in one domain only gets an empty other-domain
  context (as the official `u not in all_domain_list[id]`).
- epochs: ours pass once over the longer domain's rows; the official "epoch" is 500 steps
  (`iteration_num`, train_rec.py line 220) whatever the data size (its budget, 100 x 500
  steps of 512 rows per domain, is about 500 of our epochs at batch 512 on Sport <-> Phone's
  50k rows per domain); after a loader's first pass each step takes the first batch of a
  fresh shuffled loader (lines 248-252: the exhausted iterator is never replaced).
- `--static_sample` (off by default, on in the official README's example runs) is not
  implemented: its cache is filled in call order but read by row index (utils/data.py lines
  161-162, 228), so it freezes each drawn (row, contexts, negatives) tuple and, from the
  second pass on, serves rows other rows' draws. Selection:
  ours evaluates on valid every epoch and keeps the best (the protocol's candidates); the
  official script evaluates every 5 epochs on the test file (`dual-user-intra` uses test.txt
  as valid) with 999 negatives drawn by Python's `random`. Its lr decay (x0.98 after epoch 10
  when most domains did not improve) is not implemented; `l2_reg` and `lambda` (EASE) are
  unused by the official code for these aggregators.
- a negative whose `neg_tries` draws are all training items of the user keeps the first draw
  (the official loop draws until it finds one).
- evaluation contexts are drawn once per user with a fixed key (the official code redraws
  its sample of more than 50 items at each evaluation); scores are deterministic. As the
  official evaluation, the shared half reads the user's items of both domains there (only
  the other domain's in training).

Cold users (`transferjax.methods.api`): a target user without target training rows is scored
from its shared half alone (its universal embedding, trained by its source rows, aggregated
with its source items), its specific half held at zero (its target embedding is untrained);
one without source rows either gets training popularity. `Built.represent` gives the shift
diagnostics each user's shared half from each side's items.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.config import COUNT, NONNEG, PROBABILITY, Range, section, setting
from transferjax.methods.api import (
    Built,
    Represent,
    Scorer,
    embedding_scorer,
    hyper_init,
    selected_stage,
)
from transferjax.methods.disencdr import device_arrays, joint_users
from transferjax.methods.registry import register
from transferjax.models.pointwise import first_unseen, positive_index
from transferjax.models.unicdr import (
    DOMS,
    OTHER,
    draw_shift,
    sample_context,
    unicdr_init,
    unicdr_loss,
    user_sides,
)


@section("unicdr")
@dataclasses.dataclass(frozen=True, kw_only=True)
class UniCDRConfig:
    """UniCDR (module docstring); defaults are the official `train_rec.py`'s.

    dim: embedding size (`latent_dim`); aggregator: "mean" or "user_attention"; mask_rate:
    share of a user's items left out of its training contexts; maxlen: context items per
    domain in training; eval_len: in evaluation (`test_max_len`); num_negative: negatives per
    training row; dropout: on the aggregated users, the item rows and the attention weights;
    lambda_a: weight of the id embedding in the aggregators; lambda_loss: weight of the
    ranking BCE (1 - lambda_loss: the critic's); weight_decay: Adam's coupled L2; neg_tries:
    draws per negative; drop_positive: leave a row's positive out of its own-domain context
    (what the official code means to do but never does, `transferjax.models.unicdr`).
    dropout, lambda_a, lambda_loss and weight_decay are traced.
    """

    dim: int = setting(128, allowed=COUNT)
    aggregator: Literal["mean", "user_attention"] = "mean"
    mask_rate: float = setting(0.1, allowed=Range(lo=0, hi=1, hi_open=True))
    maxlen: int = setting(10, allowed=COUNT)
    eval_len: int = setting(50, allowed=COUNT)
    num_negative: int = setting(10, allowed=COUNT)
    dropout: float = setting(0.3, allowed=Range(lo=0, hi=1, hi_open=True))
    lambda_a: float = setting(0.5, allowed=PROBABILITY)
    lambda_loss: float = setting(0.4, allowed=PROBABILITY)
    weight_decay: float = setting(1e-5, allowed=NONNEG)
    neg_tries: int = setting(10, allowed=COUNT)
    drop_positive: bool = False


UNICDR_TRACED = ("unicdr.dropout", "unicdr.lambda_a", "unicdr.lambda_loss", "unicdr.weight_decay")
PART = "unicdr"
EVAL_KEY = 0  # the evaluation contexts' draw


def context_sizes(counts: np.ndarray, *, maxlen: int, mask_rate: float) -> np.ndarray:
    """i32[n_users]: min(maxlen, int(n (1 - mask_rate))) per user with n training items
    (Python's float arithmetic, as the official `random.sample` size)."""
    return np.array([min(maxlen, int(n * (1 - mask_rate))) for n in counts.tolist()], np.int32)


def pair_rows(n_s: int, n_t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(source rows, target rows) of max(n_s, n_t) examples: the longer domain's rows once,
    the shorter's in shuffled passes."""
    rng = np.random.default_rng(seed)
    n = max(n_s, n_t)

    def fill(m):
        if m == n:
            return np.arange(n)
        reps = -(-n // m)
        return np.concatenate([rng.permutation(m) for _ in range(reps)])[:n]

    return fill(n_s), fill(n_t)


def sample_negatives(key, index, pool, user, *, n: int, tries: int) -> jax.Array:
    """i32[b, n] items of `pool` (uniform), each re-drawn up to `tries` times while a positive
    of its row's user (the first draw when all are)."""
    draws = pool[jax.random.randint(key, (tries, *user.shape, n), 0, pool.shape[0])]
    return first_unseen(index, user[:, None], draws)


def _eval_contexts(v, d: str, user, c):
    """Domain d's users' evaluation contexts (up to eval_len items of each domain, drawn once
    per user with a fixed key): ((items, mask) of d, (items, mask) of the other domain, (items,
    mask) of d again, an independent draw: the shared aggregator's own-domain block)."""
    base = jax.random.key(EVAL_KEY)
    keys = jax.vmap(lambda u: jax.random.split(jax.random.fold_in(base, u), 3))(user)
    width = int(c.eval_len)
    partner = v["unicdr_partner"][d][jnp.maximum(user, 0)]
    partner = jnp.where(user >= 0, partner, -1)
    big = jnp.full(user.shape, width, jnp.int32)
    own = sample_context(keys[:, 0], v["unicdr_pos"][d], user, big, width=width)
    other = sample_context(keys[:, 1], v["unicdr_pos"][OTHER[d]], partner, big, width=width)
    again = sample_context(keys[:, 2], v["unicdr_pos"][d], user, big, width=width)
    return own, other, again


def _eval_sides(v, d: str, user, c):
    """(specific, shared) halves of domain d's users in evaluation (no dropout, no masking);
    the specific half is zero for a user without training rows in d."""
    own, other, again = _eval_contexts(v, d, user, c)
    h = v["hyper"]
    u = jnp.maximum(user, 0)
    rows = {"user": u, "joint": v["unicdr_joint"][d][u], "ctx": own, "glob": other}
    rows["glob_own"] = again
    width = int(c.eval_len)
    spec, share = user_sides(
        v[PART], d, rows, kind=c.aggregator, lambda_a=h["unicdr.lambda_a"],
        widths=(width, 2 * width),
    )  # fmt: skip
    return jnp.where(v["unicdr_has_rows"][d][u][:, None], spec, 0.0), share


def unicdr_scorer(c) -> Scorer:
    """<specific + shared, item> for the target users the model represents, training
    popularity for the others."""

    def sides(v, tgt):
        spec, share = _eval_sides(v, "target", tgt, c)
        fi = v[PART]["item"]["target"]
        zu = jnp.zeros(tgt.shape, fi.dtype)
        ok = v["unicdr_scored"][jnp.maximum(tgt, 0)] & (tgt >= 0)
        return spec + share, zu, fi, jnp.zeros(fi.shape[:1]), v["item_pop"], ok

    return embedding_scorer(sides)


@register("unicdr", traced=UNICDR_TRACED)
def build_unicdr(cfg, split) -> Built:
    """UniCDR: domain-specific and domain-shared user representations aggregated from masked
    interaction samples, a bilinear critic per domain (Cao et al., WSDM 2023; official code,
    dual-domain overlapping users)."""
    c = cfg.unicdr
    inter = {"source": split.source_train, "target": split.target_train}
    sizes = {d: (x.n_users, x.n_items) for d, x in inter.items()}
    joint = joint_users(split, rate=0.5, per_user=False)
    n_joint = len(joint["src"])
    of = {"source": joint["of_src"], "target": joint["of_tgt"]}
    side = {"source": joint["src"], "target": joint["tgt"]}
    partner = {d: side[OTHER[d]][of[d]].astype(np.int32) for d in DOMS}
    counts = {d: x.user_counts() for d, x in inter.items()}
    index = {d: positive_index(x.user, x.item, x.n_users) for d, x in inter.items()}
    distinct = {d: np.diff(index[d]["indptr"]) for d in DOMS}
    maxlen, n_neg, tries = int(c.maxlen), int(c.num_negative), int(c.neg_tries)
    k_train = {
        d: context_sizes(distinct[d], maxlen=maxlen, mask_rate=float(c.mask_rate)) for d in DOMS
    }
    s, t = inter["source"], inter["target"]
    rs, rt = pair_rows(len(s), len(t))
    examples = {
        "source_user": s.user[rs].astype(np.int32),
        "source_item": s.item[rs].astype(np.int32),
        "target_user": t.user[rt].astype(np.int32),
        "target_item": t.item[rt].astype(np.int32),
    }

    def init(key):
        p = unicdr_init(key, sizes=sizes, n_joint=n_joint, dim=int(c.dim), aggregator=c.aggregator)
        return {PART: p}

    def rows_of(v, d, user, item, mask, key):
        """One domain's training rows: the masked contexts, negatives and the critic's shift."""
        k_ctx, k_glob, k_neg, k_shift = jax.random.split(key, 4)
        b = user.shape[0]
        pos_d, pos_o = v["unicdr_pos"][d], v["unicdr_pos"][OTHER[d]]
        other = v["unicdr_partner"][d][user]
        ctx = sample_context(
            jax.random.split(k_ctx, b), pos_d, user, v["unicdr_k"][d][user], width=maxlen,
            drop=item if c.drop_positive else None,
        )  # fmt: skip
        glob = sample_context(
            jax.random.split(k_glob, b), pos_o, other,
            v["unicdr_k"][OTHER[d]][jnp.maximum(other, 0)], width=maxlen,
        )  # fmt: skip
        neg = sample_negatives(k_neg, pos_d, v["unicdr_pool"][d], user, n=n_neg, tries=tries)
        return {
            "user": user,
            "joint": v["unicdr_joint"][d][user],
            "ctx": ctx,
            "glob": glob,
            "pos": item,
            "neg": neg,
            "mask": mask,
            "shift": draw_shift(k_shift, mask),
        }

    def loss(v, batch, key):
        h = v["hyper"]
        k_drop, *ks = jax.random.split(key, 3)
        rows = {}
        for j, d in enumerate(DOMS):
            m = batch["mask"]
            u = jnp.where(m, batch[f"{d}_user"], 0)
            i = jnp.where(m, batch[f"{d}_item"], 0)
            rows[d] = rows_of(v, d, u, i, m, ks[j])
        total, aux = unicdr_loss(
            v[PART], rows, kind=c.aggregator, lambda_a=h["unicdr.lambda_a"],
            lambda_loss=h["unicdr.lambda_loss"], maxlen=maxlen,
            drop_rate=h["unicdr.dropout"], key=k_drop,
        )  # fmt: skip
        sq = sum(jnp.sum(x**2) for x in jax.tree.leaves(v[PART]))
        aux["l2"] = 0.5 * h["unicdr.weight_decay"] * sq
        return total + aux["l2"], aux

    stage = selected_stage(cfg, name="unicdr", part=PART, loss=loss, examples=examples)
    has_rows = {d: counts[d] > 0 for d in DOMS}
    partner_rows = partner["target"] >= 0
    partner_rows[partner_rows] = has_rows["source"][partner["target"][partner_rows]]
    data = {
        "unicdr_pos": {d: device_arrays(index[d]) for d in DOMS},
        "unicdr_pool": {
            d: jnp.asarray(np.flatnonzero(inter[d].item_counts() > 0).astype(np.int32))
            for d in DOMS
        },
        "unicdr_k": {d: jnp.asarray(k_train[d]) for d in DOMS},
        "unicdr_joint": {d: jnp.asarray(of[d].astype(np.int32)) for d in DOMS},
        "unicdr_partner": {d: jnp.asarray(partner[d]) for d in DOMS},
        "unicdr_has_rows": {d: jnp.asarray(has_rows[d]) for d in DOMS},
        "unicdr_scored": jnp.asarray(has_rows["target"] | partner_rows),
        "item_pop": jnp.asarray(t.item_counts(), jnp.float32),
    }
    represent = Represent(
        source=lambda v, src: _eval_sides(v, "source", src, c)[1],
        target=lambda v, tgt: _eval_sides(v, "target", tgt, c)[1],
        space=f"UniCDR's domain-shared user halves ({int(c.dim)} dims: the universal "
        "embedding aggregated with the other domain's items)",
    )
    return Built(
        init=init,
        stages=(stage,),
        scorer=unicdr_scorer(c),
        data=data,
        hyper=hyper_init(cfg, UNICDR_TRACED),
        represent=represent,
    )
