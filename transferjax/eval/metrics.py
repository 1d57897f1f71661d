"""Rating and ranking metrics: the math only, in jax.

Every function takes jax or numpy arrays and returns python floats (means over rows or users),
except `topk_metrics_per_user`, which returns per-user jax arrays, and the sum form at the end
(sums per chunk inside a compiled program, means on the host). Nothing here knows about
models or data sets; `transferjax.eval.ranking` produces the ranks and hit matrices.

Key names: "mae", "rmse"; "hr@K", "ndcg@K", "precision@K", "recall@K", "f1@K", "mrr".
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

_F32 = jnp.float32


def _check_ks(ks: Sequence[int], k_max: int | None = None) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    if any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive, got {ks}")
    if k_max is not None and max(ks) > k_max:
        raise ValueError(f"ks={ks} exceeds the {k_max} ranked positions available")
    return ks


def rating_metrics(pred, rating, *, mask=None) -> dict:
    """Mean absolute and root mean squared error of rating predictions.

    MAE = sum_i m_i |p_i - r_i| / sum_i m_i,   RMSE = sqrt(sum_i m_i (p_i - r_i)^2 / sum_i m_i),
    with m_i = 1 when `mask` is None.

    Args:
      pred: f32[n] predicted ratings.
      rating: f32[n] true ratings.
      mask: optional bool[n]; only rows where it is True count.

    Returns:
      {"mae": float, "rmse": float}.

    Raises:
      ValueError: shapes differ, or no row counts.
    """
    pred = jnp.asarray(pred, _F32).reshape(-1)
    rating = jnp.asarray(rating, _F32).reshape(-1)
    if pred.shape != rating.shape:
        raise ValueError(f"pred has shape {pred.shape}, rating has {rating.shape}")
    m = jnp.ones_like(pred) if mask is None else jnp.asarray(mask, bool).reshape(-1).astype(_F32)
    if m.shape != pred.shape:
        raise ValueError(f"mask has shape {m.shape}, pred has {pred.shape}")
    count = float(jnp.sum(m))
    if count == 0:
        raise ValueError("rating_metrics: no rows to average (empty input or all-False mask)")
    err = jnp.where(m > 0, pred - rating, 0.0)
    return {
        "mae": float(jnp.sum(jnp.abs(err)) / count),
        "rmse": float(jnp.sqrt(jnp.sum(err * err) / count)),
    }


def rank_metrics_from_ranks(rank, *, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Metrics for one positive per row from its 0-based rank among the row's candidates.

    With r the rank (0 = ranked first; the tie rule is the caller's, see `ranking.py`), for
    each K in `ks`, averaged over rows:
      HR@K        = 1[r < K]
      NDCG@K      = 1[r < K] / log2(r + 2)          (one relevant item, so IDCG = 1)
      precision@K = HR@K / K
      recall@K    = HR@K                            (one relevant item)
      F1@K        = 2 P R / (P + R) = 2 HR@K / (K + 1)
    and MRR = 1 / (r + 1) (not truncated). This is the HR/NDCG/MRR of CDRIB (Cao et al.,
    "Cross-Domain Recommendation to Cold-Start Users via Variational Information Bottleneck",
    ICDE 2022) and its released evaluation code.

    Args:
      rank: i32[n] 0-based rank of each row's positive.
      ks: cutoffs K.

    Returns:
      dict of python floats: "mrr" and "hr@K", "ndcg@K", "precision@K", "recall@K", "f1@K".
    """
    ks = _check_ks(ks)
    rank = jnp.asarray(rank).reshape(-1)
    if rank.shape[0] == 0:
        raise ValueError("rank_metrics_from_ranks: no ranks to average")
    vals = _rank_metrics(rank.astype(jnp.int32), ks)
    return {k: float(v) for k, v in vals.items()}


@jax.jit(static_argnames="ks")
def _rank_metrics(rank: jax.Array, ks: tuple[int, ...]) -> dict:
    r = rank.astype(_F32)
    out = {"mrr": jnp.mean(1.0 / (r + 1.0))}
    gain = 1.0 / jnp.log2(r + 2.0)
    for k in ks:
        hit = (rank < k).astype(_F32)
        out[f"hr@{k}"] = jnp.mean(hit)
        out[f"ndcg@{k}"] = jnp.mean(hit * gain)
        out[f"precision@{k}"] = jnp.mean(hit) / k
        out[f"recall@{k}"] = jnp.mean(hit)
        out[f"f1@{k}"] = 2.0 * jnp.mean(hit) / (k + 1)
    return out


def topk_metrics_per_user(hits, n_rel, *, ks: Sequence[int] = (5, 10, 20)) -> dict:
    """Top-K set metrics of each user, for users with a set of relevant items.

    With h_i in {0, 1} whether the i-th recommended item (i = 1..K, best first) is relevant,
    R the user's number of relevant items, and H@k = sum_{i<=k} h_i:
      precision@k = H@k / k
      recall@k    = H@k / R                                   (0 when R = 0)
      F1@k        = 2 precision@k recall@k / (precision@k + recall@k)   (0 when both are 0)
      HR@k        = 1[H@k > 0]
      NDCG@k      = DCG@k / IDCG@k,  DCG@k = sum_{i<=k} h_i / log2(i + 1),
                    IDCG@k = sum_{i<=min(R,k)} 1 / log2(i + 1)  (binary gain; 0 when R = 0)
      MRR         = 1 / (first i with h_i = 1), searched within i <= max(ks); 0 if no hit.
    F1 is computed per user and then averaged (not from averaged precision and recall).

    Args:
      hits: bool[u, K] relevance of each user's top-K list, K >= max(ks).
      n_rel: i32[u] number of relevant (held-out) items of each user.
      ks: cutoffs k.

    Returns:
      dict of f32[u] jax arrays with the keys above ("precision@k", ..., "mrr").
    """
    hits = jnp.asarray(hits, bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be bool[u, K], got shape {hits.shape}")
    ks = _check_ks(ks, hits.shape[1])
    n_rel = jnp.asarray(n_rel).reshape(-1).astype(jnp.int32)
    if n_rel.shape[0] != hits.shape[0]:
        raise ValueError(f"n_rel has {n_rel.shape[0]} users, hits has {hits.shape[0]}")
    return _topk_metrics(hits[:, : max(ks)], n_rel, ks)


@jax.jit(static_argnames="ks")
def _topk_metrics(hits: jax.Array, n_rel: jax.Array, ks: tuple[int, ...]) -> dict:
    k_max = hits.shape[1]
    h = hits.astype(_F32)
    pos = jnp.arange(1, k_max + 1, dtype=_F32)
    disc = 1.0 / jnp.log2(pos + 1.0)  # f32[K]: 1/log2(i+1)
    cum_disc = jnp.cumsum(disc)  # IDCG for min(R, k) = 1..K
    cum_hits = jnp.cumsum(h, axis=1)
    dcg = jnp.cumsum(h * disc, axis=1)
    r = n_rel.astype(_F32)
    out = {}
    for k in ks:
        hk = cum_hits[:, k - 1]
        prec = hk / k
        rec = jnp.where(n_rel > 0, hk / jnp.maximum(r, 1.0), 0.0)
        denom = prec + rec
        n_ideal = jnp.minimum(n_rel, k)
        idcg = jnp.where(n_ideal > 0, cum_disc[jnp.maximum(n_ideal, 1) - 1], 1.0)
        out[f"precision@{k}"] = prec
        out[f"recall@{k}"] = rec
        out[f"f1@{k}"] = jnp.where(
            denom > 0, 2.0 * prec * rec / jnp.where(denom > 0, denom, 1.0), 0.0
        )
        out[f"hr@{k}"] = (hk > 0).astype(_F32)
        out[f"ndcg@{k}"] = jnp.where(n_ideal > 0, dcg[:, k - 1] / idcg, 0.0)
    first = jnp.argmax(hits, axis=1)  # first True (0 if none; masked below)
    out["mrr"] = jnp.where(jnp.any(hits, axis=1), 1.0 / (first.astype(_F32) + 1.0), 0.0)
    return out


def topk_metrics(hits, n_rel, *, ks: Sequence[int] = (5, 10, 20)) -> dict:
    """`topk_metrics_per_user` averaged over users, as python floats (same formulas).

    Args:
      hits: bool[u, K] relevance of each user's top-K list, K >= max(ks).
      n_rel: i32[u] number of relevant items of each user.
      ks: cutoffs k.

    Returns:
      dict of python floats: "precision@k", "recall@k", "f1@k", "hr@k", "ndcg@k", "mrr".
    """
    per_user = topk_metrics_per_user(hits, n_rel, ks=ks)
    if jnp.asarray(hits).shape[0] == 0:
        raise ValueError("topk_metrics: no users to average")
    return {k: float(jnp.mean(v)) for k, v in per_user.items()}


# Sum form, for evaluation in chunks (`transferjax.eval.compiled`): each chunk returns the sums
# of the per-row values over its real rows, the host adds the chunks' sums in float64 and divides
# once. Same formulas as above; the means agree with them up to float32 summation order.


def rank_metric_terms(rank, *, ks: tuple[int, ...]) -> dict:
    """Per-row terms of `rank_metrics_from_ranks`: {"mrr": 1/(r+1), "hr@K": 1[r<K],
    "ndcg@K": 1[r<K]/log2(r+2)}, each f32[c], for i32[c] 0-based ranks of the positives."""
    r = rank.astype(_F32)
    out = {"mrr": 1.0 / (r + 1.0)}
    gain = 1.0 / jnp.log2(r + 2.0)
    for k in ks:
        hit = rank < k
        out[f"hr@{k}"] = hit.astype(_F32)
        out[f"ndcg@{k}"] = jnp.where(hit, gain, 0.0)
    return out


def rank_metric_sums(rank, real, *, ks: tuple[int, ...]) -> dict:
    """Sums over the rows where `real` of the per-row terms of `rank_metrics_from_ranks`.

    Args:
      rank: i32[c] 0-based rank of each row's positive.
      real: bool[c] rows that count.
      ks: cutoffs K.

    Returns:
      dict of f32[] sums: "mrr" of 1/(r+1), "hr@K" of 1[r<K], "ndcg@K" of 1[r<K]/log2(r+2);
      `rank_metrics_from_sums` turns them into every key of `rank_metrics_from_ranks`.
    """
    return {k: jnp.sum(jnp.where(real, v, 0.0)) for k, v in rank_metric_terms(rank, ks=ks).items()}


def rank_metrics_from_sums(sums: dict, count: int, *, ks: tuple[int, ...]) -> dict:
    """`rank_metrics_from_ranks` from `rank_metric_sums` of each chunk, on the host.

    Args:
      sums: {key: f32[..., n_chunks]} per-chunk sums (leading axes, e.g. trials, are kept).
      count: rows summed.
      ks: cutoffs K, as given to `rank_metric_sums`.

    Returns:
      {key: float32 array[...]} with the keys of `rank_metrics_from_ranks`, sorted.
    """
    mean = _means(sums, count)
    for k in ks:
        hr = mean[f"hr@{k}"]
        mean[f"precision@{k}"] = hr / k
        mean[f"recall@{k}"] = hr
        mean[f"f1@{k}"] = 2.0 * hr / (k + 1)
    return {k: v.astype(np.float32) for k, v in sorted(mean.items())}


def topk_metric_sums(hits, n_rel, real, *, ks: tuple[int, ...]) -> dict:
    """Sums over the users where `real` of `topk_metrics_per_user` (same keys).

    Args:
      hits: bool[c, K] relevance of each user's top-K list, K = max(ks).
      n_rel: i32[c] number of relevant items of each user.
      real: bool[c] users that count.
      ks: cutoffs k.

    Returns:
      dict of f32[] sums; their means over users are `topk_metrics`.
    """
    per_user = _topk_metrics(hits, n_rel, ks)
    return {k: jnp.sum(jnp.where(real, v, 0.0)) for k, v in per_user.items()}


def _means(sums: dict, count: int) -> dict:
    return {k: np.asarray(v, np.float64).sum(axis=-1) / count for k, v in sums.items()}


def means_from_sums(sums: dict, count: int) -> dict:
    """{key: float32 mean} (numpy, on the host) of per-chunk sums {key: f32[..., n_chunks]}:
    the chunks are added in float64, divided by `count`, then rounded to float32."""
    return {k: v.astype(np.float32) for k, v in sorted(_means(sums, count).items())}
