"""Chunked evaluation of a scoring model on held-out target interactions.

Three protocols, all in fixed-shape chunks (the last chunk is padded by repeating a real row and
its results dropped; the layouts are built in `transferjax.eval.plan`) so that a jitted model
function compiles once. These functions walk the chunks on the host, one call per chunk: the
reference path. `transferjax.eval.compiled` computes the same metrics as one compiled scan
over a plan (what `transferjax.train.evaluate` runs after every epoch).

* `full_ranking` / `full_ranking_ranks`: score every target item for each evaluated user,
  `chunk_size` users at a time; at most one [chunk, n_items] score matrix (and same-shaped
  masks) exists at a time, never a users x items matrix.
* `sampled_ranking`: rank each held-out item against its protocol-fixed sampled negatives.
* `rating_eval`: MAE / RMSE of predicted ratings.

Ties. `full_ranking` ranks with `jax.lax.top_k`, which puts the lower item index first among
equal scores; items scored -inf (excluded ones included) never count as hits. The per-positive
ranks (`full_ranking_ranks`, `sampled_ranking`) take `ties=`: "pessimistic" (default) counts
competitors with score >= the positive's, so a constant scorer ranks every positive last;
"optimistic" counts only those with score > the positive's. CDRIB's released code computes
`(-pred).argsort().argsort()[0]` with the positive in column 0: a stable sort gives the
"optimistic" count, and torch's default (unstable) sort leaves ties to chance. With continuous
model scores ties are rare and both rules agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.data.types import HeldOut, Interactions
from transferjax.eval import metrics
from transferjax.eval.plan import check_heldout, row_chunks, user_chunks


def _scores(score_fn, src, tgt, n_items: int) -> jax.Array:
    s = score_fn(jnp.asarray(src), jnp.asarray(tgt))
    if s.shape != (len(src), n_items):
        raise ValueError(f"score_fn returned shape {s.shape}, expected {(len(src), n_items)}")
    return s


def _raise_nan(counts: list) -> None:
    bad = int(sum(int(c) for c in counts))
    if bad:
        raise ValueError(f"the scoring function returned {bad} NaN scores")


@jax.jit(static_argnames=("k", "top_k"))
def _topk(scores, n_real, ex_row, ex_item, pos_row, pos_item, *, k, top_k=None):
    """(hits bool[c, k], top items i32[c, k] (-1 past a list's end), is_pos bool[c, n],
    NaN scores in real rows i32[]). `top_k`: `(x, k) -> (values, indices)` in place of
    `jax.lax.top_k` (the same result computed per item shard: `Layout.top_k`)."""
    c, n = scores.shape
    scores = scores.astype(jnp.float32)
    n_nan = jnp.sum(jnp.isnan(scores) & (jnp.arange(c) < n_real)[:, None])
    masked = scores.at[ex_row, ex_item].set(-jnp.inf, mode="drop")
    is_pos = jnp.zeros((c, n), bool).at[pos_row, pos_item].set(True, mode="drop")
    vals, idx = (top_k or jax.lax.top_k)(masked, k)
    listed = vals > -jnp.inf
    hits = jnp.take_along_axis(is_pos, idx, axis=1) & listed
    return hits, jnp.where(listed, idx, -1), is_pos, n_nan


def _topk_hits(scores, n_real, ex_row, ex_item, pos_row, pos_item, *, k):
    hits, _, _, n_nan = _topk(scores, n_real, ex_row, ex_item, pos_row, pos_item, k=k)
    return hits, n_nan


def full_ranking(
    score_fn: Callable,
    heldout: HeldOut,
    *,
    exclude: Interactions | None,
    n_items: int,
    ks: Sequence[int] = (5, 10, 20),
    chunk_size: int = 1024,
) -> dict:
    """Top-K set metrics over all target items, per evaluated user, averaged over users.

    A user is evaluated when its `heldout.pairs` row has at least one held-out item. Its
    excluded items (`exclude.item` where `exclude.user` is its target user, less its held-out
    items) are scored -inf,
    the top max(ks) items taken with `jax.lax.top_k` (ties: lower item index first), and the
    hits against its held-out items fed to `metrics.topk_metrics` (formulas there).

    Args:
      score_fn: (source_user: i32[c], target_user: i32[c]) -> f32[c, n_items]; source_user
        is -1 for users without a source profile. Called with c = chunk_size every time.
      heldout: held-out target interactions.
      exclude: the target interactions (by target user) whose items are not ranked for
        their user, or None: `heldout.exclude` (training rows; for a test set, training and
        valid rows), or the split's `target_train`.
      n_items: number of target items.
      ks: cutoffs k, each <= n_items.
      chunk_size: users scored per call.

    Returns:
      dict of floats "precision@k", "recall@k", "f1@k", "hr@k", "ndcg@k", "mrr" (first hit
      within max(ks)) and "n_users" (int).
    """
    check_heldout(heldout, chunk_size)
    ks = metrics._check_ks(ks, n_items)
    hits, n_rel, nans = [], [], []
    for src, tgt, n_real, (ex_r, ex_i), (p_r, p_i), _ in user_chunks(
        heldout, exclude, n_items, chunk_size
    ):
        s = _scores(score_fn, src, tgt, n_items)
        h, n_nan = _topk_hits(s, n_real, ex_r, ex_i, p_r, p_i, k=max(ks))
        hits.append(h[:n_real])
        nans.append(n_nan)
        uniq = np.unique(p_r[p_i < n_items].astype(np.int64) * n_items + p_i[p_i < n_items])
        n_rel.append(np.bincount(uniq // n_items, minlength=chunk_size)[:n_real])
    _raise_nan(nans)
    out = metrics.topk_metrics(jnp.concatenate(hits), np.concatenate(n_rel), ks=ks)
    out["n_users"] = int(sum(len(r) for r in n_rel))
    return out


@jax.jit(static_argnames="pessimistic")
def _filtered_ranks(scores, n_real, ex_row, ex_item, pos_row, pos_item, *, pessimistic):
    c, n = scores.shape
    scores = scores.astype(jnp.float32)
    n_nan = jnp.sum(jnp.isnan(scores) & (jnp.arange(c) < n_real)[:, None])
    row = jnp.clip(pos_row, 0, c - 1)
    v = scores[row, jnp.clip(pos_item, 0, n - 1)]  # f32[P] positive scores
    compete = jnp.ones((c, n), bool).at[ex_row, ex_item].set(False, mode="drop")
    compete = compete.at[pos_row, pos_item].set(False, mode="drop")

    def count(rv):  # competitors of one positive that beat (or tie) it
        r, val = rv
        beats = (scores[r] >= val) if pessimistic else (scores[r] > val)
        return jnp.sum(compete[r] & beats, dtype=jnp.int32)

    # P x n comparisons, in blocks of 256 positives so no [P, n] array is ever built (on a
    # CPU, faster than sorting each row and binary-searching the positives)
    return jax.lax.map(count, (row, v), batch_size=min(256, row.shape[0])), n_nan


def full_ranking_ranks(
    score_fn: Callable,
    heldout: HeldOut,
    *,
    exclude: Interactions | None,
    n_items: int,
    chunk_size: int = 1024,
    ties: str = "pessimistic",
) -> np.ndarray:
    """Filtered 0-based rank of every held-out item among all target items.

    For held-out item p of user u, the competitors are all items except u's excluded items
    (from `exclude`) and u's held-out items (p's fellow positives do not push it down: the
    "filtered" rank). rank(p) = #{competitors j: s_j >= s_p} ("pessimistic") or
    #{j: s_j > s_p} ("optimistic"). Feed the result to `metrics.rank_metrics_from_ranks`
    for HR/NDCG/MRR per positive, as in CDRIB's full-ranking table.

    Args:
      score_fn, heldout, exclude, n_items, chunk_size: as in `full_ranking`.
      ties: "pessimistic" or "optimistic" (see the module docstring).

    Returns:
      int32[len(heldout)] ranks aligned with `heldout.item`.
    """
    check_heldout(heldout, chunk_size, ties)
    ranks = np.zeros(len(heldout), np.int32)
    parts, nans = [], []
    for src, tgt, n_real, (ex_r, ex_i), (p_r, p_i), entries in user_chunks(
        heldout, exclude, n_items, chunk_size
    ):
        s = _scores(score_fn, src, tgt, n_items)
        r, n_nan = _filtered_ranks(
            s, n_real, ex_r, ex_i, p_r, p_i, pessimistic=ties == "pessimistic"
        )
        parts.append((entries, r))
        nans.append(n_nan)
    _raise_nan(nans)
    for entries, r in parts:
        ranks[entries] = np.asarray(r)[: len(entries)]
    return ranks


@jax.jit(static_argnames="pessimistic")
def _sampled_ranks(scores, n_real, *, pessimistic):
    scores = scores.astype(jnp.float32)
    n_nan = jnp.sum(jnp.isnan(scores) & (jnp.arange(scores.shape[0]) < n_real)[:, None])
    pos, neg = scores[:, :1], scores[:, 1:]
    beats = (neg >= pos) if pessimistic else (neg > pos)
    return jnp.sum(beats, axis=1, dtype=jnp.int32), n_nan


def sampled_ranking(
    score_items_fn: Callable,
    heldout: HeldOut,
    *,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 4096,
    ties: str = "pessimistic",
) -> dict:
    """HR/NDCG/MRR/precision/recall/F1 of each held-out item against its sampled negatives.

    rank = #{negatives with score >= the positive's} ("pessimistic") or #{score > positive}
    ("optimistic"), then `metrics.rank_metrics_from_ranks` (formulas there), averaged over
    held-out interactions.

    Args:
      score_items_fn: (source_user: i32[c], target_user: i32[c], items: i32[c, 1 + n_neg])
        -> f32[c, 1 + n_neg]; column 0 of `items` is the positive. c = chunk_size always.
      heldout: held-out interactions with `negatives` int32[n, n_neg].
      ks: cutoffs K.
      chunk_size: interactions per call.
      ties: "pessimistic" or "optimistic".

    Returns:
      dict of floats (keys of `rank_metrics_from_ranks`) and "n_interactions" (int).
    """
    check_heldout(heldout, chunk_size, ties)
    if heldout.negatives is None:
        raise ValueError("HeldOut.negatives is None: this split has no sampled negatives")
    if heldout.negatives.ndim != 2 or len(heldout.negatives) != len(heldout):
        raise ValueError(
            f"HeldOut.negatives must be int32[{len(heldout)}, n_neg], "
            f"got shape {heldout.negatives.shape}"
        )
    items = np.concatenate([heldout.item[:, None], heldout.negatives], axis=1)
    src, tgt = heldout.source_user, heldout.target_user
    ranks, nans = [], []
    for idx, n_real in row_chunks(len(heldout), chunk_size):
        s = score_items_fn(jnp.asarray(src[idx]), jnp.asarray(tgt[idx]), jnp.asarray(items[idx]))
        if s.shape != (chunk_size, items.shape[1]):
            raise ValueError(
                f"score_items_fn returned shape {s.shape}, expected {(chunk_size, items.shape[1])}"
            )
        r, n_nan = _sampled_ranks(s, n_real, pessimistic=ties == "pessimistic")
        ranks.append(r[:n_real])
        nans.append(n_nan)
    _raise_nan(nans)
    out = metrics.rank_metrics_from_ranks(jnp.concatenate(ranks), ks=ks)
    out["n_interactions"] = len(heldout)
    return out


def rating_eval(predict_fn: Callable, heldout: HeldOut, *, chunk_size: int = 8192) -> dict:
    """MAE and RMSE of `predict_fn` on the held-out ratings (`metrics.rating_metrics`).

    Args:
      predict_fn: (source_user: i32[c], target_user: i32[c], item: i32[c]) -> f32[c];
        c = chunk_size always.
      heldout: held-out interactions with ratings.
      chunk_size: interactions per call.

    Returns:
      {"mae": float, "rmse": float}.
    """
    check_heldout(heldout, chunk_size)
    src, tgt = heldout.source_user, heldout.target_user
    preds = []
    for idx, n_real in row_chunks(len(heldout), chunk_size):
        p = predict_fn(jnp.asarray(src[idx]), jnp.asarray(tgt[idx]), jnp.asarray(heldout.item[idx]))
        if p.shape != (chunk_size,):
            raise ValueError(f"predict_fn returned shape {p.shape}, expected {(chunk_size,)}")
        preds.append(p[:n_real])
    return metrics.rating_metrics(jnp.concatenate(preds), heldout.rating)
