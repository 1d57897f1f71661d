"""Metrics by group, and the coverage and novelty of top-K lists.

Where does transfer help? Every evaluation of the test set also reports its metrics within
groups of held-out rows (`transferjax.eval.compiled` computes them in the same program as the
overall metrics, from the same scores):

- `source_activity`: the evaluated user's source-history length (training rows in the source
  domain), in quantile buckets of the test users that have a source profile (`n_buckets`,
  default 4; tied boundaries merge buckets), named by their ranges ("1-5", "6-14", ...), plus
  "none" for users without one. A cold user's only signal is its source history: the buckets
  show whether transfer gains grow with it.
- `item_popularity`: the held-out item's popularity among the target's training rows: "head",
  "torso" and "tail", the most popular items that together hold the first third of the
  training interactions, the next third, and the rest (items never trained on are "tail").

A group's metrics are the overall formulas over its rows only: rating and sampled-ranking rows
by their user's (or their positive item's) group; in full ranking a user's list is its full
top-K over all items, and for item groups a hit counts only on an item of the group, with the
user's held-out items of the group as its relevant set (users without one are not counted).
Keys are `by_<grouping>/<group>/<metric>` plus `by_<grouping>/<group>/n`, the rows counted;
an empty group is left out.

Full ranking also reports, over the evaluated users' top-K lists:
  coverage@K = |union of the lists| / n_items,
  novelty@K  = mean over users and list positions of -log2(max(pop_i, 1) / n_users),
with pop_i the target training users of item i and n_users the target's users (Zhou et al.,
PNAS 2010, "self-information").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.eval.plan import _pytree

GROUPINGS = ("source_activity", "item_popularity")


@_pytree(meta=("user_names", "item_names"))
class Groups:
    """Group tables of one split (device arrays, read inside the evaluation programs).

    Attributes:
      user: i32[n_source_users + 1] the `source_activity` group of each source user; the last
        entry is the group of users without a source profile (source index -1 reads it).
      item: i32[n_items] the `item_popularity` group of each target item.
      info: f32[n_items] self-information -log2(max(pop_i, 1) / n_users) of each item.
      user_names, item_names: the groups' names, in id order.
    """

    user: jax.Array
    item: jax.Array
    info: jax.Array
    user_names: tuple
    item_names: tuple


def activity_buckets(activity: np.ndarray, *, n_buckets: int) -> np.ndarray:
    """Upper bounds (inclusive, ascending, distinct) of `n_buckets` quantile buckets of
    `activity` (int[n] >= 1); fewer when quantiles tie. The last is max(activity)."""
    if len(activity) == 0:
        return np.zeros(0, np.int64)
    q = np.quantile(activity, np.arange(1, n_buckets + 1) / n_buckets, method="higher")
    return np.unique(q.astype(np.int64))


def source_activity_groups(
    source_counts: np.ndarray, test_sources: np.ndarray, *, n_buckets: int = 4
) -> tuple[np.ndarray, tuple]:
    """(i32[n_source_users + 1] group per source user, last = no source profile; names).

    Buckets are quantiles of the source-history lengths of `test_sources` (the source index of
    each evaluated test user, -1 without a profile); every source user is placed by the same
    bounds (lengths above the last bound go to the last bucket, 0 to the first)."""
    counts = np.asarray(source_counts, np.int64)
    users = np.unique(test_sources[test_sources >= 0])
    bounds = activity_buckets(counts[users], n_buckets=n_buckets)
    if len(bounds) == 0:
        bounds = np.asarray([max(int(counts.max(initial=0)), 1)])
    names = []
    lo = 0
    for b in bounds:
        names.append(f"{lo}-{b}" if lo < b else f"{b}")
        lo = int(b) + 1
    group = np.minimum(np.searchsorted(bounds, counts, side="left"), len(bounds) - 1)
    table = np.concatenate([group, [len(bounds)]]).astype(np.int32)
    return table, tuple(names) + ("none",)


def item_popularity_groups(item_counts: np.ndarray) -> tuple[np.ndarray, tuple]:
    """(i32[n_items] group per item: 0 head, 1 torso, 2 tail; names).

    Items sorted by training count (descending, lower index first among ties); head: the
    first items whose cumulative count reaches a third of all training rows, torso: up to two
    thirds, tail: the rest (and every item without training rows)."""
    counts = np.asarray(item_counts, np.int64)
    order = np.argsort(-counts, kind="stable")
    total = max(int(counts.sum()), 1)
    before = np.cumsum(counts[order]) - counts[order]  # rows of the more popular items
    group_sorted = np.where(before < total / 3, 0, np.where(before < 2 * total / 3, 1, 2))
    group_sorted[counts[order] == 0] = 2
    group = np.empty_like(group_sorted)
    group[order] = group_sorted
    return group.astype(np.int32), ("head", "torso", "tail")


def make_groups(split, *, n_buckets: int = 4) -> Groups:
    """The `Groups` of a split: source activity from `split.source_train`, popularity and
    self-information from `split.target_train`, buckets from the test users."""
    src = split.source_train
    src_counts = np.bincount(src.user, minlength=src.n_users)
    user, user_names = source_activity_groups(
        src_counts, split.test.pairs[np.unique(split.test.row), 0], n_buckets=n_buckets
    )
    tr = split.target_train
    item, item_names = item_popularity_groups(tr.item_counts())
    pairs = np.unique(tr.user.astype(np.int64) * tr.n_items + tr.item)
    pop = np.bincount(pairs % tr.n_items, minlength=tr.n_items)  # distinct users per item
    info = -np.log2(np.maximum(pop, 1) / max(tr.n_users, 1))
    return Groups(
        user=jnp.asarray(user),
        item=jnp.asarray(item),
        info=jnp.asarray(info, jnp.float32),
        user_names=user_names,
        item_names=item_names,
    )


def group_sums(terms: dict, real: jax.Array, gid: jax.Array, n_groups: int) -> dict:
    """{key: f32[n_groups]} sums of per-row `terms` ({key: f32[c]}) over the rows where
    `real`, by group id `gid` (i32[c]), plus "n": the rows counted per group."""
    w = real.astype(jnp.float32)
    out = {k: jax.ops.segment_sum(v * w, gid, num_segments=n_groups) for k, v in terms.items()}
    out["n"] = jax.ops.segment_sum(w, gid, num_segments=n_groups)
    return out


def finish_groups(by: dict, names: dict, finish) -> dict:
    """Flat `by_<grouping>/<group>/<metric>` keys (float arrays[...]) from per-chunk group sums.

    Args:
      by: {grouping: {key: f32[..., n_chunks, G]}} (`group_sums` of each chunk).
      names: {grouping: the G group names}.
      finish: `finish(sums, count) -> {metric: array}` of the metric family, applied to one
        group's {key: f32[..., 1]} sums over its count.
    Groups whose rows count 0 in every trial are left out.
    """
    out = {}
    for grouping, sums in by.items():
        total = {k: np.asarray(v, np.float64).sum(axis=-2) for k, v in sums.items()}
        n = total.pop("n")  # [..., G]
        for g, name in enumerate(names[grouping]):
            count = n[..., g]
            if not np.any(count > 0):
                continue
            c = np.maximum(count, 1)
            got = finish({k: v[..., g : g + 1] * (1.0 / c[..., None]) for k, v in total.items()}, 1)
            prefix = f"by_{grouping}/{name}/"
            out.update({prefix + k: v for k, v in got.items() if not k.startswith("n_")})
            out[prefix + "n"] = count.astype(np.float32)
    return out


def coverage_novelty(top: np.ndarray, info: np.ndarray, *, n_items: int, ks) -> dict:
    """{"coverage@K", "novelty@K"} (float32 arrays[...]) of top-K lists.

    Args:
      top: i32[..., rows, K_max] each evaluated user's list (best first), -1 on padded rows
        and past the end of a list shorter than K_max.
      info: f32[n_items] self-information of each item.
    """
    top = np.asarray(top)
    lead = top.shape[:-2]
    info = np.asarray(info, np.float64)
    out = {f"coverage@{k}": np.zeros(lead, np.float32) for k in ks}
    out.update({f"novelty@{k}": np.zeros(lead, np.float32) for k in ks})
    for idx in np.ndindex(*lead):
        t = top[idx]
        t = t[t[:, 0] >= 0]
        for k in ks:
            items = t[:, :k]
            ok = items >= 0
            out[f"coverage@{k}"][idx] = len(np.unique(items[ok])) / n_items
            out[f"novelty@{k}"][idx] = info[items[ok]].mean() if ok.any() else 0.0
    return out
