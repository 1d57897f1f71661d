"""Data of the phi model (`transferjax.methods.phi.model`): users' bags and the joint rows.

- `domain_bags` / `gather_rows`: each user's entries of one domain, stored as compact CSR
  arrays (highest ratings first, capped at `max_len` when > 0) and gathered into fixed-shape
  padded bags per batch; `DomainSpec` holds the domain's static facts, among them the
  capacity of a batch (the most entries b distinct users hold), which the packed first layer
  of the encoder reads (`transferjax.models.phi`).
- `joint_rows`: the joint user index: one row per warm overlap pair (source, target), one per
  other source user (source, -1) and one per other target user with training data (-1, target).
- `split_entries`: the per-step random split of a bag into input entries and label entries.

A training batch holds distinct users (padded rows read empty bags), so it always fits the
capacity and its packed layer runs without the dense fallback that evaluation batches (which
repeat users) keep.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.data.batches import interest_bags
from transferjax.models import draws

LONGEST_KEPT = 1 << 16  # batch sizes up to this get a capacity below batch * max_len


@dataclasses.dataclass(frozen=True)
class DomainSpec:
    """Static facts of one domain's interest vectors (hashable, safe to close over)."""

    n_users: int
    n_items: int
    explicit: bool
    mu: float
    max_len: int
    longest: tuple  # longest[k - 1]: total length of the k longest bags (k <= LONGEST_KEPT)

    def capacity(self, batch: int) -> int:
        """Most entries a batch of `batch` distinct users (or no user: -1) can hold."""
        if batch <= 0 or not self.longest:
            return 0
        if batch <= len(self.longest):
            return self.longest[batch - 1]
        if len(self.longest) >= self.n_users:  # every user's length is in `longest`
            return self.longest[-1]
        return batch * self.max_len


def domain_bags(inter, *, max_len: int = 0) -> tuple[dict, DomainSpec]:
    """Each user's interest entries of one domain as compact CSR arrays, and the domain spec.

    Entries are ordered by user, then highest rating first (`interest_bags`); with
    `max_len > 0` a user keeps its first `max_len`. A user's bag is the window
    `[start[u], start[u] + L)` of the flat arrays, of which the first `length[u]` are real
    (L = the longest kept bag; the flat arrays carry L padding entries at the end), so the
    arrays hold nnz + L entries rather than n_users * L.

    Returns:
      ({"items": i32[nnz + L], "rating": f32[nnz + L], "start": i32[n_users],
        "length": i32[n_users]}, spec).
    """
    h = interest_bags(inter, max_len=max_len if max_len > 0 else None)
    length = np.asarray(h.length, np.int32)
    L = int(h.items.shape[1])
    start = (np.cumsum(length) - length).astype(np.int32)
    items = np.concatenate([h.items[h.mask], np.zeros(L, np.int32)]).astype(np.int32)
    rating = np.concatenate([h.weights[h.mask], np.zeros(L, np.float32)]).astype(np.float32)
    explicit = not inter.implicit
    longest = np.cumsum(np.sort(length)[::-1][:LONGEST_KEPT], dtype=np.int64)
    spec = DomainSpec(
        n_users=inter.n_users,
        n_items=inter.n_items,
        explicit=explicit,
        mu=float(inter.rating.mean()) if explicit else 0.0,
        max_len=L,
        longest=tuple(int(x) for x in longest),
    )
    bags = {"items": items, "rating": rating, "start": start, "length": length}
    return {k: jnp.asarray(v) for k, v in bags.items()}, spec


def joint_rows(split) -> tuple[np.ndarray, np.ndarray]:
    """(src i32[n], tgt i32[n]) training rows; -1 marks a domain the user has no data in."""
    s_known = np.flatnonzero(split.source_train.user_counts() > 0)
    t_known = np.flatnonzero(split.target_train.user_counts() > 0)
    warm = split.warm_pairs
    s_only = np.setdiff1d(s_known, warm[:, 0])
    t_only = np.setdiff1d(t_known, warm[:, 1])
    src = np.concatenate([warm[:, 0], s_only, np.full(len(t_only), -1)]).astype(np.int32)
    tgt = np.concatenate([warm[:, 1], np.full(len(s_only), -1), t_only]).astype(np.int32)
    return src, tgt


def gather_rows(bags: dict, users: jax.Array, *, max_len: int):
    """(items i32[b, L], rating f32[b, L], mask bool[b, L]) of `users` i32[b] (-1: empty)."""
    u = jnp.maximum(users, 0)
    pos = jnp.arange(max_len, dtype=jnp.int32)
    idx = bags["start"][u][:, None] + pos
    mask = (pos < bags["length"][u][:, None]) & (users >= 0)[:, None]
    return bags["items"][idx], bags["rating"][idx], mask


def split_entries(key, mask: jax.Array, *, keep: float) -> tuple[jax.Array, jax.Array]:
    """Disjoint (input, label) bool[b, L] masks: each real entry is input with prob `keep`."""
    inp = mask & draws.bernoulli(key, keep, mask.shape)
    return inp, mask & ~inp
