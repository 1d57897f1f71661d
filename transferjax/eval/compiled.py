"""Each metric family as one traceable function over a whole evaluation plan.

`rating_sums`, `sampled_sums` and `full_sums` map a scorer over the chunks of a plan
(`transferjax.eval.plan`) with `jax.lax.map` (a scan) and return, per chunk, the sums of the
per-row metric terms over the chunk's real rows. Wrapped in `jax.jit` with the scorer's params
as an argument they compile once per (scorer, plan shapes); under `jax.vmap` over the params
they evaluate a batch of trials in one program. The host only adds the chunks' sums (float64)
and divides: `finish_rating`, `finish_sampled`, `finish_full`.

With `groups` (`transferjax.eval.groups.Groups`), each family also returns, under "by", the
per-chunk sums within each group of rows ({grouping: {key: f32[n_chunks, G]}}), and full
ranking the evaluated users' top-K lists ("top"), for coverage and novelty.

Each scan step runs the per-chunk kernels of `transferjax.eval.ranking` (same tie rules, same
exclusion, same NaN count), so at most one [chunk, n_items] score matrix (per trial) exists at
a time. The ranks, hits and counts are those of the host-loop functions of `ranking.py`; their
means agree up to float32 summation order (chunk by chunk here, all rows at once there).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.eval import metrics
from transferjax.eval.groups import Groups, group_sums
from transferjax.eval.plan import FullPlan, RatingPlan, SampledPlan
from transferjax.eval.ranking import _sampled_ranks, _topk


def _check_shape(name: str, out: jax.Array, expected: tuple[int, ...]) -> None:
    if out.shape != expected:
        raise ValueError(f"{name} returned shape {out.shape}, expected {expected}")


def _real(n_real: jax.Array, chunk: int) -> jax.Array:
    return jnp.arange(chunk) < n_real  # bool[chunk]: real rows come first


def _by_rows(groups: Groups, terms: dict, real, src, item) -> dict:
    """Group sums of per-row terms: by the row's source user and by its (positive) item."""
    return {
        "source_activity": group_sums(terms, real, groups.user[src], len(groups.user_names)),
        "item_popularity": group_sums(terms, real, groups.item[item], len(groups.item_names)),
    }


def rating_sums(predict: Callable, params, plan: RatingPlan, groups: Groups | None = None) -> dict:
    """Per-chunk sums of absolute and squared rating errors.

    Args:
      predict: `(params, src: i32[c], tgt: i32[c], item: i32[c]) -> f32[c]`.
      params: the scorer's params.
      plan: a `RatingPlan` with chunks of c rows.

    Returns:
      {"abs": f32[n_chunks] sums of |p - r|, "sq": f32[n_chunks] sums of (p - r)^2}.
    """
    chunk = plan.src.shape[1]

    def step(xs):
        src, tgt, item, rating, n_real = xs
        p = predict(params, src, tgt, item)
        _check_shape("predict", p, (chunk,))
        real = _real(n_real, chunk)
        err = jnp.where(real, p.astype(jnp.float32) - rating, 0.0)
        out = {"abs": jnp.sum(jnp.abs(err)), "sq": jnp.sum(err * err)}
        if groups is not None:
            out["by"] = _by_rows(groups, {"abs": jnp.abs(err), "sq": err * err}, real, src, item)
        return out

    return jax.lax.map(step, (plan.src, plan.tgt, plan.item, plan.rating, plan.n_real))


def finish_rating(sums: dict, count: int) -> dict:
    """{"mae", "rmse"}: float32 arrays[...] from `rating_sums` (any leading trial axes)."""
    mean = metrics.means_from_sums(sums, count)
    sq = np.asarray(sums["sq"], np.float64).sum(axis=-1) / count
    return {"mae": mean["abs"], "rmse": np.sqrt(sq).astype(np.float32)}


def sampled_sums(
    score_items: Callable,
    params,
    plan: SampledPlan,
    groups: Groups | None = None,
    *,
    ks: tuple[int, ...],
    pessimistic: bool,
) -> tuple[dict, jax.Array]:
    """Per-chunk sums of the sampled-negative ranking terms (`metrics.rank_metric_sums`).

    Args:
      score_items: `(params, src: i32[c], tgt: i32[c], items: i32[c, m]) -> f32[c, m]`.
      params: the scorer's params.
      plan: a `SampledPlan` with chunks of c rows and m = 1 + n_neg candidates.
      ks: cutoffs K.
      pessimistic: ties count against the positive (see `ranking.py`).

    Returns:
      ({key: f32[n_chunks]}, i32[] NaN scores in real rows).
    """
    expected = plan.items.shape[1:]

    def step(xs):
        src, tgt, items, n_real = xs
        s = score_items(params, src, tgt, items)
        _check_shape("score_items", s, expected)
        rank, n_nan = _sampled_ranks(s, n_real, pessimistic=pessimistic)
        real = _real(n_real, expected[0])
        out = metrics.rank_metric_sums(rank, real, ks=ks)
        if groups is not None:
            terms = metrics.rank_metric_terms(rank, ks=ks)
            out["by"] = _by_rows(groups, terms, real, src, items[:, 0])
        return out, n_nan

    sums, nans = jax.lax.map(step, (plan.src, plan.tgt, plan.items, plan.n_real))
    return sums, jnp.sum(nans)


def finish_sampled(sums: dict, count: int, *, ks: tuple[int, ...]) -> dict:
    """The keys of `metrics.rank_metrics_from_ranks` (float32 arrays[...]) and
    "n_interactions" from `sampled_sums` over `count` held-out interactions."""
    return {**metrics.rank_metrics_from_sums(sums, count, ks=ks), "n_interactions": count}


def full_sums(
    score_all: Callable,
    params,
    plan: FullPlan,
    groups: Groups | None = None,
    *,
    ks: tuple[int, ...],
    top_k: Callable | None = None,
) -> tuple[dict, jax.Array]:
    """Per-chunk sums of the top-K metrics over all target items (`metrics.topk_metric_sums`).

    Per scan step: scores f32[chunk, n_items], the user's excluded items set to -inf,
    `jax.lax.top_k` (lower item index first among ties) and hits bool[chunk, max(ks)].

    Args:
      score_all: `(params, src: i32[c], tgt: i32[c]) -> f32[c, n_items]`.
      params: the scorer's params.
      plan: a `FullPlan` with chunks of c users.
      ks: cutoffs k, each <= n_items (checked by the caller).
      top_k: `(scores, k) -> (values, indices)` in place of `jax.lax.top_k`, or None; with
        item tables split over devices, `transferjax.train.mesh.Layout.top_k` (per-shard top
        k, then merged: the same items).

    Returns:
      ({key: f32[n_chunks]}, i32[] NaN scores in real rows).
    """
    k_max = max(ks)
    expected = (plan.src.shape[1], plan.n_items)

    def step(xs):
        src, tgt, n_real, ex_r, ex_i, p_r, p_i, n_rel = xs
        s = score_all(params, src, tgt)
        _check_shape("score_all", s, expected)
        hits, top, is_pos, n_nan = _topk(s, n_real, ex_r, ex_i, p_r, p_i, k=k_max, top_k=top_k)
        real = _real(n_real, expected[0])
        out = metrics.topk_metric_sums(hits, n_rel, real, ks=ks)
        if groups is not None:
            out["by"] = _full_by(groups, hits, top, is_pos, n_rel, real, src, ks)
            out["top"] = jnp.where(real[:, None], top, -1)
        return out, n_nan

    xs = (
        plan.src,
        plan.tgt,
        plan.n_real,
        plan.ex_row,
        plan.ex_item,
        plan.pos_row,
        plan.pos_item,
        plan.n_rel,
    )
    sums, nans = jax.lax.map(step, xs)
    return sums, jnp.sum(nans)


def _full_by(groups: Groups, hits, top, is_pos, n_rel, real, src, ks) -> dict:
    """Full-ranking group sums: users by source activity; for each item group, the hits on
    the group's items against the user's held-out items of the group (users with none of them
    do not count)."""
    per_user = metrics._topk_metrics(hits, n_rel, ks)
    n_user_groups, n_item_groups = len(groups.user_names), len(groups.item_names)
    by = {"source_activity": group_sums(per_user, real, groups.user[src], n_user_groups)}
    onehot = jax.nn.one_hot(groups.item, n_item_groups, dtype=jnp.float32)  # [n_items, G]
    rel = jnp.round(is_pos.astype(jnp.float32) @ onehot).astype(jnp.int32)  # [c, G]
    in_group = groups.item[jnp.maximum(top, 0)]  # [c, K]
    sums = []
    for g in range(n_item_groups):
        terms = metrics._topk_metrics(hits & (in_group == g), rel[:, g], ks)
        ok = real & (rel[:, g] > 0)
        sums.append(group_sums(terms, ok, jnp.zeros_like(src), 1))
    by["item_popularity"] = jax.tree.map(lambda *x: jnp.concatenate(x), *sums)
    return by


def finish_full(sums: dict, count: int) -> dict:
    """The keys of `metrics.topk_metrics` (float32 arrays[...]) and "n_users" from
    `full_sums` over `count` evaluated users."""
    return {**metrics.means_from_sums(sums, count), "n_users": count}


def nan_error(n_nan) -> ValueError | None:
    """The error `ranking` raises for `n_nan` NaN scores (i32[] or, batched, i32[trials]: the
    message then names the trials), or None when there is none."""
    counts = np.asarray(n_nan)
    total = int(counts.sum())
    if not total:
        return None
    msg = f"the scoring function returned {total} NaN scores"
    if counts.ndim:
        msg += " (" + ", ".join(f"trial {i}: {int(c)}" for i, c in enumerate(counts) if c) + ")"
    return ValueError(msg)
