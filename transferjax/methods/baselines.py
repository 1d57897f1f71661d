"""Baselines that every table lists beside the transfer methods.

- `popularity`: ranks target items by training interaction count; as a rating predictor it
  returns the global mean rating.
- `item_mean`: predicts an item's mean training rating, shrunk towards the global mean
  ((sum_r + k * mu) / (n_i + k), k = 5); ranks items by that value.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from transferjax.methods.api import Built, Scorer
from transferjax.methods.registry import register

SHRINK = 5.0


def _item_table_scorer(predict=None) -> Scorer:
    """Scores that depend on the item only: a lookup in params["table"] f32[n_items]."""

    def score_items(params, src, tgt, items):
        return params["table"][items]

    def score_all(params, src, tgt):
        return jnp.broadcast_to(params["table"][None], (tgt.shape[0], params["table"].shape[0]))

    return Scorer(score_items=score_items, score_all=score_all, predict=predict)


@register("popularity")
def build_popularity(cfg, split) -> Built:
    """Item popularity (training count) for ranking; global mean for ratings."""
    tr = split.target_train
    counts = tr.item_counts().astype(np.float32)
    mu = jnp.asarray(tr.rating.mean(), jnp.float32)

    def predict(params, src, tgt, items):
        return jnp.broadcast_to(params["mu"], items.shape)

    return Built(
        init=lambda key: {},
        stages=(),
        scorer=_item_table_scorer(predict),
        data={"table": jnp.asarray(counts), "mu": mu},
    )


def item_means(tr, *, shrink: float = SHRINK) -> np.ndarray:
    """f32[n_items] (sum of ratings + shrink * mu) / (count + shrink)."""
    mu = float(tr.rating.mean())
    sums = np.bincount(tr.item, weights=tr.rating, minlength=tr.n_items)
    counts = np.bincount(tr.item, minlength=tr.n_items)
    return ((sums + shrink * mu) / (counts + shrink)).astype(np.float32)


@register("item_mean")
def build_item_mean(cfg, split) -> Built:
    """Item mean rating shrunk to the global mean."""
    table = item_means(split.target_train)
    return Built(
        init=lambda key: {},
        stages=(),
        scorer=_item_table_scorer(),
        data={"table": jnp.asarray(table)},
    )
