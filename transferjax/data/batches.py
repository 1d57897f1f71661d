"""Fixed-shape batches and sparse user histories.

- `epoch_batches`: a jit-friendly shuffled epoch as (idx, mask) of fixed shape.
- `History`: a user's items as a padded bag (items, weights, mask, length).
- `padded_history` (PTUPCDR-style ordered, truncated histories) and `interest_bags`
  (a user's whole sparse interest vector), both host-side numpy and deterministic.
- `gather_bag`: the embedding-bag `dense_interest @ table` without the dense matrix.
- `to_dense_interest`: the dense reference, for tests only.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.data.types import DataError, Interactions


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class History:
    """Padded per-user item bags (a pytree: can be passed to jitted functions).

    Attributes:
      items: i32[n_users, max_len] item indices (0 where padded).
      weights: f32[n_users, max_len] ratings or normalised weights (0 where padded).
      mask: bool[n_users, max_len] True for real entries.
      length: i32[n_users] number of real entries per user.
    """

    items: np.ndarray
    weights: np.ndarray
    mask: np.ndarray
    length: np.ndarray


@partial(jax.jit, static_argnames=("n", "batch_size"))
def epoch_batches(key: jax.Array, n: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """One shuffled epoch over range(n) as fixed-shape batches.

    Args:
      key: a `jax.random.key`.
      n: number of rows (static).
      batch_size: rows per batch (static).

    Returns:
      idx: i32[steps, batch_size] a permutation of range(n), padded with 0 at the end.
      mask: bool[steps, batch_size] False on the padding; steps = ceil(n / batch_size).
    """
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"epoch_batches: n={n} and batch_size={batch_size} must be positive")
    steps = -(-n // batch_size)
    # One sort of 32 random bits per row, in place of jax.random.permutation's multi-round
    # shuffle; ties (about n^2 / 2^33 pairs) keep index order.
    perm = jnp.argsort(jax.random.bits(key, (n,), jnp.uint32)).astype(jnp.int32)
    pad = steps * batch_size - n
    idx = jnp.concatenate([perm, jnp.zeros((pad,), jnp.int32)]).reshape(steps, batch_size)
    mask = (jnp.arange(steps * batch_size) < n).reshape(steps, batch_size)
    return idx, mask


def host_epoch_indices(key: jax.Array, n: int, batch_size: int) -> np.ndarray:
    """The host-side twin of `epoch_batches`: i32[steps, batch_size] (or i32[t, steps, batch]
    for a batch of t keys), a numpy permutation seeded by the key's data, padded with 0.

    On a CPU the trainer shuffles with it, in place of the sort of `epoch_batches` on the XLA
    CPU backend (`python -m benchmarks.seeds_vmap` times that sort alone as `shuffle_s`), and
    passes the indices into the jitted epoch. The mask is static:
    `arange(steps * batch_size) < n`.
    """
    words = np.asarray(jax.random.key_data(key), dtype=np.uint32)
    steps = -(-n // batch_size)
    rows = words.reshape(-1, words.shape[-1])
    out = np.zeros((len(rows), steps * batch_size), np.int32)
    for r, w in enumerate(rows):
        out[r, :n] = np.random.default_rng(w.tolist()).permutation(n)
    out = out.reshape(len(rows), steps, batch_size)
    return out if words.ndim > 1 else out[0]


def _pack(users, items, weights, n_users: int, max_len: int) -> History:
    """Scatters rows already sorted by (user, priority) into a padded `History`."""
    counts = np.bincount(users, minlength=n_users)
    start = np.cumsum(counts) - counts
    pos = np.arange(len(users)) - start[users]
    keep = pos < max_len
    out_items = np.zeros((n_users, max_len), np.int32)
    out_w = np.zeros((n_users, max_len), np.float32)
    out_mask = np.zeros((n_users, max_len), bool)
    out_items[users[keep], pos[keep]] = items[keep]
    out_w[users[keep], pos[keep]] = weights[keep]
    out_mask[users[keep], pos[keep]] = True
    return History(out_items, out_w, out_mask, np.minimum(counts, max_len).astype(np.int32))


def padded_history(
    inter: Interactions,
    *,
    max_len: int,
    min_rating: float | None = None,
    order: str = "rating",
    seed: int = 0,
) -> History:
    """Each user's items, filtered, ordered and truncated to `max_len` (PTUPCDR uses 20).

    Args:
      inter: one domain's interactions.
      max_len: columns of the result; users with more rows keep the first `max_len`.
      min_rating: keep only rows with rating >= min_rating (e.g. the positively rated items).
      order: "rating" (highest first; ties: most recent, then lower item index), "recent"
        (newest first by timestamp; ties: lower item index) or "random" (seeded shuffle).
      seed: seed of `np.random.default_rng` for order="random".

    Returns:
      History with weights = ratings; users without rows have an all-False mask.
    """
    if max_len <= 0:
        raise ValueError(f"padded_history: max_len must be positive, got {max_len}")
    if min_rating is not None:
        inter = inter.select(inter.rating >= min_rating)
    ts = inter.timestamp if inter.timestamp is not None else np.zeros(len(inter), np.int64)
    if order == "rating":
        keys = (inter.item, -ts, -inter.rating, inter.user)
    elif order == "recent":
        if inter.timestamp is None:
            raise DataError(f"{inter.name}: order='recent' needs timestamps")
        keys = (inter.item, -ts, inter.user)
    elif order == "random":
        keys = (np.random.default_rng(seed).random(len(inter)), inter.user)
    else:
        raise ValueError(f"padded_history: order must be rating|recent|random, got {order!r}")
    idx = np.lexsort(keys)
    return _pack(inter.user[idx], inter.item[idx], inter.rating[idx], inter.n_users, max_len)


def interest_bags(
    inter: Interactions, *, max_len: int | None = None, normalize: str = "none"
) -> History:
    """A user's sparse interest vector (all rated items) as a padded bag.

    Weights are the ratings r_ui, then normalised per user over the kept items:
    "none": r_ui; "l1": r_ui / sum_j |r_uj|; "sqrt": r_ui / sqrt(n_u) (SVD++'s |N(u)|^-1/2,
    n_u = kept items). max_len defaults to the largest user degree (nothing dropped); a smaller
    max_len keeps the highest-rated items (order="rating").
    """
    if normalize not in ("none", "l1", "sqrt"):
        raise ValueError(f"interest_bags: normalize must be none|l1|sqrt, got {normalize!r}")
    if max_len is None:
        max_len = max(1, int(inter.user_counts().max(initial=0)))
    h = padded_history(inter, max_len=max_len, order="rating")
    w = h.weights
    if normalize == "l1":
        denom = np.abs(w).sum(axis=1, keepdims=True)
        w = w / np.where(denom > 0, denom, 1.0)
    elif normalize == "sqrt":
        w = w / np.sqrt(np.maximum(h.length, 1).astype(np.float32))[:, None]
    return dataclasses.replace(h, weights=w.astype(np.float32))


def to_dense_interest(history: History, n_items: int) -> np.ndarray:
    """f32[n_users, n_items] dense interest matrix of a `History` (a reference for tests)."""
    items, weights, mask = (np.asarray(a) for a in (history.items, history.weights, history.mask))
    out = np.zeros((items.shape[0], n_items), np.float32)
    rows = np.broadcast_to(np.arange(items.shape[0])[:, None], items.shape)
    np.add.at(out, (rows[mask], items[mask]), weights[mask])
    return out


def gather_bag(
    table: jax.Array,
    items: jax.Array,
    weights: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """Embedding-bag: out[b] = sum_l mask[b,l] * weights[b,l] * table[items[b,l]].

    Equals `dense_interest @ table` (see `to_dense_interest`) at O(batch * max_len * d) cost;
    the gradient w.r.t. `table` is a scatter-add into the touched rows only.

    Args:
      table: f32[n_items, d] item embeddings.
      items: i32[batch, max_len] item indices.
      weights: f32[batch, max_len] per-item weights.
      mask: bool[batch, max_len] real entries.

    Returns:
      f32[batch, d].
    """
    w = jnp.where(mask, weights, 0).astype(table.dtype)
    return jnp.einsum("bl,bld->bd", w, jnp.take(table, items, axis=0))
