"""Pointwise training on implicit positives: sampled negatives that avoid a user's positives,
their 1 / 0 labels, and the masked binary cross-entropy and squared error over a batch
(`pointwise_loss`: one domain's term of a pointwise objective).

A user's positives are kept as a CSR index (`positive_index`: per user, its sorted distinct
items), so a membership test is a binary search inside the user's segment: fixed shapes,
no users x items array. `sample_unseen` draws uniform items and re-draws (up to `tries`
draws, all taken at once) those that are positives of the user, as RecBole's samplers do by
rejection; a row whose every draw is a positive keeps its first draw (with a user who has
seen a share p of the items, that happens with probability p ** tries).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def positive_index(user: np.ndarray, item: np.ndarray, n_users: int) -> dict:
    """CSR index of each user's distinct items.

    Args:
      user, item: int[n] interactions (repeats allowed).
      n_users: rows of the index.

    Returns:
      {"indptr": i32[n_users + 1], "items": i32[nnz]}: user u's items, sorted, are
      items[indptr[u]:indptr[u + 1]].
    """
    pairs = np.unique(np.stack([np.asarray(user, np.int64), np.asarray(item, np.int64)], 1), axis=0)
    counts = np.bincount(pairs[:, 0], minlength=n_users) if len(pairs) else np.zeros(n_users, int)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return {"indptr": indptr, "items": pairs[:, 1].astype(np.int32)}


def contains(index: dict, user: jax.Array, item: jax.Array) -> jax.Array:
    """bool[broadcast shape]: whether `item` is a positive of `user` in `index`.

    A lower-bound binary search in the user's segment; ceil(log2(nnz + 1)) halvings cover the
    longest segment, so the loop length is static."""
    items = index["items"]
    if items.shape[0] == 0:
        return jnp.zeros(jnp.broadcast_shapes(user.shape, item.shape), bool)
    user, item = jnp.broadcast_arrays(user, item)
    last = items.shape[0] - 1
    lo, end = index["indptr"][user], index["indptr"][user + 1]

    def halve(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        less = items[jnp.minimum(mid, last)] < item
        active = lo < hi
        return jnp.where(active & less, mid + 1, lo), jnp.where(active & ~less, mid, hi)

    lo, _ = jax.lax.fori_loop(0, int(items.shape[0]).bit_length(), halve, (lo, end))
    return (lo < end) & (items[jnp.minimum(lo, last)] == item)


def sample_unseen(
    key: jax.Array, index: dict, user: jax.Array, *, n_items: int, n: int, tries: int = 8
) -> jax.Array:
    """i32[b, n] uniform items of [0, n_items), each not a positive of its row's user.

    Args:
      key: `jax.random.key`.
      index: `positive_index` of the domain's training rows.
      user: i32[b] the users the negatives are drawn for.
      n_items, n: item count of the domain; negatives per row.
      tries: draws per negative (module docstring).
    """
    draws = jax.random.randint(key, (tries, *user.shape, n), 0, n_items, dtype=jnp.int32)
    return first_unseen(index, user[:, None], draws)


def first_unseen(index: dict, user: jax.Array, draws: jax.Array) -> jax.Array:
    """draws[0]'s shape: per entry, the first of `draws[t]` (t = 0, 1, ...) that is not a
    positive of its `user` (broadcast against draws[0]) in `index`; the first draw when every
    draw is a positive."""
    seen = contains(index, user[None], draws)
    first = jnp.argmax(~seen, axis=0)
    return jnp.take_along_axis(draws, first[None], axis=0)[0]


def with_negatives(batch: dict, negatives: jax.Array) -> dict:
    """The positives of `batch` followed by their negatives, with labels.

    Args:
      batch: `user` i32[b], `item` i32[b], `mask` bool[b] (and any other per-row field, which
        is dropped).
      negatives: i32[b, n] items, n per positive.

    Returns:
      {"user", "item": i32[b (1 + n)], "label": f32[b (1 + n)] (1 for the b positives, then 0),
      "mask": bool[b (1 + n)] (a negative is masked when its positive is)}; the negatives are
      ordered draw by draw (all first draws, then all second draws, ...), as RecBole's
      `_neg_sample_by_point_wise_sampling` lays them out.
    """
    n = negatives.shape[1]
    return {
        "user": jnp.tile(batch["user"], 1 + n),
        "item": jnp.concatenate([batch["item"], negatives.T.reshape(-1)]),
        "label": jnp.concatenate([jnp.ones(batch["user"].shape), jnp.zeros(negatives.size)]),
        "mask": jnp.tile(batch["mask"], 1 + n),
    }


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `x` over the rows where `mask` (0 when none)."""
    m = mask.astype(x.dtype)
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def bce_with_logits(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean of -[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))] over f32[b] logits z.

    The value of `torch.nn.BCELoss` on sigmoid(z), computed from z by `log_sigmoid` (stable
    where sigmoid saturates; BCELoss clamps each log at -100 instead)."""
    nll = -(labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits))
    return masked_mean(nll, mask)


def squared_error(pred: jax.Array, rating: jax.Array, mask: jax.Array) -> jax.Array:
    """Masked mean of (r - r_hat)^2 over f32[b]."""
    return masked_mean((rating - pred) ** 2, mask)


def pointwise_loss(
    logits_fn,
    batch: dict,
    *,
    kind: str,
    key: jax.Array,
    index: dict | None = None,
    n_items: int = 0,
    n_neg: int = 1,
    mu: float = 0.0,
) -> jax.Array:
    """One domain's loss on its batch of positives.

    kind "bce": each positive gets `n_neg` negatives (`sample_unseen` with the first half of
    `key`), and the loss is `bce_with_logits` over the B (1 + n_neg) rows of `with_negatives`;
    kind "mse": `squared_error` of mu + z against the batch's ratings (no negatives).

    Args:
      logits_fn: `(user i32[r], item i32[r], key) -> f32[r]` logits z on the domain's own
        indices (`key`, the second half of `key`, for dropout).
      batch: `user`, `item` i32[b], `rating` f32[b], `mask` bool[b].
      index, n_items, n_neg: the domain's `positive_index`, item count and negatives per
        positive ("bce").
      mu: the offset of the rating variant ("mse").

    Returns:
      f32[] the masked mean loss.
    """
    k_neg, k_fwd = jax.random.split(key)
    if kind == "bce":
        neg = sample_unseen(k_neg, index, batch["user"], n_items=n_items, n=n_neg)
        rows = with_negatives(batch, neg)
        z = logits_fn(rows["user"], rows["item"], k_fwd)
        return bce_with_logits(z, rows["label"], rows["mask"])
    if kind == "mse":
        z = logits_fn(batch["user"], batch["item"], k_fwd)
        return squared_error(mu + z, batch["rating"], batch["mask"])
    raise ValueError(f"unknown pointwise loss {kind!r}; valid: bce, mse")
